"""The MLflow UI as a person opens it: make ui's links land in the Model training view.

MLflow 3.17 opens experiments in its GenAI view (traces, latency, no Model registry link)
unless the page's URL says ``workflowType=machine_learning``; rnnlab.ops.ui prints such
links, with a shared view that shows the task's metric columns. The slow test loads one
in headless Chromium (Debian's ``chromium``); it skips without Chromium unless
RNNLAB_REQUIRE_BROWSER=1 (CI installs it and sets that).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from rnnlab.ops import ui

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _run(monitor: str | None, **metrics: float) -> SimpleNamespace:
    params = {"task.monitor": monitor} if monitor else {}
    return SimpleNamespace(data=SimpleNamespace(params=params, metrics=metrics))


def test_links_ask_for_the_training_view() -> None:
    url = ui.experiment_url("http://127.0.0.1:5000/", "7", shared_view=True)
    assert url == ("http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"
                   "&viewStateShareKey=rnnlab")
    assert ui.registry_url("http://h:1").endswith("/#/models?workflowType=machine_learning")


def test_metric_columns_are_the_monitor_and_its_test_twin() -> None:
    runs = [_run("val/acc", **{"val/acc": 0.7, "test/acc": 0.6, "train/loss_step": 1.0}),
            _run("val/acc", **{"val/acc": 0.8}), _run("val/f1", **{"val/f1": 0.1}),
            _run(None, **{"val/x": 1.0})]
    assert ui.metric_columns(runs) == ["metrics.`val/acc`", "metrics.`test/acc`",
                                       "metrics.`val/f1`"]
    assert ui.metric_columns([_run(None, loss=1.0)]) == []


def _browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def sentiment_store(tmp_path: Path) -> tuple[str, str]:
    """A store with one sentiment run as rnnlab logs it (its monitor, val and test scores)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("sentiment", artifact_location=str(tmp_path / "artifacts"))
    run = client.create_run(exp, run_name="lstm-seed42", tags={"task": "sentiment"})
    client.log_param(run.info.run_id, "task.monitor", "val/acc")
    for step, acc in enumerate([0.61, 0.70, 0.74]):
        client.log_metric(run.info.run_id, "val/acc", acc, step=step)
    client.log_metric(run.info.run_id, "test/acc", 0.7312)
    client.set_terminated(run.info.run_id)
    return uri, exp


@pytest.fixture
def mlflow_ui(sentiment_store: tuple[str, str], tmp_path: Path) -> Iterator[str]:
    """``mlflow ui`` (what make ui runs) over the store on a free 127.0.0.1 port."""
    port = _free_port()
    log = (tmp_path / "ui.log").open("w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "ui", "--backend-store-uri",
         sentiment_store[0], "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=5)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow ui did not start: {(tmp_path / 'ui.log').read_text()}")
                time.sleep(1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_experiment_link_opens_the_runs_table_not_traces(
        sentiment_store: tuple[str, str], mlflow_ui: str, tmp_path: Path) -> None:
    browser = _browser()
    if browser is None:
        reason = ("no Chromium on PATH (Debian: apt-get install chromium); the browser "
                  "check of the MLflow UI did not run")
        if os.environ.get("RNNLAB_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    from mlflow import MlflowClient

    uri, exp = sentiment_store
    lines = ui.links(MlflowClient(tracking_uri=uri), mlflow_ui)
    url = next(line.split()[-1] for line in lines if line.split()[0] == "sentiment")
    assert url == ui.experiment_url(mlflow_ui, exp, shared_view=True)
    tag = MlflowClient(tracking_uri=uri).get_experiment(exp).tags[ui.VIEW_TAG_PREFIX + ui.VIEW_KEY]
    assert "metrics.`val/acc`" in json.loads(tag)["selectedColumns"]

    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--window-size=1600,1000", "--virtual-time-budget=30000"]
    shot = tmp_path / "experiment.png"
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True,
                         timeout=300).stdout
    subprocess.run([*flags, f"--screenshot={shot}", url], capture_output=True, timeout=300)
    print(f"\nscreenshot of {url}: {shot}")
    assert "lstm-seed42" in dom, "the runs table does not list the run"
    assert "col-id=\"attributes.`Run Name`\"" in dom
    assert "metrics.`val/acc`" in dom or "metrics.`test/acc`" in dom, "no metric column"
    assert "0.7312" in dom or "0.74" in dom, "no metric value in the runs table"
    assert "Model registry" in dom, "no Model registry link: not the Model training view"
    for genai in ("Detect Issues", "Token Usage", "Latency"):
        assert genai not in dom, f"the GenAI view opened ({genai!r} on the page)"
