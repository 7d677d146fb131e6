"""Reducing evaluation results over data-parallel processes (``trainer=ddp``).

Under DDP every process scores its own shard of the validation / test set, so a metric
is only right once the shards are put back together. Two rules hold everywhere in
``rnnlab.tasks``:

* Means are kept as a float64 *sum* and *count* (:class:`WeightedMean`, :class:`Ratio`)
  and reduced by summing both. Lightning's ``self.log(..., sync_dist=True)`` averages
  the per-process sums and the per-process counts separately and divides the integer
  count by the world size in integer arithmetic, so with an odd total count the mean
  comes out wrong; its float32 accumulator also rounds differently from one process.
* Scores that are not a sum of per-example terms (entity F1, WER, BLEU, a confusion
  matrix) are computed from the gathered per-process state (:func:`gather_objects`), never
  averaged over processes.

Every function here is a collective when a process group is up: all ranks must call it,
in the same order, or the job hangs. The tasks' evaluation loop
(:class:`rnnlab.tasks.base.RnnlabTask`) therefore reduces in its epoch-end hooks, which
every rank runs, and then logs the (identical) result on every rank.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric


class WeightedMean(Metric):
    """Sum of ``value * weight`` over sum of ``weight``, in float64, reduced by summing.

    ``update(batch_mean, batch_size)`` gives the mean over examples, exactly the same
    with one process or many (each example counted once, whatever the batch layout).
    """

    full_state_update = False
    higher_is_better = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("weight", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, value: Tensor | float, weight: Tensor | float = 1.0) -> None:
        value = torch.as_tensor(value, dtype=torch.float64, device=self.total.device).detach()
        weight = torch.as_tensor(weight, dtype=torch.float64, device=self.total.device)
        weight = torch.broadcast_to(weight, value.shape) if weight.ndim < value.ndim else weight
        # not in place: states reset under inference mode must still take updates outside it
        self.total = self.total + (value * weight).sum()
        self.weight = self.weight + weight.sum()

    def compute(self) -> Tensor:
        """The mean; NaN when nothing was seen on any rank (an empty split)."""
        if self.weight == 0:
            return torch.tensor(float("nan"), dtype=torch.float64, device=self.total.device)
        return self.total / self.weight


class Ratio(Metric):
    """Summed numerator over summed count, in float64, reduced by summing both.

    For scores a batch gives as a sum rather than a mean (nats summed over characters):
    ``update(batch_sum, batch_count)``, so the ratio is exact over the split. The count is
    clamped to 1, so an empty split gives 0, not NaN.
    """

    full_state_update = False
    higher_is_better = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, total: Tensor | float, count: Tensor | float) -> None:
        total = torch.as_tensor(total, device=self.total.device).detach()
        # not in place, as in WeightedMean
        self.total = self.total + total.to(torch.float64)
        self.count = self.count + count

    def compute(self) -> Tensor:
        return self.total / self.count.clamp(min=1)
