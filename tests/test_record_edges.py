"""The record at its edges: a resume tests the run's true best epoch, one process resumes a
run at a time, a signal at any moment leaves a run that resumes to FINISHED,
``ckpt_path=auto`` never reopens a FINISHED run, and no credential reaches a checkpoint or
the console. Each test names the row of the README's table "What happens when things go
wrong" that it backs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from helpers import FAST, write_conll
from mlflow.tracking import MlflowClient

from rnnlab.core.errors import ConfigError
from rnnlab.run.train import run
from rnnlab.tasks.classification import ClassificationTask
from rnnlab.tracking.callbacks import RunMetadata, ThroughputMonitor
from rnnlab.tracking.mlflow import credentials_to_env
from rnnlab.tracking.record import RunInterrupted

REPO = Path(__file__).resolve().parents[1]
SENTIMENT = [*FAST["sentiment"], "trainer.max_epochs=2", "model=lstm"]


def _client(root: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{root}/mlflow.db")


def _runs(root: Path) -> list:
    client = _client(root)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, order_by=["attributes.start_time ASC"])


def _history(root: Path, run_id: str, key: str) -> list[float]:
    return [m.value for m in sorted(_client(root).get_metric_history(run_id, key),
                                    key=lambda m: m.step)]


def _data(lab_root: Path, sentiment_csv: Path) -> list[str]:
    return [f"task.data.train={sentiment_csv}", *SENTIMENT, f"paths.log_dir={lab_root}/outputs"]


# -- "A resumed run tests a worse epoch" -----------------------------------------------------
def test_a_resume_keeps_the_best_epoch_before_the_kill(make_config, lab_root: Path,
                                                       sentiment_csv: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    data = _data(lab_root, sentiment_csv)
    first = run(make_config(*data))
    (killed,) = _runs(lab_root)
    run_id = killed.info.run_id
    _client(lab_root).update_run(run_id, status="RUNNING")  # what a SIGKILL leaves behind
    best = Path(first["ckpt_path"])
    best_epoch = torch.load(best, weights_only=True)["epoch"]
    before = _history(lab_root, run_id, "val/acc")

    original = ClassificationTask.epoch_values

    def worse(self, split: str) -> dict:  # every epoch after the kill validates worse
        values = original(self, split)
        return {**values, "acc": torch.tensor(0.0)} if split == "val" else values

    monkeypatch.setattr(ClassificationTask, "epoch_values", worse)
    # a new process gets a new output folder, as Hydra gives it
    resumed = run(make_config(*data, "trainer.max_epochs=4", "ckpt_path=auto",
                              f"paths.output_dir={lab_root}/outputs/resumed"))
    assert _history(lab_root, run_id, "val/acc") == [*before, 0.0, 0.0]
    assert resumed["ckpt_path"] == str(best)  # the epoch before the kill is the one tested
    assert torch.load(resumed["ckpt_path"], weights_only=True)["epoch"] == best_epoch
    assert resumed["best/val/acc"] == pytest.approx(max(before))
    (again,) = _runs(lab_root)
    assert again.info.status == "FINISHED"
    assert again.data.metrics["best/val/acc"] == pytest.approx(max(before))


# -- "Two resumes of one run at once" ----------------------------------------------------------
def test_one_resumer_at_a_time_and_a_dead_ones_lock_is_taken_over(
        make_config, lab_root: Path, sentiment_csv: Path,
        capsys: pytest.CaptureFixture) -> None:
    data = _data(lab_root, sentiment_csv)
    first = run(make_config(*data))
    (only,) = _runs(lab_root)
    run_id = only.info.run_id
    _client(lab_root).set_terminated(run_id, "KILLED")
    folder = Path(first["ckpt_path"]).parent
    holder = subprocess.Popen(  # another resume of the same run, still alive
        [sys.executable, "-c", "import sys\nfrom rnnlab.run.resume import checkpoint_folder_lock"
         f"\nwith checkpoint_folder_lock({str(folder)!r}, resuming=True):\n"
         "    print('held', flush=True)\n    sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert holder.stdout.readline().strip() == "held"
        resume = [*data, "trainer.max_epochs=3", "ckpt_path=auto",
                  f"paths.output_dir={lab_root}/outputs/second"]
        with pytest.raises(ConfigError, match=rf"this run is being resumed by process "
                                              rf"{holder.pid} on .* \(lock {folder}/run.lock\); "
                                              rf"wait for that process to end"):
            run(make_config(*resume))
        untouched = _client(lab_root).get_run(run_id)
        assert untouched.info.status == "KILLED" and "rnnlab.resumed" not in untouched.data.tags
    finally:
        holder.kill()  # SIGKILL: its record stays in the file, the OS drops its lock
        holder.wait()
    capsys.readouterr()
    run(make_config(*resume))
    err = capsys.readouterr().err
    assert f"taking over {folder}/run.lock from process {holder.pid} on" in err
    assert "which is no longer running" in err
    again = _client(lab_root).get_run(run_id)
    assert again.info.status == "FINISHED" and again.data.tags["rnnlab.resumed"] == "true"
    assert (folder / "run.lock").read_text() == ""  # released


# -- "A signal during validation or test" ------------------------------------------------------
@pytest.mark.parametrize("stage", ["validation", "test"])
def test_a_signal_during_validation_or_test_leaves_a_run_that_resumes(
        stage: str, make_config, lab_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conll = write_conll(lab_root / "train.conll", n=240)
    args = [*FAST["ner"], f"task.data.train={conll}", "model.hidden_size=16",
            "task.datamodule.batch_size=8", "trainer.max_epochs=2",
            f"paths.log_dir={lab_root}/outputs"]
    sent = []

    def signal_once(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if not sent and not trainer.sanity_checking:
            sent.append(trainer.current_epoch)
            os.kill(os.getpid(), signal.SIGTERM)

    hook = "on_validation_batch_end" if stage == "validation" else "on_test_batch_end"
    monkeypatch.setattr(ThroughputMonitor, hook, signal_once, raising=False)
    with pytest.raises(RunInterrupted) as stopped:
        run(make_config(*args))
    assert sent == [0 if stage == "validation" else 2]
    last = lab_root / "outputs" / "run" / "checkpoints" / "last.ckpt"
    message = str(stopped.value)
    if stage == "validation":  # that validation finished: epoch 0 is whole, with its val/f1
        assert message.startswith("interrupted by SIGTERM at step ") and "(epoch 1)" in message
        assert f"; checkpoint {last}; continue with the same command plus ckpt_path={last}" \
            in message
    else:
        assert f"; its last checkpoint {last} stands; continue with the same command plus " \
               f"ckpt_path={last} (or ckpt_path=auto)." in message
    assert "no checkpoint was written" not in message
    (killed,) = _runs(lab_root)
    assert killed.info.status == "KILLED"
    run_id = killed.info.run_id
    assert len(_history(lab_root, run_id, "val/f1")) == (1 if stage == "validation" else 2)

    monkeypatch.delattr(ThroughputMonitor, hook)
    resumed = run(make_config(*args, "ckpt_path=auto",
                              f"paths.output_dir={lab_root}/outputs/resumed"))
    (again,) = _runs(lab_root)
    assert again.info.run_id == run_id and again.info.status == "FINISHED"
    assert "rnnlab.failure" not in again.data.tags
    assert len(_history(lab_root, run_id, "val/f1")) == 2
    assert len(_history(lab_root, run_id, "test/f1")) == 1
    assert resumed["ckpt_path"].startswith(str(last.parent))


# -- "ckpt_path=auto after a finished run" -----------------------------------------------------
def test_a_fresh_run_does_not_warn_about_its_own_lock(make_config, lab_root: Path,
                                                      sentiment_csv: Path) -> None:
    """The lock file is the new checkpoint folder's only file: Lightning's "exists and is
    not empty" warning, meant for a folder of older checkpoints, would be noise."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(make_config(*_data(lab_root, sentiment_csv), "trainer.max_epochs=1"))
    assert not [w for w in caught if "exists and is not empty" in str(w.message)]


