"""Logging a run's servable model at the end of the run.

:func:`log_servable_model` turns the best checkpoint into an MLflow pyfunc model of the
run (``models:/m-<id>``, listed in the run's and the experiment's Models tab under the
name ``<task>-<model>``, e.g. ``sentiment-gru``), with a signature, an input example and ``rnnlab==<version>`` as its requirement; the URI is
printed and stored in the run tag ``rnnlab.model_uri``. The model carries the checkpoint
without its optimizer state (a third of the size), so it holds exactly the weights and
metadata ``load_checkpoint`` needs; it is the run's one stored copy of its best weights
(the full checkpoint stays in the run's folder, its path in the model's tag
``rnnlab.checkpoint``). Before anything is uploaded the model answers its own
input example in-process: a model that cannot predict raises, and the run ends FAILED
with the reason, rather than logging something that only fails when served.

:func:`log_baseline_model` does the same for baselines: ``tfidf_logreg`` in MLflow's
scikit-learn flavour (a pipeline from raw text to the class name; BM25 weighting too),
``majority_tag``, the statistical forecasters and the sequence classifiers (``dtw_1nn``,
``rocket``) as small pyfunc models.
"""

from __future__ import annotations

import json
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import sklearn
import torch
from mlflow.models import Model
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema
from omegaconf import DictConfig
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

import rnnlab
from rnnlab.baselines.majority_tag import MajorityTag
from rnnlab.baselines.sequence import SequenceBaseline
from rnnlab.baselines.statistical import ForecastBaseline
from rnnlab.baselines.tfidf import TfidfLogReg
from rnnlab.build import model_config
from rnnlab.build.checkpoint import read_checkpoint
from rnnlab.core.errors import UserError
from rnnlab.inference import CHECKPOINT_FILE, load_checkpoint
from rnnlab.serving.predictors import FrameClassifier, Tagger, predictor_for
from rnnlab.serving.pyfunc import (
    BASELINE_ARTIFACT,
    CHECKPOINT_ARTIFACT,
    CHECKSUM_ARTIFACT,
    baseline_predictor,
    select_text,
)
from rnnlab.tracking.checksums import checksum_path, write_checksum
from rnnlab.tracking.mlflow import quiet_mlflow, redact, using_tracking_uri

MODEL_URI_TAG = "rnnlab.model_uri"
CHECKPOINT_TAG = "rnnlab.checkpoint"  # on the logged model: the full checkpoint it came from
MODEL_CODE = Path(__file__).with_name("model_code.py")  # "models from code": no pickle


def package_requirement() -> str:
    """``rnnlab==<installed version>``: what a served model needs (it brings torch,
    Lightning, scikit-learn... as its own dependencies)."""
    try:
        version = metadata.version("rnnlab")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        version = rnnlab.__version__
    return f"rnnlab=={version}"


def model_name(cfg: DictConfig) -> str:
    """The logged model's name, ``<task>-<model>`` (``sentiment-gru``): the run's Models tab
    and the experiment's list of models tell one from another without opening them."""
    return f"{cfg.task.name}-{cfg.model.name}"


def _log(logger: Any, cfg: DictConfig, flavor: Any, example: Any, what: str, start: float,
         tags: dict[str, str] | None = None, **kwargs: Any) -> str:
    """Log one model (named by :func:`model_name`) to the logger's run, tag and print its
    URI (with the seconds since ``start``, when the caller began preparing it); returns
    the URI."""
    client, run_id = logger.experiment, logger.run_id
    name = model_name(cfg)
    with quiet_mlflow():
        # the run's own experiment (MLflow would otherwise file it under the active one)
        created = client.create_logged_model(
            client.get_run(run_id).info.experiment_id, name=name, source_run_id=run_id,
            tags={**{k: str(v) for k, v in kwargs.get("metadata", {}).items()},
                  **(tags or {})})
        try:
            with using_tracking_uri(logger._tracking_uri):
                info = Model.log(artifact_path=None, name=name, flavor=flavor,
                                 run_id=run_id, model_id=created.model_id,
                                 input_example=example, **kwargs)
        except BaseException:  # no half-logged model left PENDING in the Models tab
            client.finalize_logged_model(created.model_id, "FAILED")
            raise
    logger.experiment.set_tag(logger.run_id, MODEL_URI_TAG, info.model_uri)
    seconds = time.perf_counter() - start
    # the store named in the line, so it runs from any folder (a models:/ URI means
    # nothing without it); credentials never printed: MLflow reads them from env vars
    print(f"model: {info.model_uri} ({what}; logged in {seconds:.1f} s); serve it with "
          f"MLFLOW_TRACKING_URI={redact(str(logger._tracking_uri))} mlflow models serve -m "
          f"{info.model_uri} --env-manager local", flush=True)
    return info.model_uri


def slim_checkpoint(path: str | Path, out: Path) -> Path:
    """The checkpoint's weights and ``rnnlab`` metadata only (no optimizer state, loops,
    callbacks), read and written as plain data."""
    ckpt = read_checkpoint(path, "best checkpoint")
    torch.save({"state_dict": ckpt["state_dict"], "rnnlab": ckpt["rnnlab"]}, out)
    return out


