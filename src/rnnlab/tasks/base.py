"""The shared LightningModule: optimizer wiring and the metric-logging convention.

Task modules own their loss, metrics and plots; they receive a ready backbone and the
datamodule's ``spec`` and never learn where the data came from. Metrics are logged as
``train/loss``, ``val/<name>``, ``test/<name>``.

Evaluation under DDP (see ``rnnlab.metrics.distributed``): steps only *update* state
(``WeightedMean`` sums, torchmetrics states, per-example lists), skipping the empty
batches that even out the ranks' shards; the epoch-end hooks, which every rank runs,
reduce that state over the ranks and log the result with :meth:`RnnlabTask.log_reduced`.
So one process and N processes log the same numbers, each example counted once.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from rnnlab.data.batching import global_batch_index, is_empty_batch

OptimizerFactory = Callable[..., Optimizer]


class RnnlabTask(pl.LightningModule):
    """Base class: a backbone, an optimizer factory (a Hydra ``_partial_``) and an optional
    scheduler factory. ``monitor`` is the metric a plateau scheduler watches."""

    def __init__(self, backbone: nn.Module, optimizer: OptimizerFactory,
                 scheduler: Callable[..., Any] | None = None, monitor: str = "val/loss") -> None:
        super().__init__()
        self.backbone = backbone
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.monitor = monitor

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": self.monitor,
                                 "interval": "epoch"}}

    def log_train_loss(self, loss: Tensor, batch_size: int) -> Tensor:
        """Log ``train/loss`` per step and per epoch (the one name every task shares)."""
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=batch_size)
        return loss

    @staticmethod
    def skip(batch: Any) -> bool:
        """True for the empty filler batches of an evaluation shard (nothing to score)."""
        return is_empty_batch(batch)

    def eval_position(self, batch_idx: int) -> int:
        """Where this rank's evaluation batch ``batch_idx`` stands among all ranks' batches,
        i.e. its index in a single-process run: gathered per-example results are sorted
        by it so artifacts (examples, heat maps) do not depend on the process count."""
        trainer = getattr(self, "_trainer", None)
        world = trainer.world_size if trainer is not None else 1
        return global_batch_index(batch_idx, self.global_rank, world)

    def log_reduced(self, values: Mapping[str, float | Tensor],
                    prog_bar: Collection[str] = ()) -> None:
        """Log epoch values that are already reduced over all ranks (so equal on every
        rank, which checkpointing, early stopping and plateau schedulers need).

        They are "synced" with ``max``: exact for equal values and no PossibleUserWarning,
        where Lightning's mean sync would divide an integer count by the world size.
        """
        for name, value in values.items():
            self.log(name, torch.as_tensor(value, dtype=torch.float64, device=self.device).detach(),
                     prog_bar=name in prog_bar, sync_dist=True, reduce_fx="max")

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