def test_ckpt_path_auto_starts_a_new_run_after_a_finished_one(
        make_config, lab_root: Path, sentiment_csv: Path,
        capsys: pytest.CaptureFixture) -> None:
    data = _data(lab_root, sentiment_csv)
    first = run(make_config(*data, "trainer.limit_train_batches=1"))
    (finished,) = _runs(lab_root)
    before = finished.data
    capsys.readouterr()
    run(make_config(*data, "ckpt_path=auto", f"paths.output_dir={lab_root}/outputs/again"))
    out = capsys.readouterr().out
    last = Path(first["ckpt_path"]).with_name("last.ckpt")
    assert (f"ckpt_path=auto: the newest checkpoint of this task, model and seed ({last}) "
            f"belongs to MLflow run {finished.info.run_id}, which FINISHED; starting a new "
            f"run.") in out
    old, new = _runs(lab_root)
    assert old.info.run_id == finished.info.run_id and new.info.status == "FINISHED"
    assert old.info.status == "FINISHED" and old.data.tags == before.tags
    assert old.data.metrics == before.metrics
    assert "rnnlab.resumed" not in new.data.tags


# -- "A password in logger.mlflow.tracking_uri" ------------------------------------------------
def test_credentials_leave_the_uri_and_the_checkpoint_config(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    assert credentials_to_env("http://al%40ce:s3cr%3At@127.0.0.1:5000/x") == \
        "http://127.0.0.1:5000/x"
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "al@ce"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "s3cr:t"
    # a database URI needs its credentials where they are
    assert credentials_to_env("postgresql://u:p@db/x") == "postgresql://u:p@db/x"

    class Spec:
        def to_dict(self) -> dict:
            return {}

    meta = RunMetadata({"logger": {"mlflow": {"tracking_uri": "http://u:s3cret@h:1"}},
                        "task": {"files": ["https://u:s3cret@h/a.csv"]}}, Spec(), {})
    assert "s3cret" not in repr(meta.config)
    assert meta.config["logger"]["mlflow"]["tracking_uri"] == "http://***@h:1"


def test_a_sweep_parent_opens_its_store_without_the_password(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep's own client (its parent run's "View run ... at:" line) gets the bare URI."""
    from rnnlab.tracking.sweep import open_store

    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    client = open_store("http://alice:s3cretpw@127.0.0.1:9")
    assert client.tracking_uri == "http://127.0.0.1:9"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "s3cretpw"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain ``mlflow server`` on 127.0.0.1 (it accepts any basic-auth header, so a URI
    with a user and password goes the whole way a real login would)."""
    folder = tmp_path / "server"
    folder.mkdir()
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
         "--artifacts-destination", str(folder / "artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder)
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    pytest.fail("the mlflow server did not start")
                time.sleep(1)
        yield f"127.0.0.1:{port}", folder
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_no_password_in_any_file_or_console_line(tmp_path: Path, sentiment_csv: Path,
                                                 mlflow_server: tuple[str, Path]) -> None:
    host, server_folder = mlflow_server
    root = tmp_path / "lab"
    root.mkdir()
    (root / "conf").symlink_to(REPO / "conf")
    env = {**os.environ, "CI": "1", "RNNLAB_ROOT": str(root), "OMP_NUM_THREADS": "1"}
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), f"task.data.train={sentiment_csv}",
         *FAST["sentiment"], "logger.mlflow.log_model=true",
         f"logger.mlflow.tracking_uri=http://alice:s3cretpw@{host}"],
        capture_output=True, text=True, env=env, timeout=600)
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console[-3000:]
    assert "View run " in console and f"at: http://{host}/#/experiments/" in console
    assert "s3cretpw" not in console
    files = [p for folder in (root, server_folder) for p in folder.rglob("*")
             if p.is_file() and not p.is_symlink() and "conf" not in p.relative_to(folder).parts[:1]]
    checkpoints = [p for p in files if p.suffix == ".ckpt"]
    # local best/last and the logged model's model.ckpt (the run's one stored copy)
    assert len(checkpoints) >= 3, checkpoints
    leaked = [p for p in files if b"s3cretpw" in p.read_bytes()]
    assert not leaked
    stored = torch.load(next(p for p in checkpoints if p.name == "best.ckpt"),
                        weights_only=True)["rnnlab"]["config"]
    assert stored["logger"]["mlflow"]["tracking_uri"] == f"http://***@{host}"
