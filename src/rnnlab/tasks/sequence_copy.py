"""Per-step classification for the copy problem (N->N, one class per input step).

The loss is the cross-entropy averaged over every step, the quantity the memoryless
baseline 10 ln 8 / (T + 20) is defined on; ``recall_acc`` is the accuracy on the steps
that must reproduce the symbols, the part that needs memory.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.data.spec import CopySpec
from rnnlab.metrics.distributed import WeightedMean
from rnnlab.tasks.base import OptimizerFactory, RnnlabTask
from rnnlab.tasks.regression import against_baseline
from rnnlab.tracking.predictions import DEFAULT_MAX_ROWS

# how the test scores follow from predictions/test.parquet: each sequence's mean
# cross-entropy over its steps, and its accuracy on the recalled symbols
PREDICTION_METRICS = {"test/loss": {"kind": "mean", "column": "score"},
                      "test/recall_acc": {"kind": "mean", "column": "recall_acc"}}


class SequenceCopyTask(RnnlabTask):
    """Backbone -> per-step logits over ``num_classes``; reports loss against the baseline."""

    MEANS = MappingProxyType({"loss": WeightedMean, "recall_acc": WeightedMean})
    PROGRESS_BAR = ("loss",)
    WHOLE_BATCHES = True
    prediction_metrics = PREDICTION_METRICS

    def __init__(self, backbone: nn.Module, spec: CopySpec, optimizer: OptimizerFactory,
                 scheduler: Any = None, monitor: str = "val/loss", dropout: float = 0.0,
                 solved_fraction: float = 0.1, max_predictions: int = DEFAULT_MAX_ROWS) -> None:
        super().__init__(backbone, optimizer, scheduler, monitor, max_predictions)
        self.num_classes = int(spec.num_classes)
        self.n_symbols = int(spec.n_symbols)
        self.baseline = spec.baseline_loss
        self.solved_fraction = solved_fraction
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.output_size, self.num_classes)

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

    def evaluate(self, batch: dict, batch_idx: int, split: str) -> dict[str, Any]:
        loss, logits = self._loss(batch)
        n = len(batch["y"])
        return {"loss": (loss, n), "recall_acc": (self._recall_acc(logits, batch["y"]), n),
                "logits": logits}

    def prediction_rows(self, batch: dict, out: dict[str, Any],
                        ids: list[int] | None) -> list[dict[str, Any]]:
        """One row per test sequence: input, target and predicted symbols, its loss and
        its accuracy on the symbols to recall."""
        logits, y = out["logits"], batch["y"]
        k = self.n_symbols or y.shape[1]
        loss = F.cross_entropy(logits.float().transpose(1, 2), y, reduction="none").mean(1)
        pred = logits.argmax(-1)
        recall = (pred[:, -k:] == y[:, -k:]).float().mean(1).tolist()
        return [{"input": " ".join(map(str, xs)), "gold": " ".join(map(str, ys)),
                 "prediction": " ".join(map(str, ps)), "score": float(loss[i]),
                 "recall_acc": recall[i]}
                for i, (xs, ys, ps) in enumerate(zip(batch["x"].tolist(), y.tolist(),
                                                     pred.tolist(), strict=True))]

    def epoch_values(self, split: str) -> dict[str, Any]:
        """Example-weighted loss and recall accuracy over every rank, and the baseline."""
        loss = float(self.mean(split, "loss"))
        return {"loss": loss, "recall_acc": self.mean(split, "recall_acc"),
                **against_baseline(split, loss, self.baseline, self.solved_fraction)}
