"""Per-step classification for the copy problem (N->N, one class per input step).

The loss is the cross-entropy averaged over every step, the quantity the memoryless
baseline 10 ln 8 / (T + 20) is defined on; ``recall_acc`` is the accuracy on the steps
that must reproduce the symbols, the part that needs memory.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.data.spec import CopySpec
from rnnlab.metrics.distributed import WeightedMean
from rnnlab.tasks.base import OptimizerFactory, RnnlabTask
from rnnlab.tasks.regression import against_baseline
from rnnlab.tracking.predictions import DEFAULT_MAX_ROWS, PredictionRows

# how the test scores follow from predictions/test.parquet: each sequence's mean
# cross-entropy over its steps, and its accuracy on the recalled symbols
PREDICTION_METRICS = {"test/loss": {"kind": "mean", "column": "score"},
                      "test/recall_acc": {"kind": "mean", "column": "recall_acc"}}


class SequenceCopyTask(RnnlabTask):
    """Backbone -> per-step logits over ``num_classes``; reports loss against the baseline."""

    def __init__(self, backbone: nn.Module, spec: CopySpec, optimizer: OptimizerFactory,
                 scheduler: Any = None, monitor: str = "val/loss", dropout: float = 0.0,
                 solved_fraction: float = 0.1, max_predictions: int = DEFAULT_MAX_ROWS) -> None:
        super().__init__(backbone, optimizer, scheduler, monitor)
        self.num_classes = int(spec.num_classes)
        self.n_symbols = int(spec.n_symbols)
        self.baseline = spec.baseline_loss
        self.solved_fraction = solved_fraction
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.output_size, self.num_classes)
        self.losses = nn.ModuleDict({"val": WeightedMean(), "test": WeightedMean()})
        self.recall = nn.ModuleDict({"val": WeightedMean(), "test": WeightedMean()})
        self.predictions = PredictionRows(max_predictions, whole_batches=True)

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

    def _eval_step(self, batch: dict, split: str, batch_idx: int = 0) -> None:
        if self.skip(batch):
            return
        loss, logits = self._loss(batch)
        n = len(batch["y"])
        self.losses[split].update(loss, n)
        self.recall[split].update(self._recall_acc(logits, batch["y"]), n)
        if split == "test" and self.predictions.enabled:
            self._collect_predictions(batch, batch_idx, logits)

    def _collect_predictions(self, batch: dict, batch_idx: int, logits: Tensor) -> None:
        """One row per test sequence: input, target and predicted symbols, its loss and
        its accuracy on the symbols to recall."""
        y = batch["y"]
        k = self.n_symbols or y.shape[1]
        loss = F.cross_entropy(logits.float().transpose(1, 2), y, reduction="none").mean(1)
        pred = logits.argmax(-1)
        recall = (pred[:, -k:] == y[:, -k:]).float().mean(1).tolist()
        for i, (xs, ys, ps) in enumerate(zip(batch["x"].tolist(), y.tolist(), pred.tolist(),
                                             strict=True)):
            self.predictions.add(self, batch_idx, i, {
                "input": " ".join(map(str, xs)), "gold": " ".join(map(str, ys)),
                "prediction": " ".join(map(str, ps)), "score": float(loss[i]),
                "recall_acc": recall[i]})

    def _eval_end(self, split: str) -> None:
        """Example-weighted loss and recall accuracy over every rank, and the baseline."""
        loss = float(self.losses[split].compute())
        values = {f"{split}/loss": loss, f"{split}/recall_acc": self.recall[split].compute(),
                  **against_baseline(split, loss, self.baseline, self.solved_fraction)}
        self.losses[split].reset()
        self.recall[split].reset()
        self.log_reduced(values, prog_bar=[f"{split}/loss"] if split == "val" else ())

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test", batch_idx)

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")
        self.predictions.write(self, PREDICTION_METRICS)
