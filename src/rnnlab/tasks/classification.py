"""Sequence classification (N->1): sentiment, spoken digits, any labelled sequences."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassConfusionMatrix

from rnnlab.data.spec import ClassifySpec
from rnnlab.metrics.classification import PREDICTION_METRICS, classification_metrics
from rnnlab.models.heads import ClassifierHead
from rnnlab.tasks.base import OptimizerFactory, RnnlabTask, WordDropout
from rnnlab.tracking.artifacts import confusion_matrix_figure, log_figure
from rnnlab.tracking.predictions import DEFAULT_MAX_ROWS


class ClassificationTask(RnnlabTask):
    """Backbone -> pooled features -> class logits, trained with cross-entropy.

    ``word_dropout`` / ``word_dropout_max_count``: in training only, each word seen
    1..max_count times in training is replaced by ``<unk>`` with that probability
    (:class:`rnnlab.tasks.base.WordDropout`; token datamodules only); never at eval.
    """

    prediction_metrics = PREDICTION_METRICS

    def __init__(self, backbone: nn.Module, spec: ClassifySpec, optimizer: OptimizerFactory,
                 scheduler: Any = None, monitor: str = "val/acc", pooling: str = "last",
                 dropout: float = 0.0, label_smoothing: float = 0.0,
                 max_predictions: int = DEFAULT_MAX_ROWS, word_dropout: float = 0.0,
                 word_dropout_max_count: int = 1) -> None:
        super().__init__(backbone, optimizer, scheduler, monitor, max_predictions)
        self.word_dropout = WordDropout(word_dropout, word_dropout_max_count, spec)
        self.num_classes = int(spec.num_classes)
        self.class_names = list(spec.class_names or range(self.num_classes))
        self.head = ClassifierHead(backbone.output_size, self.num_classes, pooling, dropout)
        self.label_smoothing = label_smoothing
        metrics = classification_metrics(self.num_classes)
        self.scores = nn.ModuleDict({"val": metrics.clone(), "test": metrics.clone()})
        self.test_confusion = MulticlassConfusionMatrix(self.num_classes)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        enc = self.backbone(x, lengths)
        return self.head(enc.outputs, enc.last, lengths)

    def _loss(self, batch: dict, x: Tensor | None = None) -> tuple[Tensor, Tensor]:
        logits = self(batch["x"] if x is None else x, batch["lengths"])
        loss = F.cross_entropy(logits, batch["y"], label_smoothing=self.label_smoothing)
        return loss, logits

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss, _ = self._loss(batch, self.word_dropout(batch["x"]))
        return self.log_train_loss(loss, len(batch["y"]))

    def evaluate(self, batch: dict, batch_idx: int, split: str) -> dict[str, Any]:
        loss, logits = self._loss(batch)
        self.scores[split].update(logits, batch["y"])
        if split == "test":
            self.test_confusion.update(logits, batch["y"])
        return {"loss": (loss, len(batch["y"])), "logits": logits}

    def prediction_rows(self, batch: dict, out: dict[str, Any],
                        ids: list[int] | None) -> list[dict[str, Any]]:
        """One row per example: text, gold and predicted class, correct (0/1), its loss."""
        logits, y = out["logits"], batch["y"]
        nll = F.cross_entropy(logits.float(), y, reduction="none",
                              label_smoothing=self.label_smoothing).tolist()
        pred = logits.argmax(-1).tolist()
        inputs = self.predictions.inputs(self, batch, ids)
        return [{"input": inputs[i], "gold": str(self.class_names[g]),
                 "prediction": str(self.class_names[p]), "score": float(g == p), "loss": nll[i]}
                for i, (g, p) in enumerate(zip(y.tolist(), pred, strict=True))]

    def epoch_values(self, split: str) -> dict[str, Any]:
        """Accuracy, F1 (torchmetrics states summed over ranks) and the example-weighted
        mean loss, computed on every rank from the reduced state."""
        values = {**self.scores[split].compute(), "loss": self.mean(split, "loss")}
        self.scores[split].reset()
        return values

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        matrix = self.test_confusion.compute().cpu().numpy()  # counts summed over ranks
        self.test_confusion.reset()
        log_figure(self.trainer, confusion_matrix_figure(matrix, [str(c) for c in self.class_names]),
                   "plots/confusion_matrix_test.png")
