"""The shared LightningModule: optimizer wiring and the metric-logging convention.

Task modules own their loss, metrics and plots; they receive a ready backbone and the
datamodule's ``spec`` and never learn where the data came from. Metrics are logged as
``train/loss``, ``val/<name>``, ``test/<name>``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
from torch import Tensor, nn
from torch.optim import Optimizer

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

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
