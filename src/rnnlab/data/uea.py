"""Motion / action recognition and the standard sequence-classification sets (N->1).

The UEA/UCR time-series classification archive is where this field measures itself;
``sktime==1.2.0``'s wheel carries a few of its sets as ``.ts`` files, read here as data
(the package is never installed or imported):

* ``BasicMotions``: wearable accelerometer + gyroscope (6 channels x 100 steps), 4
  activities (standing, walking, running, badminton), 40 train / 40 test;
* ``GunPoint``: the x position of a hand tracked in video (150 steps), drawing a gun or
  pointing, 50 / 150;
* ``ArrowHead``: arrow-head outlines as 1-D series (251 steps), 3 classes, 36 / 175;
* ``ItalyPowerDemand``: a day of Italian electricity demand (24 steps), winter or
  summer, 67 / 1,029;
* ``JapaneseVowels``: 12 LPC channels, variable length, 9 speakers, 270 / 370.

Each keeps the archive's own train/test split (so figures compare with the published
ones); a validation split is carved, stratified, off train by ``split`` and
``split_seed`` (the lab's rule in :func:`rnnlab.data.splits.carve_splits`). The reader,
normalisation, batching and a user's own ``.ts`` / ``.npz`` files are those of
``task=speech`` (:class:`rnnlab.data.speech.SpeechDataModule`).
"""

from __future__ import annotations

import difflib
from pathlib import Path

from rnnlab.core.errors import ConfigError
from rnnlab.data.sources import fetch, file_lock, read_member, write_once
from rnnlab.data.speech import (
    SKTIME,
    SPLITS,
    Frames,
    SpeechDataModule,
    frames_npz_bytes,
    parse_ts,
    read_frames_npz,
)
from rnnlab.data.splits import fingerprint, split_fractions

UEA_DATASETS = ("BasicMotions", "GunPoint", "ArrowHead", "ItalyPowerDemand", "JapaneseVowels")
UEA_MEMBER = "sktime/datasets/data/{name}/{name}_{split}.ts"


def read_uea(archive: Path, name: str) -> dict[str, Frames]:
    """The archive's own ``train`` and ``test`` series of set ``name`` from the wheel."""
    parts = {}
    for split in ("train", "test"):
        member = UEA_MEMBER.format(name=name, split=split.upper())
        parts[split] = parse_ts(read_member(archive, member).decode("utf-8"), member)
    return parts


class MotionDataModule(SpeechDataModule):
    """A UEA/UCR set (``dataset``) or the user's own files -> (normalised frames, class).

    Args:
        dataset: one of :data:`UEA_DATASETS`; ignored when ``data.train`` is set.
        data: the user's own files ``train`` (required), ``val``, ``test`` (.ts or .npz).
        split: train/val/test fractions; with the archive's test split given, val takes
            ``val / (train + val)`` of the archive's training series.
        split_seed: fixes the validation split; the training seed does not move it.
        normalize: standardise each channel with statistics of the training frames.
    """

    def __init__(self, dataset: str = "BasicMotions", data: dict | None = None,
                 data_dir: str = "data", split: tuple = (0.7, 0.15, 0.15),
                 split_seed: int = 1234, normalize: bool = True, batch_size: int = 16,
                 num_workers: int = 0, seed: int = 0) -> None:
        super().__init__(dataset, data, data_dir, split, split_seed, normalize, batch_size,
                         num_workers, seed)

    def check(self) -> None:
        if not self.data.get("train") and self.dataset not in UEA_DATASETS:
            close = difflib.get_close_matches(str(self.dataset), UEA_DATASETS, n=1,
                                              cutoff=0.5)
            hint = f" (did you mean task.dataset={close[0]}?)" if close else ""
            raise ConfigError(f"task.dataset={self.dataset!r} is unknown; use one of "
                              f"{', '.join(UEA_DATASETS)}{hint}, or give your own file as "
                              f"task.data.train=PATH.")
        if (self.data.get("val") or self.data.get("test")) and not self.data.get("train"):
            raise ConfigError("task.data.val/test were given without task.data.train; give the "
                              "training file too (task.data.train=PATH).")
        self.split = split_fractions(self.split)

    def _builtin_raw(self) -> dict[str, Frames]:
        parts = read_uea(fetch(SKTIME, self.data_dir / "cache"), self.dataset)
        parts.update(self._split_off(parts["train"], {"train", "test"},
                                     f"{SKTIME.requirement}::{self.dataset}"))
        return parts

    def _read_splits(self) -> tuple[dict[str, Frames], str]:
        if self.data.get("train"):
            return self._user_splits()
        fp = fingerprint(SKTIME.sha256, "uea", self.dataset, self.split, self.split_seed)
        out_dir = self.data_dir / "prepared" / f"uea-{self.dataset}-{fp}"
        with file_lock(self.data_dir / "prepared" / f"uea-{fp}.lock"):
            if not all((out_dir / f"{s}.npz").exists() for s in SPLITS):
                for s, frames in self._builtin_raw().items():
                    write_once(out_dir / f"{s}.npz", frames_npz_bytes(*frames))
        return {s: read_frames_npz(out_dir / f"{s}.npz", str(out_dir / f"{s}.npz"))
                for s in SPLITS}, fp

