"""The record at its remaining edges (issue 27): sweeps that end honestly, tables read by a
real CSV reader, forecast files with inf or repeated dates, folders and stores that fail,
checkpoints checked for integrity and layout, models too large for memory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
FAULTS = os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])
TINY = ["experiment=adding_tiny", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "model.embedding_dim=8",
        "logger.mlflow.log_model=false"]


def _train(root: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "CI": "1", "RNNLAB_ROOT": str(root), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": FAULTS}
    (root / "conf").exists() or (root / "conf").symlink_to(REPO / "conf")
    return subprocess.run([sys.executable, str(REPO / "train.py"), *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


def _sweep_runs(root: Path, experiment: str = "adding") -> tuple[list, list]:
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    parents = [r for r in runs if r.data.tags.get("rnnlab_role") == "sweep_parent"]
    return parents, [r for r in runs if r not in parents]


# -- case 5: sweeps end honestly -------------------------------------------------------------
CRASH_AT_12 = ["+callbacks.crash._target_=faults.CrashIf",
               "+callbacks.crash.value=${model.hidden_size}", "+callbacks.crash.equals=12"]


@pytest.mark.slow  # one sweep of three tiny jobs: about 30 s
def test_a_sweep_records_each_failed_job_runs_the_rest_and_exits_nonzero(tmp_path: Path
                                                                        ) -> None:
    proc = _train(tmp_path, "-m", *TINY, "model.hidden_size=8,-4,12", *CRASH_AT_12)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "error: 2 job(s) of the sweep failed" in proc.stderr
    assert "error: model.hidden_size must be a positive integer, got -4." in proc.stderr
    (parent,), children = _sweep_runs(tmp_path)
    by_job = {c.data.tags["sweep_job"]: c for c in children}
    assert sorted(by_job) == ["0", "1", "2"]  # the job after the failures ran too
    assert by_job["0"].info.status == "FINISHED"
    assert by_job["1"].info.status == "FAILED"
    assert by_job["1"].data.tags["rnnlab.failure"] == \
        "model.hidden_size must be a positive integer, got -4."
    assert by_job["2"].info.status == "FAILED"
    assert "RuntimeError: injected fault for 12" in by_job["2"].data.tags["rnnlab.failure"]
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert parent.info.status == "FAILED"
    assert parent.data.metrics["sweep/n_failed"] == 2
    assert parent.data.tags["mlflow.note.content"].startswith("1 of 3 jobs finished, 2 failed")


@pytest.mark.slow  # a sweep of two tiny jobs: about 25 s
def test_a_diverged_sweep_job_counts_as_failed(tmp_path: Path) -> None:
    proc = _train(tmp_path, "-m", *TINY, "model.hidden_size=8", "task.optimizer.lr=0.001,1e30")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "error: 1 job(s) of the sweep failed" in proc.stderr
    (parent,), children = _sweep_runs(tmp_path)
    diverged = next(c for c in children if c.info.status == "FAILED")
    assert diverged.data.tags["rnnlab.failure"].startswith("training diverged at step")
    assert parent.info.status == "FAILED"
    assert parent.data.tags["mlflow.note.content"].startswith("1 of 2 jobs finished, 1 failed")


@pytest.mark.slow  # two jobs in parallel workers or submitit processes: 30-60 s each
@pytest.mark.parametrize("launcher", ["joblib", "slurm_local"])
def test_parallel_launchers_record_failed_jobs_too(tmp_path: Path, launcher: str) -> None:
    proc = _train(tmp_path, "-m", *TINY, "model.hidden_size=8,-4", f"hydra/launcher={launcher}",
                  f"hydra.sweep.dir={tmp_path}/sweep")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "error: 1 job(s) of the sweep failed" in proc.stderr
    (parent,), children = _sweep_runs(tmp_path)
    assert sorted(c.info.status for c in children) == ["FAILED", "FINISHED"]
    assert parent.info.status == "FAILED"
    assert parent.data.tags["mlflow.note.content"].startswith("1 of 2 jobs finished, 1 failed")


@pytest.mark.slow  # a study stopped after its first trial: about 20 s
def test_an_optuna_study_stops_honestly_when_trials_fail(tmp_path: Path) -> None:
    proc = _train(tmp_path, "-m", "hparams_search=adding_optuna", *TINY,
                  "hydra.sweeper.n_trials=3", "model.hidden_size=choice(8,16)",
                  "task.datamodule.batch_size=32", "+callbacks.crash._target_=faults.CrashIf",
                  "+callbacks.crash.value=1", "+callbacks.crash.equals=1")
    assert proc.returncode == 1, proc.stderr[-3000:]
    console = proc.stdout + proc.stderr  # Hydra logs to stdout
    assert "the study stops: trial 0 failed (the job failed: RuntimeError: injected fault" \
        in console
    assert proc.stderr.count("Traceback") == 1  # the crash's own; the stop is one sentence
    assert "error: 1 job(s) of the sweep failed" in proc.stderr
    (parent,), children = _sweep_runs(tmp_path)
    assert [c.info.status for c in children] == ["FAILED"]  # max_failure_rate=0: one trial
    assert parent.info.status == "FAILED"


# -- case 7: a real CSV reader ---------------------------------------------------------------
def test_tables_keep_quoted_newlines_line_separators_and_large_fields(tmp_path: Path) -> None:
    from rnnlab.data.tables import read_table

    big = "word " * 200_000  # 1,000,000 characters in one field
    path = tmp_path / "reviews.csv"
    path.write_text('text,label\n"a story\nnewline word",pos\n"one\u2028two\x85three",neg\n'
                    f'"{big}",pos\n', encoding="utf-8", newline="")
    rows = read_table(path, ["text", "label"], labels=["label"])
    assert rows[0] == {"text": "a story\nnewline word", "label": "pos"}
    assert rows[1]["text"] == "one\u2028two\x85three"
    assert rows[2]["text"] == big and len(rows) == 3
    # errors name the line where the record starts, counted by the reader itself
    path.write_text('text,label\n"two\nlines",pos\nbad,row,here\n', encoding="utf-8")
    from rnnlab.core.errors import DataError

    with pytest.raises(DataError, match=r"reviews\.csv, line 4: expected 2 fields"):
        read_table(path, ["text", "label"], labels=["label"])


def test_a_missing_label_is_dropped_and_counted_once(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    from helpers import write_sentiment_csv

    from rnnlab.data.sentiment import SentimentDataModule

    path = write_sentiment_csv(tmp_path / "reviews.csv", n=120)
    with path.open("a") as f:
        f.write("an unlabelled review,NaN\nanother one,\n")
    dm = SentimentDataModule(data={"train": str(path)}, data_dir=str(tmp_path), min_freq=1)
    dm.setup()
    assert "NaN" not in dm.class_names and "" not in dm.class_names
    err = capsys.readouterr().err
    assert err.count("2 row(s) without a 'label' value (empty or NaN) dropped (line 122, 123)") == 1


# -- case 8: forecast files ------------------------------------------------------------------
def test_forecast_inf_is_a_missing_value_and_a_repeated_date_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from rnnlab.core.errors import DataError
    from rnnlab.data.forecast import load_series

    dates = [f"{2000 + i // 12}-{i % 12 + 1:02d}-01" for i in range(48)]
    values = [str(100 + i) for i in range(48)]
    values[10], values[20] = "inf", "-inf"
    path = tmp_path / "sales.csv"
    path.write_text("date,sales\n" + "".join(f"{d},{v}\n" for d, v in zip(dates, values, strict=True)))
    data = {"path": str(path), "target": "sales", "date_column": "date"}
    series = load_series("user", data, tmp_path)
    assert series.interpolated == {"sales": 2}
    assert series.values[10, 0] == pytest.approx(110.0)
    assert "2 missing value(s) (2 in 'sales') filled by linear interpolation" in \
        capsys.readouterr().err
    dates[6] = dates[5]
    path.write_text("date,sales\n" + "".join(f"{d},{i}\n" for i, d in enumerate(dates)))
    with pytest.raises(DataError, match=r"sales\.csv, lines 7 and 8: the date '2000-06-01' "
                                        r"appears twice"):
        load_series("user", data, tmp_path)


# -- case 11: a model too large for memory ---------------------------------------------------
def test_a_model_larger_than_memory_is_refused_before_anything_is_allocated(
        tmp_path: Path) -> None:
    from helpers import compose_config

    from rnnlab.build import check_pair
    from rnnlab.core.errors import ConfigError

    cfg = compose_config(["experiment=adding_tiny", "model.hidden_size=100000"], tmp_path)
    with pytest.raises(ConfigError, match=r"model=lstm \(model\.hidden_size=100000, .*\) has "
                                          r"40,\d{3},\d{3},\d{3} parameters, 149\.\d GiB of "
                                          r"weights alone, more than the .* GiB of memory "
                                          r"available now; choose smaller sizes\."):
        check_pair(cfg)
    check_pair(compose_config(["experiment=adding_tiny", "model.hidden_size=8"], tmp_path))


# -- case 10: checkpoint integrity and layout ------------------------------------------------
@pytest.fixture
def adding_run(make_config, lab_root: Path) -> dict:
    """One tiny finished adding run: its metrics and MLflow run."""
    from helpers import latest_run

    from rnnlab.run.train import run

    metrics = run(make_config(*TINY, "model.hidden_size=8"))
    _, latest = latest_run(lab_root, "adding")
    return {"best": Path(metrics["ckpt_path"]), "run": latest}


def _craft(source: Path, target: Path, change) -> Path:
    import torch

    ckpt = torch.load(source, weights_only=True)
    change(ckpt)
    torch.save(ckpt, target)
    return target


def test_checkpoints_carry_a_sha256_and_other_layouts_are_one_sentence(
        make_config, lab_root: Path, tmp_path: Path, adding_run: dict,
        capsys: pytest.CaptureFixture) -> None:
    import shutil

    from rnnlab.cli import convert, generate, tag
    from rnnlab.core.errors import UserError
    from rnnlab.data.sources import sha256_of
    from rnnlab.run.train import run

    best = adding_run["best"]
    digest = sha256_of(best)
    assert (best.parent / "best.ckpt.sha256").read_text() == f"{digest}  best.ckpt\n"
    assert (best.parent / "last.ckpt.sha256").is_file()
    assert adding_run["run"].data.tags["rnnlab.best_ckpt_sha256"] == digest

    # 4 KB of tensor bytes zeroed: refused, where it loaded silently before
    damaged = tmp_path / "damaged" / "best.ckpt"
    damaged.parent.mkdir()
    shutil.copy(best, damaged)
    shutil.copy(best.parent / "best.ckpt.sha256", damaged.parent)
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2: len(data) // 2 + 4096] = bytes(4096)
    damaged.write_bytes(bytes(data))

    def no_spec(ckpt: dict) -> None:
        del ckpt["rnnlab"]["spec"]

    def no_task(ckpt: dict) -> None:
        del ckpt["rnnlab"]["config"]["task"]

    def unknown_target(ckpt: dict) -> None:
        ckpt["rnnlab"]["config"]["model"]["_target_"] = "rnnlab.models.NoSuchModel"

    cases = {damaged: r"does not match its recorded sha256 \(best\.ckpt\.sha256 says "}
    for change, message in ((no_spec, r"\(its 'rnnlab\.spec' is missing\)"),
                            (no_task, r"\(its config has no 'task' section\)"),
                            (unknown_target, r"\(its model class rnnlab\.models\.NoSuchModel "
                                             r"does not exist in this lab\)")):
        cases[_craft(best, tmp_path / f"{change.__name__}.ckpt", change)] = message
    import re

    for path, message in cases.items():
        for cli, extra in ((tag.main, ["--text", "hi"]), (convert.main, ["hi"]),
                           (generate.main, ["--prompt", "hi"])):
            assert cli([str(path), *extra]) == 2
            err = capsys.readouterr().err
            assert re.search(message, err) and "Traceback" not in err, err
        with pytest.raises(UserError, match=message):
            run(make_config(*TINY, "model.hidden_size=8", f"ckpt_path={path}"))


# -- case 9: folders checked before the run, a store that fails after it started -------------
@pytest.mark.parametrize("existing", [False, True])
def test_an_unwritable_experiment_artifact_folder_is_refused_before_the_run(
        make_config, lab_root: Path, existing: bool) -> None:
    from rnnlab.core.errors import ConfigError
    from rnnlab.run.train import run

    folder = lab_root / "mlartifacts" / "adding"
    if existing:  # an experiment made elsewhere, with its artifacts under its id
        client = MlflowClient(f"sqlite:///{lab_root}/mlflow.db")
        folder = lab_root / "mlartifacts" / "7"
        client.create_experiment("adding", artifact_location=folder.as_uri())
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_text("a file where the experiment's artifact folder goes\n")
    with pytest.raises(ConfigError, match=rf"the experiment's MLflow artifact folder: "
                                          rf"{folder} is not a writable folder"):
        run(make_config(*TINY, "model.hidden_size=8"))
    runs = MlflowClient(f"sqlite:///{lab_root}/mlflow.db").search_runs(
        [e.experiment_id for e in MlflowClient(f"sqlite:///{lab_root}/mlflow.db")
         .search_experiments()]) if (lab_root / "mlflow.db").exists() else []
    assert runs == []


class _FailingStore:
    """An MLflow client whose store fails ``failures`` times (then works), like a full disk."""

    tracking_uri = "sqlite:////data/mlflow.db"

    def __init__(self, failures: int) -> None:
        self.failures, self.marked = failures, None

    def _maybe_fail(self) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError(28, "No space left on device")

    def get_run(self, run_id: str):
        self._maybe_fail()
        from types import SimpleNamespace

        return SimpleNamespace(data=SimpleNamespace(tags={}))

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self._maybe_fail()

    def set_terminated(self, run_id: str, status: str) -> None:
        self._maybe_fail()
        self.marked = status


def test_a_failing_store_is_retried_then_the_run_left_running_is_said_once(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    import rnnlab.tracking.store as store
    from rnnlab.tracking.record import RunRecord

    monkeypatch.setattr(store.time, "sleep", lambda s: None)
    transient = _FailingStore(failures=1)
    RunRecord(transient, "abc123").end("FAILED", "boom")
    assert transient.marked == "FAILED"
    assert "MLflow run abc123 marked FAILED on a retry" in capsys.readouterr().err

    gone = _FailingStore(failures=100)
    RunRecord(gone, "abc123").end("FAILED", "boom")
    assert gone.marked is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        "error: the MLflow store failed ([Errno 28] No space left on device), so run abc123 is "
        "left RUNNING although it ended FAILED; once the store works again (free disk space, "
        "restart the server), mark it with: python -m rnnlab.tracking.store abc123 FAILED "
        "--uri sqlite:////data/mlflow.db")

    # the command it names marks the run
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("x")).info.run_id
    assert store.main([run_id, "FAILED", "--uri", uri, "--reason", "the disk was full"]) == 0
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["rnnlab.failure"] == "the disk was full"


@pytest.mark.slow  # one tiny training subprocess: about 20 s
def test_a_store_that_fills_up_mid_run_names_the_run_left_running_and_its_fix(
        tmp_path: Path) -> None:
    import re

    from rnnlab.tracking import store

    proc = _train(tmp_path, *TINY, "model.hidden_size=8",
                  "+callbacks.broken._target_=faults.BreakStore")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr.count("Traceback") == 1  # the error itself, once
    found = re.search(r"error: the MLflow store failed \(database or disk is full\), so run "
                      r"(\w+) is left RUNNING although it ended FAILED; .* mark it with: "
                      r"python -m rnnlab\.tracking\.store \1 FAILED --uri (\S+)", proc.stderr)
    assert found, proc.stderr[-3000:]
    run_id, uri = found.groups()
    client = MlflowClient(uri)
    assert client.get_run(run_id).info.status == "RUNNING"
    assert store.main([run_id, "FAILED", "--uri", uri]) == 0
    assert client.get_run(run_id).info.status == "FAILED"
