"""The record cannot lie or be hijacked: every failure path ends the run FAILED or KILLED
with its reason, bad input creates no run at all, and no checkpoint runs code or writes
into a run that is not its own. Each test names the row of the README's table
"What happens when things go wrong" that it backs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import FAST, NO_SERVABLE_MODEL, write_sentiment_csv
from mlflow.tracking import MlflowClient

from rnnlab.core.errors import ConfigError, DataError, UserError
from rnnlab.run.train import run
from rnnlab.tracking.record import Diverged

REPO = Path(__file__).resolve().parents[1]
SENTIMENT = [*FAST["sentiment"], "trainer.max_epochs=2"]


def _client(root: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{root}/mlflow.db")


def _runs(root: Path) -> list:
    if not (root / "mlflow.db").exists():
        return []
    client = _client(root)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, order_by=["attributes.start_time ASC"]) \
        if experiments else []


def _snapshot(root: Path, run_id: str) -> dict:
    """Everything another command could damage in a finished run."""
    client = _client(root)
    found = client.get_run(run_id)
    config = Path(client.download_artifacts(run_id, "config/config.yaml", str(root / "dl"))
                  ).read_text()
    histories = {k: [(m.step, m.value) for m in client.get_metric_history(run_id, k)]
                 for k in found.data.metrics}
    return {"status": found.info.status, "params": dict(found.data.params), "config": config,
            "metrics": histories, "tags": {k: v for k, v in found.data.tags.items()
                                           if not k.startswith("mlflow.")}}


def _train(*args: str, root: Path, timeout: int = 300, wait: bool = True,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess | subprocess.Popen:
    env = {**os.environ, "CI": "1", "RNNLAB_ROOT": str(root), "OMP_NUM_THREADS": "1",
           **(env or {})}
    (root / "conf").exists() or (root / "conf").symlink_to(REPO / "conf")
    cmd = [sys.executable, str(REPO / "train.py"), *args]
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture
def trained(make_config, lab_root: Path, sentiment_csv: Path) -> dict:
    """One finished sentiment run: its id, checkpoints and config overrides."""
    data = [f"task.data.train={sentiment_csv}", *SENTIMENT]
    metrics = run(make_config("model=lstm", *data))
    (only,) = _runs(lab_root)
    best = Path(metrics["ckpt_path"])
    return {"run_id": only.info.run_id, "best": best, "last": best.with_name("last.ckpt"),
            "data": data}


def _evil_checkpoint(path: Path, marker: Path) -> Path:
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"rnnlab": {"config": Payload()}, "state_dict": {}}, path)
    return path


# -- checkpoints never execute code ---------------------------------------------------------
def test_crafted_checkpoint_runs_nothing_at_any_entry_point(make_config, lab_root: Path,
                                                            sentiment_csv: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    from rnnlab.cli import convert, generate, tag

    marker = lab_root / "payload-ran"
    evil = _evil_checkpoint(lab_root / "evil.ckpt", marker)
    refused = r"evil\.ckpt holds Python objects that would run code when loaded \(posix\.system\)"
    for cli in (generate.main, tag.main, convert.main):
        args = [str(evil), "--text", "hi"] if cli is tag.main else [str(evil), "hi"]
        if cli is generate.main:
            args = [str(evil), "--prompt", "hi"]
        assert cli(args) == 2
        assert "would run code when loaded" in capsys.readouterr().err
    for extra in ([], ["train=false"]):
        with pytest.raises(UserError, match=refused):
            run(make_config(f"task.data.train={sentiment_csv}", *SENTIMENT, f"ckpt_path={evil}",
                            *extra))
    assert not marker.exists()
    assert _runs(lab_root) == []  # refused before any run was created


# -- a checkpoint continues only its own run -------------------------------------------------
def test_checkpoint_of_another_experiment_leaves_its_run_untouched(make_config, lab_root: Path,
                                                                   tmp_path: Path,
                                                                   trained: dict) -> None:
    before = _snapshot(lab_root, trained["run_id"])
    other_data = write_sentiment_csv(tmp_path / "other.csv", n=120, seed=5)
    foreign = torch.load(trained["last"], weights_only=True)
    foreign["rnnlab"]["config"]["task"]["name"] = "charlm"
    torch.save(foreign, tmp_path / "charlm.ckpt")
    cases = [
        (["model=gru", *trained["data"], f"ckpt_path={trained['last']}"],
         r"cannot continue this configuration \(model\.cell: 'lstm' in the checkpoint, 'gru' now"),
        (["model=lstm", *trained["data"], "model.hidden_size=32", "train=false",
          f"ckpt_path={trained['best']}"],
         r"cannot be tested with this configuration \(model\.hidden_size: 16 in the checkpoint, "
         r"32 now\)"),
        (["model=lstm", *SENTIMENT, f"task.data.train={other_data}", f"ckpt_path={trained['last']}"],
         r"\(data fingerprint: \w+ in the checkpoint, \w+ now\)"),
        (["model=lstm", *trained["data"], f"ckpt_path={tmp_path / 'charlm.ckpt'}"],
         r"\(task: 'charlm' in the checkpoint, 'sentiment' now\)"),
    ]
    for overrides, message in cases:
        with pytest.raises(ConfigError, match=message):
            run(make_config(*overrides))
    assert len(_runs(lab_root)) == 1
    assert _snapshot(lab_root, trained["run_id"]) == before


def test_checkpoint_whose_run_is_not_in_this_store_is_refused(make_config, tmp_path: Path,
                                                              trained: dict) -> None:
    other_store = tmp_path / "elsewhere"
    other_store.mkdir()
    cfg = make_config("model=lstm", *trained["data"], f"ckpt_path={trained['last']}",
                      f"logger.mlflow.tracking_uri=sqlite:///{other_store}/mlflow.db")
    with pytest.raises(ConfigError, match=rf"belongs to MLflow run {trained['run_id']}, which is "
                                          r"not an active run in the store sqlite:///"):
        run(cfg)


def test_test_only_run_is_a_run_of_its_own(make_config, lab_root: Path, trained: dict) -> None:
    before = _snapshot(lab_root, trained["run_id"])
    metrics = run(make_config("model=lstm", *trained["data"], "train=false",
                              f"ckpt_path={trained['best']}"))
    assert "test/acc" in metrics
    runs = _runs(lab_root)
    assert len(runs) == 2
    evaluation = next(r for r in runs if r.info.run_id != trained["run_id"])
    assert evaluation.info.status == "FINISHED"
    assert evaluation.data.tags["rnnlab.evaluates"] == trained["run_id"]
    assert evaluation.data.metrics["test/acc"] == pytest.approx(metrics["test/acc"])
    assert _snapshot(lab_root, trained["run_id"]) == before  # no second test/* series


def test_resume_continues_its_run_without_logging_a_step_twice(make_config, lab_root: Path,
                                                               trained: dict) -> None:
    client = _client(lab_root)
    run_id = trained["run_id"]
    ckpt_step = torch.load(trained["last"], weights_only=True)["global_step"]
    # steps the run logged after its last checkpoint, before the process died
    for step in range(ckpt_step + 1, ckpt_step + 4):
        client.log_metric(run_id, "train/loss_step", 9.0, step=step)
    client.set_terminated(run_id, "KILLED")
    run(make_config("model=lstm", *trained["data"], "trainer.max_epochs=3",
                    f"ckpt_path={trained['last']}"))
    assert len(_runs(lab_root)) == 1
    again = client.get_run(run_id)
    assert again.info.status == "FINISHED" and again.data.tags["rnnlab.resumed"] == "true"
    # a third epoch was trained and validated into the same run
    assert len(client.get_metric_history(run_id, "val/loss")) == 3
    for key in again.data.metrics:
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        assert len(steps) == len(set(steps)), (key, steps)
    values = {m.step: m.value for m in client.get_metric_history(run_id, "train/loss_step")}
    assert values[ckpt_step + 1] == 9.0  # kept, not logged a second time


def test_ckpt_path_auto_finds_the_newest_checkpoint_of_this_configuration(
        make_config, lab_root: Path, trained: dict, capsys: pytest.CaptureFixture) -> None:
    cfg = make_config("model=lstm", *trained["data"], "trainer.max_epochs=3", "ckpt_path=auto",
                      f"paths.log_dir={lab_root}/outputs")
    _client(lab_root).set_terminated(trained["run_id"], "KILLED")  # pre-empted: unfinished
    run(cfg)
    assert f"ckpt_path=auto: continuing from {trained['last']}" in capsys.readouterr().out
    assert len(_runs(lab_root)) == 1
    fresh = make_config("model=gru", *trained["data"], "ckpt_path=auto",
                        f"paths.log_dir={lab_root}/outputs", "paths.output_dir="
                        f"{lab_root}/outputs/run2")
    run(fresh)
    assert "no checkpoint of this task, model and seed yet" in capsys.readouterr().out
    assert len(_runs(lab_root)) == 2


# -- no run left RUNNING; bad config creates none ----------------------------------------------
@pytest.mark.parametrize(("override", "message"), [
    ("trainer.max_epochs=-5", r"the trainer refused its settings \(`max_epochs` must be a "
                              r"non-negative integer or -1"),
    ("trainer=gpu", r"trainer.accelerator=gpu but this machine has no usable CUDA GPU"),
    ("task.datamodule.batch_size=0", r"task.datamodule.batch_size=0 must be a whole number"),
    ("seed=abc", r"seed=abc is not an integer"),
    ("mlartifacts-is-a-file", r"the MLflow artifact folder \(paths.root_dir/mlartifacts\): "
                              r".*mlartifacts is not a writable folder"),
])
def test_bad_config_is_refused_before_any_run(override: str, message: str, make_config,
                                              lab_root: Path, sentiment_csv: Path) -> None:
    if override == "mlartifacts-is-a-file":  # as root, permission bits stop nothing
        (lab_root / "mlartifacts").write_text("in the way")
        override = "seed=1"
    if override == "trainer=gpu" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match=message):
        run(make_config(f"task.data.train={sentiment_csv}", *SENTIMENT, override))
    assert _runs(lab_root) == []


@pytest.mark.parametrize("where", ["callback", "artifact upload"])
def test_an_error_after_the_run_starts_ends_it_failed(where: str, make_config, lab_root: Path,
                                                      sentiment_csv: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):
        raise OSError("disk full")

    if where == "callback":
        from rnnlab.tracking.callbacks import ThroughputMonitor

        monkeypatch.setattr(ThroughputMonitor, "on_train_epoch_end", boom)
    else:
        monkeypatch.setattr(MlflowClient, "log_artifact", boom)
    with pytest.raises(OSError, match="disk full"):
        run(make_config(f"task.data.train={sentiment_csv}", *SENTIMENT))
    (only,) = _runs(lab_root)
    assert only.info.status == "FAILED"
    assert only.data.tags["rnnlab.failure"] == "OSError: disk full"


# -- divergence is a failure -------------------------------------------------------------------
def test_divergence_stops_the_run_failed(make_config, lab_root: Path, sentiment_csv: Path) -> None:
    with pytest.raises(Diverged, match=r"training diverged at step \d+ \(epoch \d+\): the "
                                       r"training loss is nan"):
        run(make_config(f"task.data.train={sentiment_csv}", *SENTIMENT, "task.optimizer.lr=1e6",
                        "trainer.max_epochs=5"))
    (only,) = _runs(lab_root)
    assert only.info.status == "FAILED"
    assert only.data.tags["rnnlab.failure"].startswith("training diverged at step")
    losses = _client(lab_root).get_metric_history(only.info.run_id, "train/loss_step")
    assert all(m.value == m.value for m in losses)  # nothing non-finite was trained on


def test_a_metric_of_non_finite_forecasts_is_nan_never_zero() -> None:
    import numpy as np

    from rnnlab.metrics.forecast import forecast_metrics, smape

    truth = np.array([1.0, 2.0, 3.0])
    assert np.isnan(smape(truth, np.array([np.nan, np.nan, np.nan])))
    scores = forecast_metrics(truth, np.array([1.0, np.inf, 3.0]), truth, 1, "val/")
    assert all(np.isnan(v) for v in scores.values()) and "val/smape" in scores
    assert forecast_metrics(truth, truth, truth, 1)["smape"] == 0.0


# -- signals -----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_a_checkpoint_ends_killed_and_resumes(signum: int, tmp_path: Path) -> None:
    csv = write_sentiment_csv(tmp_path / "reviews.csv", n=400)
    args = [f"task.data.train={csv}", "task.datamodule.min_freq=1", "model.hidden_size=16",
            "task.datamodule.batch_size=8", "trainer.max_epochs=200"]
    proc = _train(*args, root=tmp_path, wait=False)
    deadline = time.time() + 240
    seen = ""
    while time.time() < deadline:  # wait for the first validation line, then signal
        line = proc.stderr.readline()
        seen += line
        if line.startswith("epoch 0:"):
            break
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=240)
    err = seen + err
    assert proc.returncode == 128 + signum, err[-2000:]
    name = signal.Signals(signum).name
    assert f"killed: interrupted by {name} at step" in err
    (only,) = _runs(tmp_path)
    assert only.info.status == "KILLED"
    assert only.data.tags["rnnlab.failure"].startswith(f"interrupted by {name} at step")
    last = Path(err.split("checkpoint ")[-1].split(";")[0])
    assert last.name == "last.ckpt" and last.is_file()
    epoch = torch.load(last, weights_only=True)["epoch"]
    resumed = _train(*args[:-1], f"trainer.max_epochs={epoch + 2}", "ckpt_path=auto",
                     root=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    (again,) = _runs(tmp_path)
    assert again.info.run_id == only.info.run_id and again.info.status == "FINISHED"
    assert "rnnlab.failure" not in again.data.tags


# -- one sentence, a non-zero exit, no run ------------------------------------------------------
def test_unwritable_output_folder_and_credentials_are_one_line(tmp_path: Path,
                                                               sentiment_csv: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    unwritable, secret = (  # side by side: neither writes where the other looks
        _train(f"task.data.train={sentiment_csv}", f"paths.log_dir={blocker}/out",
               root=tmp_path, wait=False),
        _train(f"task.data.train={sentiment_csv}", "trainer=debug",
               "logger.mlflow.tracking_uri=http://alice:s3cret@127.0.0.1:9", root=tmp_path,
               wait=False))
    proc = subprocess.CompletedProcess([], 0, *unwritable.communicate(timeout=300))
    proc.returncode = unwritable.returncode
    assert proc.returncode == 2
    assert "a-file/out/runs/sentiment" in proc.stderr and "is not a writable folder" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = subprocess.CompletedProcess([], 0, *secret.communicate(timeout=300))
    proc.returncode = secret.returncode
    assert proc.returncode == 2 and "http://***@127.0.0.1:9" in proc.stderr
    written = [p for p in (tmp_path / "outputs").rglob("*") if p.is_file()]
    assert written and not any("s3cret" in p.read_text(errors="ignore") for p in written)
    assert "s3cret" not in proc.stderr + proc.stdout


def test_one_class_csv_empty_split_and_directory_are_one_sentence(make_config, lab_root: Path,
                                                                  tmp_path: Path) -> None:
    one_class = tmp_path / "one.csv"
    one_class.write_text("text,label\n" + "".join(f"film {i},pos\n" for i in range(40)))
    with pytest.raises(DataError, match=r"one\.csv: every training example has the label "
                                        r"'pos'; a classifier needs at least two classes"):
        run(make_config(f"task.data.train={one_class}", *SENTIMENT))
    words = tmp_path / "tiny.dict"
    words.write_text("cat K AE1 T\ndog D AO1 G\n")
    with pytest.raises(DataError, match=r"the (val|test)( and test)? splits? (is|are) empty "
                                        r"\(train \d+, val \d+, test \d+ examples\)"):
        run(make_config("experiment=g2p_tiny", f"task.data.path={words}"))
    with pytest.raises(DataError, match=rf"{tmp_path} is a directory; give the path of a file"):
        run(make_config(f"task.data.train={tmp_path}", *SENTIMENT))
    assert _runs(lab_root) == []


def test_run_names_differ_and_describe_the_command(tmp_path: Path, sentiment_csv: Path) -> None:
    args = [f"task.data.train={sentiment_csv}", "task.datamodule.min_freq=1", "trainer=debug",
            NO_SERVABLE_MODEL]
    for _ in range(2):  # one after the other: two first runs would both create the store
        proc = _train(*args, root=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
    first, second = _runs(tmp_path)
    assert first.info.run_name != second.info.run_name
    assert first.info.run_name.startswith("lstm-s42-")
    assert first.data.tags["mlflow.note.content"] == (
        f"python train.py task.data.train={sentiment_csv} task.datamodule.min_freq=1 "
        f"trainer=debug {NO_SERVABLE_MODEL}")


def test_gaps_and_converted_tags_are_said_on_the_console(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    from rnnlab.data.forecast import load_series
    from rnnlab.data.ner import NerDataModule

    values = [str(100 + i) if i % 10 else "" for i in range(120)]
    (tmp_path / "sales.csv").write_text("sales\n" + "\n".join(values) + "\n")
    series = load_series("airline", {"path": str(tmp_path / "sales.csv"), "target": "sales"},
                         tmp_path)
    assert series.values.shape[0] == 120 and series.interpolated == {"sales": 12}
    assert "12 missing value(s) (12 in 'sales') filled by linear interpolation" in \
        capsys.readouterr().err
    conll = "".join("John I-PER\nlives O\nin O\nParis I-LOC\n\n" for _ in range(30))
    for split in ("train", "val", "test"):
        (tmp_path / f"{split}.txt").write_text(conll)
    dm = NerDataModule(data={s: str(tmp_path / f"{s}.txt") for s in ("train", "val", "test")},
                       data_dir=str(tmp_path))
    dm.setup()
    assert "train.txt: IOB1 tags converted to IOB2 (BIO)" in capsys.readouterr().err


@pytest.mark.slow
def test_a_crash_on_a_non_zero_ddp_rank_ends_the_run_failed(tmp_path: Path,
                                                            sentiment_csv: Path) -> None:
    faults = os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])
    proc = _train(f"task.data.train={sentiment_csv}", *SENTIMENT, "trainer=ddp",
                  "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true",
                  "+callbacks.crash._target_=faults.CrashOnRank", "+callbacks.crash.rank=1",
                  root=tmp_path, env={"PYTHONPATH": faults})
    assert proc.returncode != 0
    (only,) = _runs(tmp_path)  # one run for the job, whatever the number of processes
    assert only.info.status == "FAILED"
    assert only.data.tags["rnnlab.failure"] == "rank 1: RuntimeError: injected fault on rank 1"


def test_length_filters_say_what_they_drop(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from rnnlab.data.g2p import G2PDataModule

    words = [f"w{'a' * (i % 7)}{i} W AH{i % 3}" for i in range(60)]
    (tmp_path / "words.dict").write_text("\n".join(words) + "\n")
    dm = G2PDataModule(data={"path": str(tmp_path / "words.dict")}, data_dir=str(tmp_path),
                       max_len=6)
    dm.setup()
    kept = sum(len(v) for v in dm.datasets.values())
    err = capsys.readouterr().err
    assert kept < 60
    assert "examples: word or every pronunciation longer than task.datamodule.max_len=6" in err
    assert sum(int(n) for n in re.findall(r"(\d+) of \d+ \w+", err)) == 60 - kept


def test_data_parallel_without_our_sharding_is_refused_before_any_run(make_config, lab_root: Path,
                                                                     sentiment_csv: Path) -> None:
    with pytest.raises(ConfigError, match=r"needs trainer.use_distributed_sampler=false \(use "
                                          r"trainer=ddp or trainer=ddp_cpu"):
        run(make_config(f"task.data.train={sentiment_csv}", *SENTIMENT, "trainer=cpu",
                        "trainer.devices=2", "+trainer.strategy=ddp"))
    assert _runs(lab_root) == []
