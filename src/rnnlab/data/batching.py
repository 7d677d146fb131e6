"""Length-bucketed batching and padding.

Recurrent kernels pay for every padded step. Sorting by length inside large shuffled
chunks keeps batches nearly uniform in length (real/processed tokens close to 1) while
keeping the batch order random. Under DDP each rank takes its own share of batches.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import Sampler


class BucketBatchSampler(Sampler[list[int]]):
    """Yield batches of indices of similar length.

    Args:
        lengths: length of every example.
        batch_size: examples per batch.
        shuffle: shuffle chunks and batches each epoch. Off (val/test), the batches are cut
            from one global sort by length and then interleaved in a fixed order that spreads
            every prefix evenly over the lengths: in sorted order a prefix of the batches
            (what ``trainer.limit_val_batches`` evaluates) would hold only the shortest
            examples, and a metric on them would be biased.
        bucket_factor: chunk size in batches; larger = less padding, less randomness.
        seed: base seed; the epoch is added so every epoch differs reproducibly.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool = True,
                 bucket_factor: int = 50, seed: int = 0, drop_last: bool = False) -> None:
        if batch_size < 1:
            from rnnlab.errors import ConfigError

            raise ConfigError(f"task.datamodule.batch_size must be at least 1, got {batch_size}.")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.bucket_factor = bucket_factor
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _all_batches(self) -> list[list[int]]:
        idx = list(range(len(self.lengths)))
        rng = random.Random(self.seed + self.epoch)
        if self.shuffle:
            rng.shuffle(idx)
            chunk = self.batch_size * self.bucket_factor
            chunks = [idx[i: i + chunk] for i in range(0, len(idx), chunk)]
        else:
            chunks = [idx]
        batches: list[list[int]] = []
        for c in chunks:
            c.sort(key=lambda i: self.lengths[i])
            for i in range(0, len(c), self.batch_size):
                b = c[i: i + self.batch_size]
                if len(b) == self.batch_size or not self.drop_last:
                    batches.append(b)
        if self.shuffle:
            rng.shuffle(batches)
            return batches
        return [batches[i] for i in spread_order(len(batches))]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._all_batches()
        rank, world = _rank_world()
        if world > 1:
            per_rank = math.ceil(len(batches) / world)
            batches = (batches * 2)[: per_rank * world][rank::world]
        yield from batches

    def __len__(self) -> int:
        n = len(self.lengths)
        count = n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        if self.shuffle and not self.drop_last:  # chunking can leave one short batch per chunk
            chunk = self.batch_size * self.bucket_factor
            full, rest = divmod(n, chunk)
            count = full * math.ceil(chunk / self.batch_size) + math.ceil(rest / self.batch_size)
        _, world = _rank_world()
        return math.ceil(count / world)

    def padding_efficiency(self) -> float:
        """Real steps / processed steps over one epoch (1.0 means no padding at all)."""
        real = processed = 0
        for b in self._all_batches():
            lens = [self.lengths[i] for i in b]
            real += sum(lens)
            processed += max(lens) * len(lens)
        return real / max(processed, 1)


def spread_order(n: int) -> list[int]:
    """A permutation of ``range(n)`` whose every prefix is spread evenly over ``0..n-1``.

    Index ``i`` is ranked by the fractional part of ``i`` times the golden ratio, a
    low-discrepancy sequence: the first ``k`` picks leave no gap wider than ``2 n/k``
    (checked for n up to 4000).
    """
    golden = (math.sqrt(5) - 1) / 2
    return sorted(range(n), key=lambda i: (i * golden) % 1.0)


def _rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def pad_batch(seqs: Sequence[Tensor], pad_value: float = 0) -> tuple[Tensor, Tensor]:
    """Right-pad 1-D (ids) or 2-D (frames x features) tensors; returns (padded, lengths)."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    padded = torch.nn.utils.rnn.pad_sequence(list(seqs), batch_first=True, padding_value=pad_value)
    return padded, lengths
