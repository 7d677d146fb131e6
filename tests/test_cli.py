"""The command line as a user meets it: one readable error line and a non-zero exit."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import NO_SERVABLE_MODEL, REPO
from mlflow.tracking import MlflowClient


def _train(*args: str, root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CI": "1", "RNNLAB_ROOT": str(root), "OMP_NUM_THREADS": "1"}
    (root / "conf").exists() or (root / "conf").symlink_to(REPO / "conf")
    return subprocess.run([sys.executable, str(REPO / "train.py"), *args],
                          capture_output=True, text=True, env=env, timeout=300)


# each case starts Python anew; the default suite has Hydra's refusal and one of ours, the
# rest (the same one-line path with other messages) run in the slow suite
@pytest.mark.parametrize(("args", "message"), [
    (["model=hidden_size_zero", "model.hidden_size=0"], None),
    (["model.hidden_size=0"], "error: model.hidden_size must be a positive integer, got 0."),
    pytest.param(["model=lstm", "task.data.train=/nonexistent/reviews.csv"],
                 "error: /nonexistent/reviews.csv does not exist", marks=pytest.mark.slow),
    pytest.param(["ckpt_path=/nonexistent/best.ckpt"],
                 "error: ckpt_path=/nonexistent/best.ckpt does not exist", marks=pytest.mark.slow),
    pytest.param(["model=bilstm", "task.causal=true"], "error: task=sentiment is causal",
                 marks=pytest.mark.slow),
])
def test_user_errors_exit_nonzero_with_one_line(args: list[str], message: str | None,
                                                tmp_path: Path) -> None:
    proc = _train(*args, root=tmp_path)
    assert proc.returncode != 0
    if message is None:  # an unknown config group option: Hydra names it and the choices
        assert "Could not find 'model/hidden_size_zero'" in proc.stderr
        return
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert lines == [next(ln for ln in lines)] and lines[0].startswith(message)
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()  # refused before any run was recorded


def test_debug_run_end_to_end(tmp_path: Path, sentiment_csv: Path) -> None:
    proc = _train("model=gru", "trainer=debug", f"task.data.train={sentiment_csv}",
                  "task.datamodule.min_freq=1", NO_SERVABLE_MODEL, root=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # the summary's test accuracy is the recorded one, and the toy corpus was learned
    # (measured 1.0; a model that learned nothing (lr 0) scores 0.5 on the balanced test)
    printed = re.search(r"^\s*test/acc\s+([0-9.]+)$", proc.stdout, re.M)
    assert printed, proc.stdout[-2000:]
    assert (tmp_path / "mlflow.db").exists() and (tmp_path / "mlartifacts").is_dir()
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (recorded,) = client.search_runs([client.get_experiment_by_name("sentiment").experiment_id])
    assert recorded.info.status == "FINISHED"
    assert recorded.data.metrics["test/acc"] == pytest.approx(float(printed[1]), abs=1e-4)
    assert float(printed[1]) > 0.75


def test_unreachable_tracking_server_is_one_line(tmp_path: Path, sentiment_csv: Path) -> None:
    proc = _train("model=gru", "trainer=debug", f"task.data.train={sentiment_csv}",
                  "logger.mlflow.tracking_uri=http://127.0.0.1:9", root=tmp_path)
    assert proc.returncode == 2
    assert "error: cannot reach the MLflow tracking server http://127.0.0.1:9" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_constructor_errors_stay_one_sentence(tmp_path: Path) -> None:
    proc = _train("task.datamodule.dataset=imdb", root=tmp_path)
    assert proc.returncode == 2
    assert "error: task.datamodule.dataset='imdb' is unknown" in proc.stderr
    assert "Traceback" not in proc.stderr and "InstantiationException" not in proc.stderr
