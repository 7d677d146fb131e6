"""Per-step classification for the copy problem (N->N, one class per input step).

The loss is the cross-entropy averaged over every step, the quantity the memoryless
baseline 10 ln 8 / (T + 20) is defined on; ``recall_acc`` is the accuracy on the steps
that must reproduce the symbols, the part that needs memory.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric

from rnnlab.tasks.base import OptimizerFactory, RnnlabTask
from rnnlab.tasks.regression import log_against_baseline


class SequenceCopyTask(RnnlabTask):
    """Backbone -> per-step logits over ``num_classes``; reports loss against the baseline."""

    def __init__(self, backbone: nn.Module, spec: dict[str, Any], optimizer: OptimizerFactory,
                 scheduler: Any = None, monitor: str = "val/loss", dropout: float = 0.0,
                 solved_fraction: float = 0.1) -> None:
        super().__init__(backbone, optimizer, scheduler, monitor)
        self.num_classes = int(spec["num_classes"])
        self.n_symbols = int(spec.get("n_symbols", 0))
        self.baseline = spec.get("baseline_loss")
        self.solved_fraction = solved_fraction
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.output_size, self.num_classes)
        self.val_mean = MeanMetric()
        self.test_mean = MeanMetric()

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.head(self.dropout(self.backbone(x, lengths).outputs))

    def _loss(self, batch: dict) -> tuple[Tensor, Tensor]:
        logits = self(batch["x"], batch.get("lengths"))
        loss = F.cross_entropy(logits.reshape(-1, self.num_classes), batch["y"].reshape(-1))
        return loss, logits

    def _recall_acc(self, logits: Tensor, y: Tensor) -> Tensor:
        k = self.n_symbols or y.shape[1]
        return (logits[:, -k:].argmax(-1) == y[:, -k:]).float().mean()

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss, _ = self._loss(batch)
        return self.log_train_loss(loss, len(batch["y"]))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss, logits = self._loss(batch)
        n = len(batch["y"])
        self.val_mean.update(loss, n)
        self.log("val/loss", loss, prog_bar=True, batch_size=n)
        self.log("val/recall_acc", self._recall_acc(logits, batch["y"]), batch_size=n)

    def on_validation_epoch_end(self) -> None:
        log_against_baseline(self, "val", float(self.val_mean.compute()), self.baseline,
                             self.solved_fraction)
        self.val_mean.reset()

    def test_step(self, batch: dict, batch_idx: int) -> None:
        loss, logits = self._loss(batch)
        n = len(batch["y"])
        self.test_mean.update(loss, n)
        self.log("test/loss", loss, batch_size=n)
        self.log("test/recall_acc", self._recall_acc(logits, batch["y"]), batch_size=n)

    def on_test_epoch_end(self) -> None:
        log_against_baseline(self, "test", float(self.test_mean.compute()), self.baseline,
                             self.solved_fraction)
        self.test_mean.reset()
