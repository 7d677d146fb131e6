"""One rule carves the splits a corpus or a user does not supply (rnnlab.data.splits).

The built-in corpora were split by older, per-task rules before this one existed; their
prepared splits (and so their fingerprints and every recorded result) must not move. The
``old_*`` functions below are those rules, frozen as they were, and the new rule must
reproduce them on corpora shaped like the built-in ones.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from rnnlab.core.errors import ConfigError
from rnnlab.data.speech import SpeechDataModule
from rnnlab.data.splits import carve_splits

SPLITS = ("train", "val", "test")


# ---- the rules the built-in corpora were prepared with, frozen ----------------------------
def old_stratified_split(labels, fractions, seed):
    """speech (fsdd) and sentiment (rt_snippets): test, then val from the rest."""
    _, val_f, test_f = fractions
    idx = np.arange(len(labels))
    labels = np.asarray(labels)
    strat = labels if np.unique(labels, return_counts=True)[1].min() >= 3 else None
    rest, test = train_test_split(idx, test_size=test_f, random_state=seed, stratify=strat)
    train, val = train_test_split(rest, test_size=val_f / (1 - test_f), random_state=seed,
                                  stratify=labels[rest] if strat is not None else None)
    return np.sort(train), np.sort(val), np.sort(test)


def old_holdout_split(labels, share, seed):
    """speech (japanese_vowels): val held out of the corpus's own train part."""
    idx = np.arange(len(labels))
    labels = np.asarray(labels)
    strat = labels if np.unique(labels, return_counts=True)[1].min() >= 2 else None
    keep, held = train_test_split(idx, test_size=share, random_state=seed, stratify=strat)
    return np.sort(keep), np.sort(held)


def old_ner_random_split(n, fractions, seed):
    """ner (wnut16): one permutation, val first, then test."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val, n_test = max(1, round(n * fractions[1])), max(1, round(n * fractions[2]))
    return (np.sort(perm[n_val + n_test:]), np.sort(perm[:n_val]),
            np.sort(perm[n_val: n_val + n_test]))


def old_msra_val(n, fractions, seed):
    """ner (msra): the corpus keeps its test part; val is carved off the rest."""
    share = fractions[1] / (fractions[0] + fractions[1])
    perm = np.random.default_rng(seed).permutation(n)
    n_val = round(n * share)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _labels(counts: list[int], seed: int = 0) -> list[str]:
    labels = [str(c) for c, k in enumerate(counts) for _ in range(k)]
    np.random.default_rng(seed).shuffle(labels)
    return labels


def _same(new: dict[str, np.ndarray], old: dict[str, np.ndarray]) -> None:
    assert set(new) == set(old)
    for s in old:
        np.testing.assert_array_equal(new[s], old[s], err_msg=s)


# ---- the built-in corpora keep their splits -----------------------------------------------
@pytest.mark.parametrize("seed", [1234, 7])
@pytest.mark.parametrize("fractions", [(0.8, 0.1, 0.1), (0.7, 0.15, 0.15)])
@pytest.mark.parametrize("counts", [[300] * 10,      # fsdd: 3,000 digits, 10 classes
                                    [7369, 5383]])  # rt_snippets: fresh / rotten
def test_whole_corpus_stratified_as_before(counts: list[int], fractions, seed: int) -> None:
    labels = _labels(counts)
    new = carve_splits(len(labels), {"train"}, fractions, seed, labels=labels)
    _same(new, dict(zip(SPLITS, old_stratified_split(labels, fractions, seed), strict=True)))


@pytest.mark.parametrize("seed", [1234, 7])
def test_val_off_a_given_test_part_as_before(seed: int) -> None:
    labels = _labels([30] * 9)  # japanese_vowels: 270 training utterances, 9 speakers
    fractions = (0.8, 0.1, 0.1)
    new = carve_splits(len(labels), {"train", "test"}, fractions, seed, labels=labels)
    keep, held = old_holdout_split(labels, 0.1 / (0.8 + 0.1), seed)
    _same(new, {"train": keep, "val": held})


@pytest.mark.parametrize("seed", [1234, 7])
def test_unlabelled_corpora_cut_as_before(seed: int) -> None:
    fractions = (0.8, 0.1, 0.1)
    new = carve_splits(3394, {"train"}, fractions, seed)  # wnut16-sized
    _same(new, dict(zip(SPLITS, old_ner_random_split(3394, fractions, seed), strict=True)))
    new = carve_splits(41_319, {"train", "test"}, fractions, seed)  # msra without its test
    train, val = old_msra_val(41_319, fractions, seed)
    _same(new, {"train": train, "val": val})


def test_speech_builtin_splits_are_the_old_ones(tmp_path) -> None:
    """The datamodule's own path: fsdd (no split) and japanese_vowels (test given)."""
    dm = SpeechDataModule(data_dir=str(tmp_path))
    dm.check()
    labels = _labels([30] * 10, seed=3)
    frames = ([np.full((2, 1), i, np.float32) for i in range(len(labels))], labels)
    parts = dm._split_off(frames, {"train"}, "fsdd")
    for s, ids in zip(SPLITS, old_stratified_split(labels, dm.split, dm.split_seed), strict=True):
        assert [int(x[0, 0]) for x in parts[s][0]] == ids.tolist()
    parts = dm._split_off(frames, {"train", "test"}, "japanese_vowels")
    keep, held = old_holdout_split(labels, dm.split[1] / (dm.split[0] + dm.split[1]),
                                   dm.split_seed)
    assert [int(x[0, 0]) for x in parts["val"][0]] == held.tolist()
    assert [int(x[0, 0]) for x in parts["train"][0]] == keep.tolist()


