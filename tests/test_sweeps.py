"""Multiruns: parent/child grouping in MLflow, and parallel jobs losing nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
MODELS = ["rnn", "lstm", "gru", "bigru"]
pytestmark = pytest.mark.slow  # four parallel jobs: about a minute on an idle 2-core machine


def _multirun(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CI": "1", "RNNLAB_ROOT": str(root), "OMP_NUM_THREADS": "1"}
    (root / "conf").exists() or (root / "conf").symlink_to(REPO / "conf")
    return subprocess.run([sys.executable, str(REPO / "train.py"), "-m", *args],
                          capture_output=True, text=True, env=env, timeout=900)


def test_parallel_joblib_sweep_groups_runs_and_loses_nothing(tmp_path: Path,
                                                             sentiment_csv: Path) -> None:
    proc = _multirun(tmp_path, f"model={','.join(MODELS)}", "trainer=debug",
                     "trainer.max_epochs=2", "trainer.limit_val_batches=1",
                     f"task.data.train={sentiment_csv}", "task.datamodule.min_freq=1",
                     "hydra/launcher=joblib", "hydra.launcher.n_jobs=4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("sentiment")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("rnnlab_role") == "sweep_parent"]
    children = [r for r in runs if r not in parents]
    assert len(parents) == 1 and len(children) == len(MODELS)
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["sweep/n_finished"] == len(MODELS)
    assert parent.data.tags["best_model"] in MODELS
    assert sorted(c.data.tags["model"] for c in children) == sorted(MODELS)
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["sweep_id"] == parent.data.tags["sweep_id"]
        assert child.info.status == "FINISHED"
        # every epoch's metrics arrived exactly once (no lost or duplicated writes)
        history = client.get_metric_history(child.info.run_id, "val/acc")
        assert sorted(m.step for m in history) == sorted({m.step for m in history})
        assert len(history) == 2
        assert {"test/acc", "test/f1", "train/loss_epoch"} <= set(child.data.metrics)
        assert child.data.params["model.name"] == child.data.tags["model"]


def test_optuna_search_of_three_trials(tmp_path: Path, sentiment_csv: Path) -> None:
    proc = _multirun(tmp_path, "hparams_search=sentiment_optuna", "hydra.sweeper.n_trials=3",
                     "model=gru", "trainer=debug", f"task.data.train={sentiment_csv}",
                     "task.datamodule.min_freq=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = list((tmp_path / "outputs" / "multiruns").glob("*/optimization_results.yaml"))
    assert len(results) == 1 and "best_params" in results[0].read_text()
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("sentiment").experiment_id])
    parent = next(r for r in runs if r.data.tags.get("rnnlab_role") == "sweep_parent")
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(trials) == 3
    assert {"best.model.hidden_size", "best.task.optimizer.lr"} <= set(parent.data.params)
    best = max(t.data.metrics["best/val/acc"] for t in trials)
    assert parent.data.metrics["sweep/best_val_acc"] == best

