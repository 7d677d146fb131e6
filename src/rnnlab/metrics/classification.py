"""Class scores shared by the networks and the text baselines."""

from __future__ import annotations

from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

# how test/acc, test/f1 and test/loss follow from predictions/test.parquet (rnnlab.report.stats)
PREDICTION_METRICS = {"test/acc": {"kind": "mean", "column": "score"},
                      "test/f1": {"kind": "macro_f1", "gold": "gold", "prediction": "prediction"},
                      "test/loss": {"kind": "mean", "column": "loss"}}


def classification_metrics(num_classes: int) -> MetricCollection:
    """Accuracy and macro-F1: the same objects score networks and baselines."""
    return MetricCollection({
        "acc": MulticlassAccuracy(num_classes, average="micro"),
        "f1": MulticlassF1Score(num_classes, average="macro"),
    })
