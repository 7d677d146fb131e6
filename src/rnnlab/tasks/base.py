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

from rnnlab.core.errors import ConfigError
from rnnlab.data.batching import global_batch_index, is_empty_batch
from rnnlab.data.spec import DataSpec

OptimizerFactory = Callable[..., Optimizer]


class RnnlabTask(pl.LightningModule):
    """Base class: a backbone, an optimizer factory (a Hydra ``_partial_``) and an optional
    scheduler factory. ``monitor`` is the metric a plateau scheduler watches."""

    # rebuilds another checkpoint of this lab (set by rnnlab.build.build_module, which
    # owns loading; a task that joins other models at test time calls it)
    checkpoint_loader: Callable[..., Any] | None = None

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


class WordDropout(nn.Module):
    """Word dropout (Lample et al. 2016): in training, each rare word is replaced by
    ``<unk>`` with probability ``p``, so the ``<unk>`` embedding is trained on words like
    the unseen ones it will meet at test time, and the model learns not to lean on the
    identity of words it saw once.

    "Rare" is a training count in ``1..max_count`` (``spec.token_counts``, per id); the
    specials (count 0) are never touched. A no-op at ``p=0`` and whenever the module is in
    eval mode; callers apply it in ``training_step`` only, so evaluation never sees it.
    """

    def __init__(self, p: float, max_count: int, spec: DataSpec) -> None:
        super().__init__()
        if not 0.0 <= float(p) <= 1.0:
            raise ConfigError(f"task.module.word_dropout must be in [0, 1], got {p!r}.")
        if not (isinstance(max_count, int) and max_count >= 1):
            raise ConfigError(f"task.module.word_dropout_max_count must be a positive integer "
                              f"(the highest training count still called rare), got "
                              f"{max_count!r}.")
        self.p = float(p)
        self.unk_id = -1
        rare = torch.zeros(0, dtype=torch.bool)
        if self.p > 0:
            counts, unk = spec.token_counts, spec.unk_id
            if not counts or unk is None:
                raise ConfigError("task.module.word_dropout > 0 needs word counts and an <unk> "
                                  "token from the data, which this datamodule does not give; "
                                  "set task.module.word_dropout=0.")
            self.unk_id = int(unk)
            counts_t = torch.as_tensor(list(counts), dtype=torch.long)
            rare = (counts_t >= 1) & (counts_t <= max_count)
        # rebuilt from the spec, so not part of the checkpoint's weights
        self.register_buffer("rare", rare, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` (token ids) with rare words replaced by ``<unk>`` (training only)."""
        if not self.training or self.p == 0 or x.is_floating_point():
            return x
        drop = self.rare[x] & (torch.rand(x.shape, device=x.device) < self.p)
        return x.masked_fill(drop, self.unk_id)