# ---- the rule itself ----------------------------------------------------------------------
@pytest.mark.parametrize("supplied", [set(), {"train"}, {"train", "val"}, {"train", "test"},
                                      {"train", "val", "test"}])
@pytest.mark.parametrize("labelled", [True, False])
def test_every_example_lands_in_exactly_one_split(supplied: set[str], labelled: bool) -> None:
    labels = _labels([40, 25, 35]) if labelled else None
    parts = carve_splits(100, supplied, (0.8, 0.1, 0.1), 0, labels=labels)
    assert set(parts) == {"train"} | ({"val", "test"} - supplied)
    joined = np.concatenate(list(parts.values()))
    assert sorted(joined.tolist()) == list(range(100))
    assert all(len(ids) > 0 for ids in parts.values())


def test_a_carved_split_takes_its_share_of_what_the_source_holds() -> None:
    # no split given: the fractions themselves
    parts = carve_splits(1000, {"train"}, (0.6, 0.3, 0.1), 0)
    assert {s: len(v) for s, v in parts.items()} == {"train": 600, "val": 300, "test": 100}
    # a test file given: the source is train + val, so val gets 0.3 / 0.9 of it
    parts = carve_splits(900, {"train", "test"}, (0.6, 0.3, 0.1), 0)
    assert {s: len(v) for s, v in parts.items()} == {"train": 600, "val": 300}
    # a val file given: test gets 0.25 / 0.75 of the source (stratified cuts alike)
    parts = carve_splits(750, {"train", "val"}, (0.5, 0.25, 0.25), 0,
                         labels=_labels([375, 375]))
    assert {s: len(v) for s, v in parts.items()} == {"train": 500, "test": 250}


def test_stratified_when_every_class_allows_it() -> None:
    labels = np.asarray(_labels([600, 300, 100]))
    parts = carve_splits(1000, {"train"}, (0.8, 0.1, 0.1), 5, labels=labels)
    for s, ids in parts.items():
        shares = [np.mean(labels[ids] == c) for c in ("0", "1", "2")]
        np.testing.assert_allclose(shares, [0.6, 0.3, 0.1], atol=0.011, err_msg=s)


def test_a_class_too_small_to_spread_falls_back_to_a_seeded_permutation() -> None:
    labels = _labels([50, 49, 1])  # one class has a single example: no stratified cut
    parts = carve_splits(100, {"train"}, (0.8, 0.1, 0.1), 3, labels=labels)
    _same(parts, dict(zip(SPLITS, old_ner_random_split(100, (0.8, 0.1, 0.1), 3), strict=True)))
    # more classes than a carved split has room for: also a plain permutation
    labels = _labels([2] * 10)
    parts = carve_splits(20, {"train"}, (0.8, 0.1, 0.1), 3, labels=labels)
    assert {s: len(v) for s, v in parts.items()} == {"train": 16, "val": 2, "test": 2}


def test_fixed_by_seed_and_moved_by_another() -> None:
    labels = _labels([60, 40])
    first = carve_splits(100, {"train"}, (0.8, 0.1, 0.1), 11, labels=labels)
    _same(carve_splits(100, {"train"}, (0.8, 0.1, 0.1), 11, labels=labels), first)
    other = carve_splits(100, {"train"}, (0.8, 0.1, 0.1), 12, labels=labels)
    assert not np.array_equal(other["test"], first["test"])


@pytest.mark.parametrize("n, supplied, missing", [
    (2, {"train"}, "task.data.val and task.data.test"),
    (1, {"train", "test"}, "task.data.val"),
    (0, {"train", "val"}, "task.data.test")])
def test_too_few_examples_to_carve_is_one_sentence(n: int, supplied: set[str],
                                                   missing: str) -> None:
    with pytest.raises(ConfigError, match="too few to carve") as err:
        carve_splits(n, supplied, (0.8, 0.1, 0.1), 0, labels=["a"] * n,
                     source="task.data.train=tiny.npz")
    message = str(err.value)
    assert message.startswith(f"task.data.train=tiny.npz has only {n} examples")
    assert f"give {missing} as files of their own" in message and "\n" not in message


# bad task.datamodule.split fractions: test_schema.py