def log_servable_model(logger: Any, cfg: DictConfig, checkpoint: str | Path) -> str:
    """Log the pyfunc model of ``checkpoint`` to the logger's MLflow run; returns its URI."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rnnlab-model-") as tmp:
        path = slim_checkpoint(checkpoint, Path(tmp) / CHECKPOINT_FILE)
        # logged beside it (artifacts/model.ckpt.sha256): loading the model checks the file
        write_checksum(path)
        predictor = predictor_for(load_checkpoint(path, key="best checkpoint"))
        example, params = predictor.example(), predictor.example_params()
        predictor(example, params)  # raises here, with the reason, if it cannot predict
        size = path.stat().st_size / 1e6
        return _log(logger, cfg, mlflow.pyfunc, (example, params) if params else example,
                    f"{predictor.kind}, {size:.1f} MB", start,
                    tags={CHECKPOINT_TAG: str(Path(checkpoint).resolve())},
                    python_model=str(MODEL_CODE),
                    artifacts={CHECKPOINT_ARTIFACT: str(path),
                               CHECKSUM_ARTIFACT: str(checksum_path(path))},
                    signature=predictor.signature(), pip_requirements=[package_requirement()],
                    metadata={"rnnlab_kind": predictor.kind, "task": str(cfg.task.name),
                              "model": str(cfg.model.name)})


# ---- baselines ----------------------------------------------------------------------------
def log_baseline_model(logger: Any, cfg: DictConfig, baseline: Any, dm: Any,
                       metrics: dict[str, float]) -> str:
    """Log a fitted baseline's model to the logger's MLflow run; returns its URI."""
    if isinstance(baseline, TfidfLogReg):
        return _log_tfidf(logger, cfg, baseline, dm, metrics)
    if isinstance(baseline, MajorityTag):
        return _log_table(logger, cfg, "majority_tag", {
            "table": baseline.table, "lowercase": bool(getattr(baseline, "lowercase", False)),
            "char_level": dm.spec.char_level},
            pd.DataFrame({"text": [" ".join(t) if not dm.spec.char_level else "".join(t)
                                   for t in dm.tagged("test")[0][:2]]}))
    if isinstance(baseline, ForecastBaseline):
        targets = [dm.series.columns[i] for i in dm.series.targets]
        history = pd.DataFrame(dm.history("test")[:, dm.series.targets], columns=targets)
        horizon = int(cfg.task.get("horizon") or dm.periods["test"].steps)
        return _log_table(logger, cfg, "forecast", {
            "model": model_config(cfg), "targets": targets, "season": int(dm.spec.season),
            "horizon": horizon}, history, {"horizon": horizon})
    if isinstance(baseline, SequenceBaseline):
        mean, std = np.asarray(dm.mean, dtype=np.float64), np.asarray(dm.std, dtype=np.float64)
        first = dm.datasets["test"].items[0][0].numpy()
        return _log_table(logger, cfg, "sequence", {
            "model": model_config(cfg), "state": baseline.state(),
            "class_names": [str(c) for c in dm.class_names],
            "mean": mean.tolist(), "std": std.tolist()},
            pd.DataFrame({"frames": [(first * std + mean).round(4).tolist()]}))
    raise UserError(f"model={cfg.model.name} has no servable form; add one to "
                    f"rnnlab.serving.publish.")


def _log_tfidf(logger: Any, cfg: DictConfig, baseline: Any, dm: Any,
               metrics: dict[str, float]) -> str:
    """A scikit-learn pipeline: the ``text`` column -> TF-IDF -> logistic regression (at the
    C chosen on validation) -> the class name; refitted on the training split exactly as
    the baseline was, with the class names as labels."""
    start = time.perf_counter()
    texts, labels = dm.texts("train")
    names = list(dm.class_names)
    pipeline = make_pipeline(
        FunctionTransformer(select_text),
        baseline.vectorizer(),  # TF-IDF or BM25, as the baseline was fitted
        LogisticRegression(C=float(metrics["baseline/C"]), max_iter=baseline.max_iter))
    pipeline.fit(pd.DataFrame({"text": texts}), [names[y] for y in labels])
    example = pd.DataFrame({"text": dm.texts("test")[0][:2]})
    pipeline.predict(example)
    signature = ModelSignature(Schema([ColSpec("string", "text")]),
                               Schema([ColSpec("string")]))
    return _log(logger, cfg, mlflow.sklearn, example, "scikit-learn pipeline", start,
                sk_model=pipeline, signature=signature, serialization_format="cloudpickle",
                pip_requirements=[package_requirement(), f"scikit-learn=={sklearn.__version__}"])


def _log_table(logger: Any, cfg: DictConfig, kind: str, spec: dict[str, Any],
               example: pd.DataFrame, params: dict[str, Any] | None = None) -> str:
    """A baseline served from a JSON description (see :mod:`rnnlab.serving.pyfunc`)."""
    start = time.perf_counter()
    spec = {"kind": kind, **spec}
    baseline_predictor(spec)(example, params)  # raises here if it cannot predict
    if kind == "majority_tag":  # the networks' tagging schema
        signature = ModelSignature(Schema(Tagger.inputs), Schema(Tagger.outputs))
    elif kind == "sequence":  # the networks' frame-classification schema
        signature = ModelSignature(Schema(FrameClassifier.inputs),
                                   Schema(FrameClassifier.outputs))
    else:
        signature = ModelSignature(
            Schema([ColSpec("double", t) for t in spec["targets"]]),
            Schema([ColSpec("long", "step"), *(ColSpec("double", t) for t in spec["targets"])]),
            ParamSchema([ParamSpec("horizon", "long", int(spec["horizon"]))]))
    with tempfile.TemporaryDirectory(prefix="rnnlab-model-") as tmp:
        path = Path(tmp) / "baseline.json"
        path.write_text(json.dumps(spec), encoding="utf-8")
        return _log(logger, cfg, mlflow.pyfunc, (example, params) if params else example,
                    f"{cfg.model.name} baseline", start, python_model=str(MODEL_CODE),
                    artifacts={BASELINE_ARTIFACT: str(path)},
                    signature=signature,
                    pip_requirements=[package_requirement()],
                    metadata={"rnnlab_kind": kind, "task": str(cfg.task.name),
                              "model": str(cfg.model.name)})
