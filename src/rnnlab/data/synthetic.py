"""The long-memory problems: adding (Hochreiter 1997) and copy (Arjovsky et al. 2016).

Both are generated, never downloaded. Training data is drawn afresh every epoch from the
training ``seed`` and the epoch number (so a model cannot memorise a fixed set and a
resumed run sees the same stream); validation and test sets are drawn once from
``data_seed``, so every model and every training seed is scored on the same examples.

Adding problem (length T): channel 0 holds T values ~ U[0, 1], channel 1 marks two of them
(one in the first half, one in the second); the target is the sum of the two marked
values. Always answering 1.0 (the mean) scores MSE = Var(U1 + U2) = 1/6 = 0.167.

Copy problem (delay T, 10 symbols from an alphabet of 8): the input is 10 symbols, T - 1
blanks, a delimiter, then 10 blanks (length T + 20); the target is blank for T + 10 steps
and then the 10 symbols. Answering blank and then uniformly at random scores the
memoryless cross-entropy 10 ln 8 / (T + 20).
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

from rnnlab.core.dist import rank_world
from rnnlab.data.base import RnnlabDataModule
from rnnlab.data.batching import RowShard
from rnnlab.data.spec import CopySpec, RegressSpec
from rnnlab.data.splits import fingerprint

BLANK = 0
# the loaders run in-process (num_workers=0), so a batch stream with a length is exact
warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")
Batch = dict[str, Tensor]


def derived_seed(*parts: object) -> int:
    """A stable 63-bit seed from any parts (python's hash() differs between processes)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return int(hashlib.sha256(blob).hexdigest()[:15], 16)


def adding_problem(n: int, seq_len: int, generator: torch.Generator) -> Batch:
    """``n`` adding-problem examples: x (n, T, 2) = (value, marker), y (n,) = marked sum."""
    values = torch.rand(n, seq_len, generator=generator)
    half = seq_len // 2
    first = torch.randint(0, half, (n,), generator=generator)
    second = torch.randint(half, seq_len, (n,), generator=generator)
    rows = torch.arange(n)
    markers = torch.zeros(n, seq_len)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    y = values[rows, first] + values[rows, second]
    return {"x": torch.stack([values, markers], dim=-1), "y": y,
            "lengths": torch.full((n,), seq_len, dtype=torch.long)}


def copy_problem(n: int, delay: int, generator: torch.Generator, n_symbols: int = 10,
                 alphabet: int = 8) -> Batch:
    """``n`` copy-problem examples as token ids: blank 0, symbols 1..alphabet, delimiter
    alphabet + 1. x and y are (n, delay + 2 * n_symbols)."""
    length = delay + 2 * n_symbols
    symbols = torch.randint(1, alphabet + 1, (n, n_symbols), generator=generator)
    x = torch.full((n, length), BLANK, dtype=torch.long)
    x[:, :n_symbols] = symbols
    x[:, n_symbols + delay - 1] = alphabet + 1
    y = torch.full((n, length), BLANK, dtype=torch.long)
    y[:, -n_symbols:] = symbols
    return {"x": x, "y": y, "lengths": torch.full((n,), length, dtype=torch.long)}


def adding_baseline() -> float:
    """MSE of always predicting the mean sum 1.0: Var(U1 + U2) = 2/12."""
    return 1.0 / 6.0


def copy_baseline(delay: int, n_symbols: int = 10, alphabet: int = 8) -> float:
    """Per-step cross-entropy of the memoryless strategy (blank, then uniform symbols)."""
    return n_symbols * math.log(alphabet) / (delay + 2 * n_symbols)


class GeneratedBatches(IterableDataset):
    """Whole batches drawn from ``make(n, generator)``; ``seed_fn`` is asked at each pass,
    so a fresh seed per epoch gives fresh data and a constant one gives a fixed set."""

    def __init__(self, make: Callable[[int, torch.Generator], Batch], n: int, batch_size: int,
                 seed_fn: Callable[[], int]) -> None:
        self.make, self.n, self.batch_size, self.seed_fn = make, n, batch_size, seed_fn

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        generator = torch.Generator().manual_seed(self.seed_fn())
        for start in range(0, self.n, self.batch_size):
            yield self.make(min(self.batch_size, self.n - start), generator)


class FixedBatches(IterableDataset):
    """A set generated once (validation / test), served in order in batches."""

    def __init__(self, data: Batch, batch_size: int) -> None:
        self.data, self.batch_size = data, batch_size
        self.n = len(data["y"])

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        for start in range(0, self.n, self.batch_size):
            yield {k: v[start: start + self.batch_size] for k, v in self.data.items()}


class GeneratedDataModule(RnnlabDataModule):
    """Shared plumbing: per-epoch training streams, fixed val/test sets, plain loaders."""

    name = "generated"

    def __init__(self, n_train: int = 10000, n_val: int = 1000, n_test: int = 1000,
                 data_seed: int = 1234, batch_size: int = 64, num_workers: int = 0,
                 seed: int = 0) -> None:
        super().__init__(batch_size, 0, seed)  # generation is cheap: no worker processes
        self.sizes = {"train": n_train, "val": n_val, "test": n_test}
        self.data_seed = data_seed
        self.fixed: dict[str, Batch] = {}
        self._passes = 0

    # subclasses define the problem
    def generate(self, n: int, generator: torch.Generator) -> Batch:  # pragma: no cover
        raise NotImplementedError

    def problem(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _setup(self) -> None:
        for split in ("val", "test"):
            gen = torch.Generator().manual_seed(derived_seed(self.name, split, self.data_seed))
            self.fixed[split] = self.generate(self.sizes[split], gen)
        self.fingerprint = fingerprint(self.name, self.problem(), self.sizes, self.data_seed)

    def describe(self) -> dict[str, Any]:
        return {**{f"n_{k}": v for k, v in self.sizes.items()}, **self.problem()}

    def checkpoint_state(self) -> dict[str, Any]:
        return {"problem": self.problem(), "data_seed": self.data_seed}

    def epoch(self) -> int:
        """The trainer's epoch when attached (resume-safe), else a count of passes."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return int(trainer.current_epoch)
        self._passes += 1
        return self._passes - 1

    def train_dataloader(self) -> DataLoader:
        stream = GeneratedBatches(self.generate, self.sizes["train"], self.batch_size,
                                  lambda: derived_seed(self.name, "train", self.loader_seed,
                                                       self.epoch()))
        return DataLoader(stream, batch_size=None, collate_fn=self._shard(repeat=True))

    def _shard(self, repeat: bool) -> RowShard:
        """Under DDP every rank generates (or reads) every batch and keeps its rows."""
        self.check_sharding()
        return RowShard(*rank_world(), repeat=repeat)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(FixedBatches(self.fixed["val"], self.batch_size), batch_size=None,
                          collate_fn=self._shard(repeat=False))

    def test_dataloader(self) -> DataLoader:
        return DataLoader(FixedBatches(self.fixed["test"], self.batch_size), batch_size=None,
                          collate_fn=self._shard(repeat=False))


class AddingDataModule(GeneratedDataModule):
    """The adding problem at length ``seq_len`` (real-valued 2-channel input, N->1 target)."""

    name = "adding"

    def __init__(self, seq_len: int = 100, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seq_len = seq_len
        self.spec = RegressSpec(input_size=2, padding_idx=0, output_size=1,
                                baseline_loss=adding_baseline(), seq_len=seq_len)

    def generate(self, n: int, generator: torch.Generator) -> Batch:
        return adding_problem(n, self.seq_len, generator)

    def problem(self) -> dict[str, Any]:
        return {"seq_len": self.seq_len}


class CopyDataModule(GeneratedDataModule):
    """The copy problem with delay ``delay`` (token input, one target per step)."""

    name = "copy"

    def __init__(self, delay: int = 100, n_symbols: int = 10, alphabet: int = 8,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delay, self.n_symbols, self.alphabet = delay, n_symbols, alphabet
        pad = alphabet + 2  # blank, symbols and delimiter are all real inputs
        self.spec = CopySpec(vocab_size=alphabet + 3, padding_idx=pad,
                             num_classes=alphabet + 1, n_symbols=n_symbols,
                             baseline_loss=copy_baseline(delay, n_symbols, alphabet))

    def generate(self, n: int, generator: torch.Generator) -> Batch:
        return copy_problem(n, self.delay, generator, self.n_symbols, self.alphabet)

    def problem(self) -> dict[str, Any]:
        return {"delay": self.delay, "n_symbols": self.n_symbols, "alphabet": self.alphabet}
