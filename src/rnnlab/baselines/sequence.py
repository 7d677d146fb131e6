"""What the sequence-classification baselines share: reading the split, scoring, logging.

A baseline here fits on raw (normalised) series, each ``time x channels``, and predicts
a class per series. It reads exactly the series the networks read (the datamodule's
prepared splits), scores them with the networks' metric objects, and logs the same
confusion matrix and predictions table. The archive sets' published figures fit on the
archive's whole training split, so by default (``refit=true``) validation is scored
from a fit on train and test from a fit on train + validation, as the forecasting
baselines forecast the test period (the networks use validation to pick an epoch).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from rnnlab.baselines.base import Baseline
from rnnlab.metrics.classification import PREDICTION_METRICS, classification_metrics
from rnnlab.tracking.artifacts import confusion_matrix_figure, log_figure
from rnnlab.tracking.predictions import DEFAULT_MAX_ROWS, PredictionRows, write_rows

Series = list[np.ndarray]  # each (time, channels)


def split_series(datamodule: Any, split: str) -> tuple[Series, np.ndarray]:
    """A split's series (``time x channels`` float arrays) and class ids, in order."""
    items = datamodule.datasets[split].items
    return ([np.asarray(x, dtype=np.float64) for x, _ in items],
            np.asarray([int(y) for _, y in items], dtype=np.int64))


class SequenceBaseline(Baseline):
    """Subclasses implement :meth:`fit` and :meth:`predict_scores`."""

    families = ("sequence_classification",)

    def __init__(self, refit: bool = True, max_predictions: int = DEFAULT_MAX_ROWS) -> None:
        self.refit = refit
        PredictionRows(max_predictions)  # refuses a bad value before any fitting
        self.max_predictions = max_predictions
        self.num_classes = 0  # the task's, set before fitting

    def fit(self, series: Series, labels: np.ndarray) -> SequenceBaseline:
        raise NotImplementedError

    def predict_scores(self, series: Series) -> tuple[np.ndarray, np.ndarray]:
        """Predicted class ids and each series' class probabilities (rows sum to 1)."""
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """What the fitted baseline needs to predict, as JSON-able values (served models)."""
        raise NotImplementedError

    def load_state(self, state: dict[str, Any]) -> SequenceBaseline:
        """The fitted baseline back from :meth:`state`."""
        raise NotImplementedError

    def extra_metrics(self) -> dict[str, float]:
        """Settings chosen while fitting, logged as ``baseline/<name>``."""
        return {}

    def fit_evaluate(self, datamodule: Any, run: Any) -> dict[str, float]:
        self.num_classes = int(datamodule.spec.num_classes)
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (
            split_series(datamodule, s) for s in ("train", "val", "test"))
        n = self.num_classes
        self.fit(x_tr, y_tr)
        val_pred, _ = self.predict_scores(x_va)
        metrics = _score(y_va, val_pred, n, "val")
        if self.refit:
            self.fit(x_tr + x_va, np.concatenate([y_tr, y_va]))
        test_pred, proba = self.predict_scores(x_te)
        metrics.update(_score(y_te, test_pred, n, "test"))
        metrics.update({f"baseline/{k}": v for k, v in self.extra_metrics().items()})
        names = [str(c) for c in datamodule.class_names]
        confusion = MulticlassConfusionMatrix(n)(torch.as_tensor(test_pred),
                                                 torch.as_tensor(y_te))
        log_figure(run, confusion_matrix_figure(confusion.numpy(), names),
                   "plots/confusion_matrix_test.png")
        self._write_predictions(run, x_te, y_te, test_pred, proba, names)
        return metrics

    def _write_predictions(self, run: Any, series: Series, gold: np.ndarray,
                           preds: np.ndarray, proba: np.ndarray, names: list[str]) -> None:
        """``predictions/test.parquet`` as the networks write it for frames: the input as
        its length, gold and predicted class, correct 0/1, the log loss of the gold class."""
        if self.max_predictions <= 0:
            return
        rows = [{"example": i, "input": f"{len(s)} steps", "gold": names[int(g)],
                 "prediction": names[int(p)], "score": float(g == p),
                 "loss": -math.log(max(float(proba[i, int(g)]), 1e-12))}
                for i, (s, g, p) in enumerate(zip(series, gold, preds, strict=True))]
        # no test/loss is logged (a 1-NN has no probabilities of its own), so acc and f1
        claimed = {k: v for k, v in PREDICTION_METRICS.items() if k != "test/loss"}
        write_rows(run, rows, claimed, self.max_predictions)


def _score(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, split: str
           ) -> dict[str, float]:
    out = classification_metrics(num_classes)(torch.as_tensor(y_pred), torch.as_tensor(y_true))
    return {f"{split}/{k}": float(v) for k, v in out.items()}


def stack_padded(series: Series) -> tuple[np.ndarray, np.ndarray]:
    """``(n, channels, max_time)`` zeros-padded array and each series' length."""
    lengths = np.asarray([len(s) for s in series], dtype=np.int64)
    channels = series[0].shape[1]
    out = np.zeros((len(series), channels, int(lengths.max())), dtype=np.float64)
    for i, s in enumerate(series):
        out[i, :, :len(s)] = s.T
    return out, lengths
