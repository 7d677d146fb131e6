"""Length-bucketed batching and padding.

Recurrent kernels pay for every padded step. Sorting by length inside large shuffled
chunks keeps batches nearly uniform in length (real/processed tokens close to 1) while
keeping the batch order random. Under DDP each rank takes its own share of the same
global batches (:func:`shard_batches`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import Sampler

from rnnlab.core.dist import rank_world
from rnnlab.core.errors import ConfigError


class BucketBatchSampler(Sampler[list[int]]):
    """Yield batches of indices of similar length, this process's share under DDP.

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
        drop_last: drop the short batch of each chunk.
        repeat_to_even: how ranks are evened out under DDP (see :func:`shard_batches`):
            repeat batches (training: every rank must take the same number of optimizer
            steps) or pad with empty batches (evaluation: every example scored exactly
            once). Default: repeat when shuffling, i.e. for training.
        num_replicas, rank: the process layout; default: the running process group.

    Every rank cuts the *same* global batches (same seed, same epoch) and takes every
    ``world``-th of them, so the batches, and what a model computes on them, are those of
    a single process; only their assignment to processes changes.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool = True,
                 bucket_factor: int = 50, seed: int = 0, drop_last: bool = False,
                 repeat_to_even: bool | None = None, num_replicas: int | None = None,
                 rank: int | None = None) -> None:
        if isinstance(lengths, Sampler):  # Lightning re-creating us around its own sampler
            raise ConfigError(
                "rnnlab's length-bucketing loaders shard the data across processes "
                "themselves; set trainer.use_distributed_sampler=false (trainer=ddp does).")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.bucket_factor = bucket_factor
        self.seed = seed
        self.drop_last = drop_last
        self.repeat_to_even = shuffle if repeat_to_even is None else repeat_to_even
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _all_batches(self) -> list[list[int]]:
        """Every batch of the epoch, for all ranks together."""
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

    def _rank_world(self) -> tuple[int, int]:
        rank, world = rank_world()
        world = world if self.num_replicas is None else self.num_replicas
        rank = rank if self.rank is None else self.rank
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is outside 0..{world - 1}")
        return rank, world

    def __iter__(self) -> Iterator[list[int]]:
        rank, world = self._rank_world()
        yield from shard_batches(self._all_batches(), rank, world, self.repeat_to_even)

    def _global_count(self) -> int:
        # chunks hold a whole number of batches, so chunking adds no short batch but the last
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __len__(self) -> int:
        return math.ceil(self._global_count() / self._rank_world()[1])

    def padding_efficiency(self) -> float:
        """Real steps / processed steps over one epoch (1.0 means no padding at all)."""
        real = processed = 0
        for b in self._all_batches():
            lens = [self.lengths[i] for i in b]
            real += sum(lens)
            processed += max(lens) * len(lens)
        return real / max(processed, 1)


def shard_batches(batches: Sequence[list[int]], rank: int, world: int,
                  repeat: bool) -> list[list[int]]:
    """Rank ``rank``'s share of ``batches``: every ``world``-th batch, starting at ``rank``.

    All ranks get ``ceil(len(batches) / world)`` batches: DDP's collectives (gradient
    all-reduce in training, buffer broadcasts and metric syncs in evaluation) hang when one
    rank runs out of batches first. The short ranks are filled up either by repeating
    batches from the start (``repeat``, for training: a few examples count twice in an
    epoch, as with torch's ``DistributedSampler``) or with empty batches (evaluation:
    tasks skip them, so every example is scored exactly once). Global batch ``g`` lands
    on rank ``g % world`` as its local batch ``g // world``; :func:`global_batch_index`
    inverts that.
    """
    n = len(batches)
    slots = range(rank, math.ceil(n / world) * world, world)
    if repeat:
        return [batches[i % n] for i in slots]
    return [batches[i] if i < n else [] for i in slots]


def global_batch_index(local_index: int, rank: int, world: int) -> int:
    """The position, among all ranks' evaluation batches, of a rank's ``local_index``-th
    batch (what it would be in one process): results gathered from several ranks are put
    back in single-process order by it."""
    return local_index * world + rank


def is_empty_batch(batch: object) -> bool:
    """True for the filler batches that even out evaluation shards (see
    :func:`shard_batches`); evaluation steps return at once on them."""
    return isinstance(batch, dict) and not batch


class SkipEmptyCollate:
    """A collate function that turns an empty index list into an empty batch (``{}``)
    instead of calling the datamodule's collate on nothing. Picklable for workers."""

    def __init__(self, collate: Callable[[list], dict]) -> None:
        self.collate = collate

    def __call__(self, items: list) -> dict:
        return self.collate(items) if len(items) else {}


def spread_order(n: int) -> list[int]:
    """A permutation of ``range(n)`` whose every prefix is spread evenly over ``0..n-1``.

    Index ``i`` is ranked by the fractional part of ``i`` times the golden ratio, a
    low-discrepancy sequence: the first ``k`` picks leave no gap wider than ``2 n/k``
    (checked for n up to 4000).
    """
    golden = (math.sqrt(5) - 1) / 2
    return sorted(range(n), key=lambda i: (i * golden) % 1.0)


class RowShard:
    """Collate for loaders that yield whole batches (``batch_size=None``): this rank keeps
    rows ``rank, rank + world, ...`` of every tensor or list with a batch dimension.

    For batches that must stay in order (stateful character streams, whose row ``i``
    continues row ``i`` of the previous batch) or that are generated whole: every rank
    steps through every batch, so step counts match, and each row (stream, example) is
    on exactly one rank. A batch with fewer rows than ranks repeats rows when ``repeat``
    (training: every rank needs something to back-propagate) and otherwise leaves the
    extra ranks an empty batch (evaluation: each example scored once).
    """

    def __init__(self, rank: int, world: int, repeat: bool) -> None:
        self.rank, self.world, self.repeat = rank, world, repeat

    def __call__(self, batch: dict) -> dict:
        if self.world == 1:
            return batch
        rows = next((len(v) for v in batch.values()
                     if isinstance(v, Tensor) and v.dim() > 0), None)
        if rows is None:
            return batch
        if rows == 0:
            return {}
        keep = [i % rows for i in range(self.rank, max(rows, self.world) if self.repeat
                                        else rows, self.world)]
        if not keep:
            return {}
        index = torch.tensor(keep)
        return {k: v.index_select(0, index.to(v.device)) if isinstance(v, Tensor) and v.dim() > 0
                else [v[i] for i in keep] if isinstance(v, list) and len(v) == rows else v
                for k, v in batch.items()}


def pad_batch(seqs: Sequence[Tensor], pad_value: float = 0) -> tuple[Tensor, Tensor]:
    """Right-pad 1-D (ids) or 2-D (frames x features) tensors; returns (padded, lengths)."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    padded = torch.nn.utils.rnn.pad_sequence(list(seqs), batch_first=True, padding_value=pad_value)
    return padded, lengths
