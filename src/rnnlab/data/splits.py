"""Reproducible splits and data fingerprints.

:func:`carve_splits` is the lab's one rule for the splits a corpus or a user does not
supply: they are cut out of the training source at their share, fixed by ``split_seed``,
stratified by label when every class allows it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Sequence

import numpy as np
from sklearn.model_selection import train_test_split

from rnnlab.core.errors import ConfigError


def split_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """``task.datamodule.split`` as plain floats (train, val, test), as fingerprints and
    checkpoints record it; the config schema has checked that they are three positive
    fractions summing to 1."""
    train, val, test = (float(f) for f in fractions)
    return train, val, test


SPLITS = ("train", "val", "test")


def carve_splits(n: int, supplied: Collection[str], fractions: Sequence[float], seed: int,
                 labels: Sequence | None = None, source: str = "task.data.train"
                 ) -> dict[str, np.ndarray]:
    """Sorted indices into the ``n`` examples of the training source: ``train`` and each
    split that is not among ``supplied`` (the splits that came with data of their own).

    The source stands for train plus the carved splits, so each carved split takes its
    fraction of their sum: with a test file given, val gets ``val / (train + val)`` of
    the source; with none given, the fractions themselves. With ``labels`` and enough
    examples of every class each cut is stratified (scikit-learn, test first, then val
    from the rest); otherwise one permutation of ``seed`` is cut val first, then test.
    A split that would be empty is refused with a :class:`ConfigError` naming ``source``.
    """
    missing = [s for s in SPLITS[1:] if s not in supplied]
    if not missing:
        return {"train": np.arange(n)}
    share = dict(zip(SPLITS, fractions, strict=True))
    # the share of the whole corpus the source holds (exactly 1 when it is the whole)
    total = 1.0 if len(missing) == 2 else share["train"] + share[missing[0]]
    if labels is not None and len(labels) != n:
        raise ValueError(f"{len(labels)} labels for {n} examples")
    parts = _stratified_carve(labels, missing, share, total, seed) if labels is not None \
        else None
    if parts is None:  # no labels, or a class too small to be spread over every split
        order = np.random.default_rng(seed).permutation(n)
        parts, start = {}, 0
        for s in missing:
            size = max(1, round(n * (share[s] / total)))
            parts[s], start = order[start:start + size], start + size
        parts["train"] = order[start:]
    if any(len(ids) == 0 for ids in parts.values()):
        raise ConfigError(f"{source} has only {n} examples, too few to carve "
                          f"{' and '.join(missing)} off it and keep training examples; give "
                          f"{' and '.join(f'task.data.{s}' for s in missing)} as files of "
                          f"their own, or more data.")
    return {s: np.sort(parts[s]) for s in SPLITS if s in parts}


def _stratified_carve(labels: Sequence, missing: list[str], share: dict[str, float],
                      total: float, seed: int) -> dict[str, np.ndarray] | None:
    """Stratified cuts (test first, then val from the rest), or None where some cut cannot
    keep every class on both of its sides."""
    labels = np.asarray(labels)
    rest, parts, left = np.arange(len(labels)), {}, total
    for s in reversed(missing):  # test before val: the order the lab's splits were cut in
        _, counts = np.unique(labels[rest], return_counts=True)
        n_held = int(np.ceil(share[s] / left * len(rest)))  # scikit-learn's rounding
        if counts.size == 0 or counts.min() < 2 or min(n_held, len(rest) - n_held) < len(counts):
            return None
        rest, parts[s] = train_test_split(rest, test_size=share[s] / left, random_state=seed,
                                          stratify=labels[rest])
        left -= share[s]
    parts["train"] = rest
    return parts


def fingerprint(*parts: object) -> str:
    """A short stable hash of whatever defines a prepared dataset (source hash, split, seed)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
