"""Optuna studies that outlive their process and take trials from several at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hydra_plugins.rnnlab_optuna._impl import OptunaSweep, format_value, safe_url, search_space
from rnnlab.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ fast: the grammar
def test_search_space_maps_hydra_grammar_to_optuna_distributions() -> None:
    space, fixed = search_space(
        {"model.hidden_size": "choice(64, 128)", "model.dropout": "interval(0.0, 0.5)",
         "task.optimizer.lr": "tag(log, interval(0.0005, 0.01))",
         "model.num_layers": "range(1, 4)", "task.crf": "choice(true, false)",
         "model.embedding_dim": "choice(32, 64)"},
        ["model=gru", "model.embedding_dim=48", "seed=range(0, 10, 5)"])
    assert space["model.hidden_size"] == CategoricalDistribution([64, 128])
    assert space["model.dropout"] == FloatDistribution(0.0, 0.5)
    assert space["task.optimizer.lr"] == FloatDistribution(0.0005, 0.01, log=True)
    # Hydra's range stops before `stop`: 1, 2, 3
    assert space["model.num_layers"] == IntDistribution(1, 3)
    assert space["task.crf"] == CategoricalDistribution([True, False])
    assert space["seed"] == IntDistribution(0, 5, step=5)
    # a plain command-line value fixes a searched key for every trial
    assert "model.embedding_dim" not in space
    assert fixed == ["model=gru", "model.embedding_dim=48"]
    assert [format_value(v) for v in (True, None, 0.25, "mean")] == ["true", "null", "0.25",
                                                                     "mean"]


def test_search_space_refuses_what_optuna_cannot_sample() -> None:
    # a list choice travels as its override text, which Hydra parses back into a list
    space, _ = search_space({"trainer.devices": "choice([0,1],[2])"}, [])
    assert space["trainer.devices"] == CategoricalDistribution(["[0,1]", "[2]"])
    with pytest.raises(ConfigError, match="hydra.sweeper.params.model: model=glob"):
        search_space({"model": "glob(*)"}, [])


def test_a_stored_study_needs_a_name_and_hides_its_password() -> None:
    sweep = OptunaSweep(storage="postgresql://lab:secret@127.0.0.1:5432/optuna")
    with pytest.raises(ConfigError, match="study_name"):
        sweep._validate()
    assert "secret" not in safe_url("postgresql://lab:secret@127.0.0.1:5432/optuna")
    with pytest.raises(ConfigError, match="direction"):
        OptunaSweep(direction="maximise")._validate()


def test_a_storage_url_without_its_driver_says_which_to_use() -> None:
    from hydra_plugins.rnnlab_optuna._impl import open_storage

    pytest.importorskip("psycopg2")
    try:
        import psycopg  # noqa: F401
    except ImportError:  # the usual case: only psycopg2 is installed
        with pytest.raises(ConfigError, match=r"postgresql\+psycopg2://"):
            open_storage("postgresql://lab:secret@127.0.0.1:9/optuna")
    with pytest.raises(ConfigError, match="cannot be opened") as err:  # nobody listens on 9
        open_storage("postgresql+psycopg2://lab:secret@127.0.0.1:9/optuna")
    assert "secret" not in str(err.value)


# ------------------------------------------------------------------ slow: real workers
def _search(root: Path, csv: Path, name: str, n_trials: int, storage: str) -> subprocess.Popen:
    """One worker: the README's search command, pointed at a shared study."""
    env = {**os.environ, "CI": "1", "RNNLAB_ROOT": str(root), "OMP_NUM_THREADS": "1"}
    (root / "conf").exists() or (root / "conf").symlink_to(REPO / "conf")
    log = open(root / f"{name}.log", "w")  # noqa: SIM115 - closed when the process ends
    return subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), "-m", "hparams_search=sentiment_optuna",
         f"hydra.sweeper.n_trials={n_trials}", f"hydra.sweeper.storage={storage}",
         "hydra.sweeper.study_name=shared", f"hydra.sweep.dir={root}/sweeps/{name}",
         "model=gru", "trainer=debug", f"task.data.train={csv}", "task.datamodule.min_freq=1"],
        stdout=log, stderr=subprocess.STDOUT, text=True, env=env)


def _finish(proc: subprocess.Popen, root: Path, name: str) -> dict:
    assert proc.wait(timeout=900) == 0, (root / f"{name}.log").read_text()[-3000:]
    return OmegaConf.to_container(OmegaConf.load(root / "sweeps" / name /
                                                 "optimization_results.yaml"))


@pytest.mark.slow  # about 1.5 minutes on an idle 2-core machine
def test_two_workers_share_one_sqlite_study_and_a_rerun_continues_it(
        tmp_path: Path, sentiment_csv: Path) -> None:
    storage = f"sqlite:///{tmp_path}/studies/optuna.db"
    start = time.perf_counter()
    workers = {name: _search(tmp_path, sentiment_csv, name, 2, storage) for name in ("a", "b")}
    results = {name: _finish(proc, tmp_path, name) for name, proc in workers.items()}
    both = time.perf_counter() - start

    study = optuna.load_study(study_name="shared", storage=storage)
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    by_worker = {name: [t for t in trials if t.user_attrs["hydra_sweep_dir"].endswith(
        f"sweeps/{name}")] for name in workers}
    assert [len(v) for v in by_worker.values()] == [2, 2]
    # salted seeds: the two workers did not propose the same start-up trials
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 4
    for r in results.values():
        assert r["n_trials_added"] == 2 and r["study_name"] == "shared"
    # the two workers really ran side by side: their trials overlap in time
    a0, a1 = min(t.datetime_start for t in by_worker["a"]), max(
        t.datetime_complete for t in by_worker["a"])
    b0, b1 = min(t.datetime_start for t in by_worker["b"]), max(
        t.datetime_complete for t in by_worker["b"])
    assert a0 < b1 and b0 < a1

    # the same command again continues the study instead of starting a new one
    again = _finish(_search(tmp_path, sentiment_csv, "c", 1, storage), tmp_path, "c")
    study = optuna.load_study(study_name="shared", storage=storage)
    assert len(study.trials) == 5 and again["n_trials_before"] == 4
    assert again["n_trials_study"] == 5 and again["n_complete_study"] == 5
    assert again["best_value"] == max(t.value for t in study.trials)
    assert again["best_trial"] == study.best_trial.number

    # every trial is an MLflow run under its worker's sweep parent
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("sentiment").experiment_id])
    parents = [r for r in runs if r.data.tags.get("rnnlab_role") == "sweep_parent"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 3 and len(children) == 5
    assert {p.data.tags["optuna_study_name"] for p in parents} == {"shared"}
    print(f"\n2 workers x 2 trials: {both:.0f} s; study holds {len(study.trials)} trials")
