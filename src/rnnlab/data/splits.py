"""Reproducible splits and data fingerprints."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import train_test_split

from rnnlab.errors import ConfigError, require


def check_fractions(fractions: Sequence[float], key: str) -> tuple[float, float, float]:
    require(len(fractions) == 3 and all(f > 0 for f in fractions) and abs(sum(fractions) - 1) < 1e-6,
            f"{key} must be three positive fractions (train, val, test) summing to 1, got "
            f"{list(fractions)}.", ConfigError)
    return float(fractions[0]), float(fractions[1]), float(fractions[2])


def stratified_split(labels: Sequence, fractions: Sequence[float], seed: int,
                     key: str = "task.datamodule.split") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of a stratified train/val/test split, fixed by ``seed``."""
    _, val_f, test_f = check_fractions(fractions, key)
    idx = np.arange(len(labels))
    labels = np.asarray(labels)
    counts = np.unique(labels, return_counts=True)[1]
    strat = labels if counts.min() >= 3 else None  # tiny user files: fall back to random
    rest, test = train_test_split(idx, test_size=test_f, random_state=seed, stratify=strat)
    rest_strat = labels[rest] if strat is not None else None
    train, val = train_test_split(rest, test_size=val_f / (1 - test_f), random_state=seed,
                                  stratify=rest_strat)
    return np.sort(train), np.sort(val), np.sort(test)


def holdout_split(labels: Sequence, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held out) with ``share`` held out, stratified when every class can be."""
    idx = np.arange(len(labels))
    labels = np.asarray(labels)
    strat = labels if np.unique(labels, return_counts=True)[1].min() >= 2 else None
    keep, held = train_test_split(idx, test_size=share, random_state=seed, stratify=strat)
    return np.sort(keep), np.sort(held)


def fingerprint(*parts: object) -> str:
    """A short stable hash of whatever defines a prepared dataset (source hash, split, seed)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
