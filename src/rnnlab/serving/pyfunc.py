"""The MLflow ``PythonModel`` that serves every model the lab logs.

The model is logged "from code" (:mod:`rnnlab.serving.model_code`, three lines that
import this class), so no pickled object travels with it: a served network is rebuilt
from its checkpoint artifact by :func:`rnnlab.inference.load_checkpoint`
(``weights_only=True``), and a baseline from a JSON file. Loading a model is therefore as
safe as loading a checkpoint.

Artifacts decide what is served:

* ``checkpoint``: a trained network of any task; the task's predictor from
  :mod:`rnnlab.serving.predictors` answers;
* ``baseline``: JSON of a baseline without a scikit-learn form: ``majority_tag`` (its
  token -> tag table), a statistical forecaster (its settings; it is fitted on the
  history each request gives, which is what these baselines do for every forecast), or
  a sequence classifier (``dtw_1nn``: its reference series; ``rocket``: its seed, from
  which the kernels are drawn again, and the ridge classifier's arrays).
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from hydra.utils import instantiate

from rnnlab.core.errors import DataError
from rnnlab.inference import load_checkpoint
from rnnlab.inference.tagging import split_text
from rnnlab.metrics.spans import bio_spans
from rnnlab.serving.predictors import (
    Tagger,
    column_values,
    predictor_for,
    read_history,
    warn_unknown,
)

CHECKPOINT_ARTIFACT = "checkpoint"
#: the checkpoint's sha256 file, logged beside it (models logged before it have none)
CHECKSUM_ARTIFACT = "checkpoint_sha256"
BASELINE_ARTIFACT = "baseline"


class LabModel(mlflow.pyfunc.PythonModel):
    """Raw inputs -> predictions for a checkpoint or a baseline (see the module doc)."""

    # MLflow would wrap predict() for type-hint validation and warn that it has none; the
    # signature logged with every model validates the input instead
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        artifacts = context.artifacts
        if CHECKPOINT_ARTIFACT in artifacts:
            loaded = load_checkpoint(artifacts[CHECKPOINT_ARTIFACT], key="model artifact")
            self.predictor = predictor_for(loaded)
        else:
            with open(artifacts[BASELINE_ARTIFACT], encoding="utf-8") as f:
                self.predictor = baseline_predictor(json.load(f))

    def predict(self, context, model_input, params=None):  # no hints: MLflow would read them
        return self.predictor(model_input, params)


def select_text(frame: Any) -> list[str]:
    """The ``text`` column of a request (a DataFrame, a Series or a list of strings): the
    first step of the scikit-learn pipelines, so they take the same input as the networks."""
    if isinstance(frame, pd.DataFrame):
        if "text" not in frame.columns:
            raise DataError(f"the model reads a column named 'text', and the input has "
                            f"{', '.join(map(str, frame.columns))}; rename the column.")
        frame = frame["text"]
    return [str(t) for t in frame]


class MajorityTagPredictor:
    """``model=majority_tag``: each known token's most frequent training tag, else ``O``;
    the same output as the networks' tagger (a token missing from the table is unknown)."""

    kind = "majority_tag"

    def __init__(self, spec: dict[str, Any]) -> None:
        self.table, self.lowercase = dict(spec["table"]), bool(spec["lowercase"])
        self.char_level = bool(spec["char_level"])

    def __call__(self, frame: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
        joiner = "" if self.char_level else " "
        rows = []
        for text in column_values(frame, "text", self.kind):
            tokens = split_text(str(text), self.char_level)
            keys = [t.lower() if self.lowercase else t for t in tokens]
            tags = [self.table.get(k, "O") for k in keys]
            rows.append({"tokens": tokens, "tags": tags,
                         "entities": [{"type": typ, "start": s, "end": e,
                                       "text": joiner.join(tokens[s:e])}
                                      for typ, s, e in bio_spans(tags)],
                         "unknown_share": (sum(k not in self.table for k in keys) / len(keys)
                                           if keys else 0.0)})
        warn_unknown(self.kind, [r["unknown_share"] for r in rows])
        return pd.DataFrame(rows, columns=Tagger.columns)


class ForecastBaselinePredictor:
    """``model=naive|seasonal_naive|ets|arima``: fitted on the given history of the
    targets, then ``horizon`` steps forecast, as the baseline forecasts a test period."""

    kind = "forecast_baseline"

    def __init__(self, spec: dict[str, Any]) -> None:
        self.model, self.targets = dict(spec["model"]), [str(t) for t in spec["targets"]]
        self.season, self.horizon = int(spec["season"]), int(spec["horizon"])

    def __call__(self, frame: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
        horizon = int((params or {}).get("horizon") or self.horizon)
        history = read_history(frame, self.targets, 2, "a model is fitted on them")
        baseline = instantiate(self.model)  # its settings passed the schema when it trained
        with warnings.catch_warnings():  # statsmodels' convergence chatter
            warnings.simplefilter("ignore")
            values = np.stack([baseline.predict(history[:, j], horizon, self.season)
                               for j in range(len(self.targets))], axis=1)
        out = pd.DataFrame(values, columns=self.targets)
        out.insert(0, "step", np.arange(1, horizon + 1))
        return out


class SequenceBaselinePredictor:
    """``model=dtw_1nn|rocket``: frames (one row of channel values per frame) -> label and
    the baseline's probability of it, normalised with the training mean and deviation as
    the series it was fitted on were (the same input and output as the networks)."""

    kind = "sequence_baseline"

    def __init__(self, spec: dict[str, Any]) -> None:
        self.names = [str(c) for c in spec["class_names"]]
        self.mean, self.std = np.asarray(spec["mean"]), np.asarray(spec["std"])
        self.baseline = instantiate(spec["model"]).load_state(spec["state"])

    def __call__(self, frame: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
        series = []
        for i, cell in enumerate(column_values(frame, "frames", self.kind)):
            arr = np.asarray([np.asarray(r, dtype=np.float64) for r in cell]) if len(cell) \
                else np.zeros((0, len(self.mean)))
            if arr.ndim != 2 or arr.shape[1] != len(self.mean) or len(arr) == 0:
                raise DataError(f"row {i}: frames must be a non-empty list of frames of "
                                f"{len(self.mean)} values each (the channels the model was "
                                f"fitted on), got shape {arr.shape}.")
            series.append((arr - self.mean) / self.std)
        pred, proba = self.baseline.predict_scores(series)
        return pd.DataFrame({"label": [self.names[int(p)] for p in pred],
                             "probability": proba[np.arange(len(pred)), pred].tolist()})


def baseline_predictor(spec: dict[str, Any]
                       ) -> MajorityTagPredictor | ForecastBaselinePredictor | SequenceBaselinePredictor:
    """The predictor a baseline's JSON describes."""
    kinds = {"majority_tag": MajorityTagPredictor, "forecast": ForecastBaselinePredictor,
             "sequence": SequenceBaselinePredictor}
    if spec.get("kind") not in kinds:
        raise DataError(f"the baseline artifact describes kind {spec.get('kind')!r}, which "
                        f"this rnnlab does not serve; log the model again with this version.")
    return kinds[spec["kind"]](spec)
