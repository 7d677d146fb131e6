"""TF-IDF word + bigram features with logistic regression: the text-classification yardstick.

On sentence-level sentiment, n-gram linear models are strong (NBSVM-bi 79.4% on Pang &
Lee MR); a recurrent model is worth its cost only if it beats this on the same split.
The regularisation strength is chosen on the validation split, never on test.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from torchmetrics.classification import MulticlassConfusionMatrix

from rnnlab.baselines.base import Baseline
from rnnlab.data.text import tokenize
from rnnlab.metrics.classification import PREDICTION_METRICS, classification_metrics
from rnnlab.tracking.artifacts import confusion_matrix_figure, log_figure
from rnnlab.tracking.predictions import DEFAULT_MAX_ROWS, PredictionRows, write_rows


class TfidfLogReg(Baseline):
    families = ("text_classification",)

    def __init__(self, ngram_max: int = 2, min_df: int = 1, c_grid: tuple = (0.5, 1.0, 2.0, 4.0, 8.0),
                 max_iter: int = 2000, max_predictions: int = DEFAULT_MAX_ROWS) -> None:
        self.ngram_max, self.min_df = ngram_max, min_df
        self.c_grid = list(c_grid)
        self.max_iter = max_iter
        self.n_features = 0
        PredictionRows(max_predictions)  # refuses a bad value before any fitting
        self.max_predictions = max_predictions

    def _score(self, y_true: list[int], y_pred, num_classes: int, split: str) -> dict[str, float]:
        metrics = classification_metrics(num_classes)
        preds = torch.as_tensor(y_pred)
        out = metrics(preds, torch.as_tensor(y_true))
        return {f"{split}/{k}": float(v) for k, v in out.items()}

    def fit_evaluate(self, datamodule: Any, run: Any) -> dict[str, float]:
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (datamodule.texts(s) for s in ("train", "val", "test"))
        n = datamodule.spec.num_classes
        vec = TfidfVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None,
                              ngram_range=(1, self.ngram_max), min_df=self.min_df,
                              sublinear_tf=True)
        f_tr, f_va, f_te = vec.fit_transform(x_tr), vec.transform(x_va), vec.transform(x_te)
        self.n_features = f_tr.shape[1]
        best = None
        for c in self.c_grid:
            clf = LogisticRegression(C=c, max_iter=self.max_iter).fit(f_tr, y_tr)
            val = self._score(y_va, clf.predict(f_va), n, "val")
            if best is None or val["val/acc"] > best[1]["val/acc"]:
                best = (clf, val, c)
        clf, val, c = best
        preds = clf.predict(f_te)
        metrics = {**val, **self._score(y_te, preds, n, "test"), "baseline/C": c}
        confusion = MulticlassConfusionMatrix(n)(torch.as_tensor(preds), torch.as_tensor(y_te))
        log_figure(run, confusion_matrix_figure(confusion.numpy(), datamodule.class_names),
                   "plots/confusion_matrix_test.png")
        self._write_predictions(run, clf, f_te, x_te, y_te, preds, datamodule.class_names)
        return metrics

    def _write_predictions(self, run: Any, clf: Any, features: Any, texts: list[str],
                           gold: list[int], preds: Any, class_names: list[str]) -> None:
        """``predictions/test.parquet`` as the networks write it: one row per test
        snippet (its index in the split), correct 0/1 and the log loss of its label."""
        if self.max_predictions <= 0:
            return
        proba = clf.predict_proba(features)
        column = {c: j for j, c in enumerate(clf.classes_)}
        rows = []
        for i, (text, g, p) in enumerate(zip(texts, gold, preds, strict=True)):
            prob = float(proba[i, column[g]]) if g in column else 0.0
            rows.append({"example": i, "input": text, "gold": str(class_names[g]),
                         "prediction": str(class_names[int(p)]), "score": float(g == int(p)),
                         "loss": -math.log(max(prob, 1e-12))})
        # the baseline logs no test/loss, so only acc and f1 are claimed
        claimed = {k: v for k, v in PREDICTION_METRICS.items() if k != "test/loss"}
        write_rows(run, rows, claimed, self.max_predictions)

    def num_parameters(self) -> int:
        return self.n_features
