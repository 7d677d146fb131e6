"""compare.py on a store built here with known metrics: directions, ranking, filters, errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from rnnlab.report.compare import main

# task -> (monitor, mode, {model: [(seed, best val, test)]})
KNOWN = {
    "sentiment": ("val/acc", "max", {"lstm": [(1, 0.80, 0.79), (2, 0.78, 0.77)],
                                     "gru": [(1, 0.75, 0.74)], "rnn": [(1, 0.60, 0.58)]}),
    "forecast": ("val/loss", "min", {"lstm": [(1, 0.30, 0.35)], "gru": [(1, 0.10, 0.12)],
                                     "rnn": [(1, 0.50, 0.55)]}),
    # lstm's best-val run tests worst, but its mean over three seeds beats gru's one run
    "speech": ("val/acc", "max", {"lstm": [(1, 0.95, 0.85), (2, 0.90, 0.95), (3, 0.90, 0.95)],
                                  "gru": [(1, 0.93, 0.90)]}),
}


def _store(tmp_path: Path) -> str:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    for task, (monitor, mode, models) in KNOWN.items():
        exp = client.create_experiment(task, artifact_location=(tmp_path / "art" / task).as_uri())
        for model, runs in models.items():
            for seed, val, test in runs:
                run = client.create_run(exp, tags={"task": task, "model": model, "seed": str(seed)})
                rid = run.info.run_id
                client.log_param(rid, "task.monitor", monitor)
                client.log_param(rid, "task.mode", mode)
                client.log_param(rid, "model.num_parameters", "1000")
                for step, v in enumerate([val * 1.5, val]):
                    client.log_metric(rid, monitor, v, step=step)
                client.log_metric(rid, f"best/{monitor}", val)
                client.log_metric(rid, monitor.replace("val/", "test/"), test)
                client.set_terminated(rid, "FINISHED")
        no_metric = client.create_run(exp, tags={"task": task, "model": "broken", "seed": "1"})
        client.log_param(no_metric.info.run_id, "task.monitor", monitor)
        client.set_terminated(no_metric.info.run_id, "FINISHED")
    return uri


def _rows(out: Path) -> list[dict]:
    with open(out / "report.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_report_ranks_by_each_tasks_direction(tmp_path: Path, capsys) -> None:
    uri = _store(tmp_path)
    assert main(["--tracking-uri", uri, "--out", str(tmp_path / "rep")]) == 0
    rows = _rows(tmp_path / "rep")
    rank = {(r["task"], r["model"]): int(r["rank"]) for r in rows}
    assert rank[("sentiment", "lstm")] == 1 and rank[("sentiment", "rnn")] == 3  # maximised
    assert rank[("forecast", "gru")] == 1 and rank[("forecast", "rnn")] == 3     # minimised
    assert rank[("speech", "lstm")] == 1 and rank[("speech", "gru")] == 2  # by validation
    lstm = next(r for r in rows if r["task"] == "sentiment" and r["model"] == "lstm")
    assert lstm["best val"] == "0.8000" and lstm["test (best run)"] == "0.7900"
    assert lstm["seeds"] == "2" and lstm["test mean ± std"].startswith("0.7800 ± 0.0141")
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "| speech | test/acc (max) | 0.9 (2) | 0.9167 (1) |  |" in report  # gru, lstm, rnn
    assert "| lstm | 1.33 | 3 |" in report and "| gru | 1.67 | 3 |" in report
    assert "model broken: 1 run(s) have no val/acc" in report
    assert (tmp_path / "rep" / "curves_sentiment.png").stat().st_size > 0
    client = MlflowClient(uri)
    reports = client.search_runs([client.get_experiment_by_name("reports").experiment_id])
    assert {a.path for a in client.list_artifacts(reports[0].info.run_id, "report")} >= {
        "report/report.md", "report/report.csv"}
    assert "sentiment" in capsys.readouterr().out


def test_filters(tmp_path: Path) -> None:
    uri = _store(tmp_path)
    assert main(["--tracking-uri", uri, "--tasks", "forecast", "--models", "gru,rnn",
                 "--out", str(tmp_path / "rep"), "--no-log"]) == 0
    assert {(r["task"], r["model"]) for r in _rows(tmp_path / "rep")} == {
        ("forecast", "gru"), ("forecast", "rnn")}


@pytest.mark.parametrize(("args", "message"), [
    (["--tasks", "ner"], "has no task experiments named ner"),
    (["--since", "2026-13-01"], "is not a date"),
    (["--sweep-id", "nope"], "no finished runs with their task's metric match the filters"),
])
def test_errors_are_one_sentence(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    uri = _store(tmp_path)
    assert main(["--tracking-uri", uri, "--no-log", *args]) == 2
    assert message in capsys.readouterr().err


def test_empty_and_unreachable_store(tmp_path: Path, capsys) -> None:
    assert main(["--tracking-uri", f"sqlite:///{tmp_path}/empty.db", "--no-log"]) == 2
    assert "train something first" in capsys.readouterr().err
    assert main(["--tracking-uri", "http://127.0.0.1:9", "--no-log"]) == 2
    assert "cannot read the MLflow tracking store http://127.0.0.1:9" in capsys.readouterr().err


# --- the report's best run is the run --register registers ---------------------------

def test_the_report_names_the_run_register_registers(tmp_path: Path, capsys) -> None:
    """gru tests better on average, lstm seed 1 validates best: both the report and the
    registry choose by validation, so both name lstm seed 1."""
    from rnnlab.report.registry import ALIAS, MODEL_URI_TAG

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("sentiment", artifact_location=(tmp_path / "art").as_uri())
    ids = {}
    for model, seed, val, test in [("lstm", 1, 0.82, 0.74), ("lstm", 2, 0.78, 0.76),
                                   ("gru", 1, 0.80, 0.79), ("gru", 2, 0.79, 0.80)]:
        run = client.create_run(exp, tags={"task": "sentiment", "model": model,
                                           "seed": str(seed)})
        rid = ids[(model, seed)] = run.info.run_id
        client.log_param(rid, "task.monitor", "val/acc")
        client.log_param(rid, "task.mode", "max")
        client.log_metric(rid, "best/val/acc", val)
        client.log_metric(rid, "test/acc", test)
        logged = client.create_logged_model(exp, source_run_id=rid, name="model")
        client.set_tag(rid, MODEL_URI_TAG, logged.model_uri)
        client.set_terminated(rid, "FINISHED")
    out = tmp_path / "rep"
    assert main(["--tracking-uri", uri, "--out", str(out), "--no-log", "--register"]) == 0
    rows = {r["model"]: r for r in _rows(out)}
    assert rows["lstm"]["rank"] == "1" and rows["gru"]["rank"] == "2"
    assert rows["lstm"]["test (best run)"] == "0.7400"
    assert rows["gru"]["test mean ± std"].startswith("0.7950")  # better on test, not chosen
    best = ids[("lstm", 1)]
    report = (out / "report.md").read_text()
    assert f"would register: lstm seed 1, run {best[:8]}." in report
    assert "rnnlab-sentiment@champion -> version 1: lstm seed 1" in capsys.readouterr().out
    assert client.get_model_version_by_alias("rnnlab-sentiment", ALIAS).run_id == best


# --- entries are configurations -------------------------------------------------------

def _config_params(root: str, out: str, seed: int, max_epochs: int) -> dict[str, str]:
    """A run's flattened config as train.py logs it (the keys that matter here)."""
    return {"seed": str(seed), "ckpt_path": "null", "train": "True", "test": "True",
            "paths.root_dir": root, "paths.data_dir": f"{root}/data",
            "paths.log_dir": f"{root}/outputs", "paths.output_dir": out,
            "trainer.default_root_dir": out, "trainer.max_epochs": str(max_epochs),
            "trainer.log_every_n_steps": "50", "logger.mlflow.tracking_uri": "null",
            "callbacks.model_checkpoint.dirpath": f"{out}/checkpoints",
            "model.name": "lstm", "model.hidden_size": "256",
            "task.monitor": "val/acc", "task.mode": "max",
            "task.datamodule.data_dir": f"{root}/data", "task.datamodule.seed": str(seed),
            "task.datamodule.num_workers": "0", "data.n_train": "100",
            "model.num_parameters": "1000"}


def _pooling_store(tmp_path: Path) -> str:
    """The issue's case: one full lstm run and two one-epoch runs (seeds 31, 32), written
    from different clones and output folders, plus a gru run."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("sentiment", artifact_location=(tmp_path / "art").as_uri())
    for model, seed, epochs, root, test in [("lstm", 42, 10, "/home/a/rnnlab", 0.7665),
                                            ("lstm", 31, 1, "/home/a/rnnlab", 0.50),
                                            ("lstm", 32, 1, "/scratch/b/rnnlab", 0.48),
                                            ("gru", 42, 10, "/home/a/rnnlab", 0.70)]:
        run = client.create_run(exp, tags={"task": "sentiment", "model": model, "seed": str(seed),
                                           "data_fingerprint": "fp1"})
        rid = run.info.run_id
        params = _config_params(root, f"{root}/outputs/run-{seed}", seed, epochs)
        params["model.name"] = model
        for k, v in params.items():
            client.log_param(rid, k, v)
        client.log_metric(rid, "best/val/acc", test + 0.01)
        client.log_metric(rid, "test/acc", test)
        client.set_terminated(rid, "FINISHED")
    return uri


def test_only_seeds_of_one_configuration_are_averaged(tmp_path: Path) -> None:
    uri = _pooling_store(tmp_path)
    assert main(["--tracking-uri", uri, "--out", str(tmp_path / "rep"), "--no-log"]) == 0
    rows = _rows(tmp_path / "rep")
    lstm = {r["config"]: r for r in rows if r["model"] == "lstm"}
    # the two one-epoch runs (other clone, other output folder, other seed) are one entry
    assert set(lstm) == {"trainer.max_epochs=1", "trainer.max_epochs=10"}
    assert lstm["trainer.max_epochs=10"]["test mean ± std"] == "0.7665"
    assert lstm["trainer.max_epochs=10"]["seeds"] == "1" and lstm["trainer.max_epochs=10"]["rank"] == "1"
    assert lstm["trainer.max_epochs=1"]["test mean ± std"] == "0.4900 ± 0.0141"
    assert lstm["trainer.max_epochs=1"]["seeds"] == "2" and lstm["trainer.max_epochs=1"]["rank"] == "3"
    gru = next(r for r in rows if r["model"] == "gru")
    assert gru["config"] == "" and gru["rank"] == "2"  # one entry: nothing to tell apart
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "| sentiment | test/acc (max) | 0.7 (2) | 0.7665 (1) |" in report  # lstm's best entry


def test_group_by_chooses_the_keys(tmp_path: Path, capsys) -> None:
    uri = _pooling_store(tmp_path)
    assert main(["--tracking-uri", uri, "--out", str(tmp_path / "m"), "--no-log",
                 "--group-by", "model"]) == 0
    lstm = [r for r in _rows(tmp_path / "m") if r["model"] == "lstm"]
    assert len(lstm) == 1 and lstm[0]["seeds"] == "3"  # the old pooling, on request
    assert lstm[0]["test mean ± std"].startswith("0.5822 ± ")
    assert main(["--tracking-uri", uri, "--out", str(tmp_path / "e"), "--no-log",
                 "--group-by", "trainer.max_epochs"]) == 0
    assert sorted(r["config"] for r in _rows(tmp_path / "e") if r["model"] == "lstm") == [
        "trainer.max_epochs=1", "trainer.max_epochs=10"]
    assert main(["--tracking-uri", uri, "--no-log", "--group-by", "trainer.max_epoch"]) == 2
    assert "--group-by key 'trainer.max_epoch' is neither a config key" in capsys.readouterr().err


def test_config_hash_ignores_seed_and_paths_only(tmp_path: Path) -> None:
    from rnnlab.tracking.config_hash import config_hash, config_identity

    base = _config_params("/a", "/a/outputs/x", 1, 10)
    same = _config_params("/b/c", "/tmp/elsewhere", 2, 10)
    assert config_hash(config_identity(base, "fp")) == config_hash(config_identity(same, "fp"))
    assert config_identity(base, "fp")["task.datamodule.data_dir"] == "${paths.data_dir}"
    assert config_identity(base, "fp")["task.monitor"] == "val/acc"  # "/a" is no path here
    for key, value in [("trainer.max_epochs", "1"), ("model.hidden_size", "128"),
                       ("task.datamodule.split_seed", "7")]:
        assert config_hash(config_identity({**base, key: value}, "fp")) != config_hash(
            config_identity(base, "fp")), key
    assert config_hash(config_identity(base, "fp2")) != config_hash(config_identity(base, "fp"))


def test_run_start_tag_matches_the_hash_of_its_params(make_config, sentiment_csv: Path,
                                                       lab_root: Path) -> None:
    """The tag train.py writes equals what compare.py derives from the logged params, so
    runs logged before the tag group with runs logged after it."""
    from rnnlab.run.train import run
    from rnnlab.tracking.config_hash import CONFIG_HASH_TAG, config_hash, config_identity
    from rnnlab.tracking.run import logged_config

    run(make_config("model=tfidf_logreg", f"task.data.train={sentiment_csv}"))
    client = MlflowClient(f"sqlite:///{lab_root}/mlflow.db")
    r = client.search_runs([client.get_experiment_by_name("sentiment").experiment_id])[0]
    # the run's folders are tags (rnnlab.local.*): params and those tags are its config
    derived = config_hash(config_identity(logged_config(r.data.params, r.data.tags),
                                          r.data.tags["data_fingerprint"]))
    assert r.data.tags[CONFIG_HASH_TAG] == derived


# --- what is significant: a store with planted differences --------------------------------

def _planted_tables(task: str) -> dict[str, tuple[object, dict]]:
    """Per-example tables of three models on one task's 400 test examples: lstm best, gru
    a hair from it (must not come out significant), rnn clearly worse (must)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(len(task))
    n = 400
    if task in ("sentiment", "speech", "g2p"):
        good = np.zeros(n)
        good[: int(0.85 * n)] = 1
        rng.shuffle(good)
        hair = good.copy()
        hair[np.flatnonzero(good)[:2]] = 0
        hair[np.flatnonzero(good == 0)[:1]] = 1
        bad = good.copy()
        bad[np.flatnonzero(good)[:60]] = 0
        if task == "g2p":  # the word error rate: 1 - correct, lower is better
            good, hair, bad = 1 - good, 1 - hair, 1 - bad
        spec = {"kind": "mean", "column": "score"}
        cols = {m: {"score": v} for m, v in (("lstm", good), ("gru", hair), ("rnn", bad))}
    elif task == "ner":
        gold = rng.integers(1, 4, n)
        tp = np.minimum(gold, rng.binomial(gold, 0.9))
        fp = rng.binomial(1, 0.1, n)
        tp_hair = tp.copy()
        tp_hair[np.flatnonzero(tp)[:1]] -= 1
        tp_bad = np.minimum(gold, rng.binomial(gold, 0.6))
        spec = {"kind": "f1", "tp": "tp", "fp": "fp", "fn": "fn"}
        cols = {m: {"tp": t, "fp": fp, "fn": gold - t}
                for m, t in (("lstm", tp), ("gru", tp_hair), ("rnn", tp_bad))}
    else:  # charlm: nats per character, lower is better
        chars = np.full(n, 64)
        nats = chars * (1.5 + 0.3 * rng.standard_normal(n) / 8)
        hair = nats.copy()
        hair[:3] += 0.5
        bad = chars * (1.9 + 0.3 * rng.standard_normal(n) / 8)
        spec = {"kind": "ratio", "num": "nats", "den": "chars"}
        cols = {m: {"nats": v, "chars": chars} for m, v in (("lstm", nats), ("gru", hair),
                                                            ("rnn", bad))}
    out = {}
    for model, values in cols.items():
        table = pd.DataFrame({"example": np.arange(n), "input": [f"x{i}" for i in range(n)],
                              "gold": "g", "prediction": "p", **values})
        out[model] = (table, spec)
    return out


PLANTED = {"sentiment": ("val/acc", "max"), "speech": ("val/acc", "max"), "ner": ("val/f1", "max"),
           "g2p": ("val/wer", "min"), "charlm": ("val/loss", "min")}


def _planted_store(tmp_path: Path) -> str:
    import json

    from rnnlab.report.stats import metric_value

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    for task, (monitor, mode) in PLANTED.items():
        exp = client.create_experiment(task, artifact_location=(tmp_path / "art" / task).as_uri())
        test_key = monitor.replace("val/", "test/")
        for model, (table, spec) in _planted_tables(task).items():
            value = metric_value(table, spec)
            seeds = [(1, value, True)]
            if task == "sentiment" and model == "lstm":  # seeds without predictions
                seeds += [(2, value - 0.01, False), (3, value + 0.01, False)]
            for seed, test, with_predictions in seeds:
                run = client.create_run(exp, tags={"task": task, "model": model,
                                                   "seed": str(seed), "data_fingerprint": "fp"})
                rid = run.info.run_id
                for k, v in {"seed": seed, "task.monitor": monitor, "task.mode": mode,
                             "model.name": model}.items():
                    client.log_param(rid, k, str(v))
                # the first seed has the best validation score, so it is the best run
                client.log_metric(rid, f"best/{monitor}", test + (0.05 if seed == 1 else 0)
                                  * (1 if mode == "max" else -1))
                client.log_metric(rid, test_key, test)
                if with_predictions:
                    folder = tmp_path / "pred" / rid
                    folder.mkdir(parents=True)
                    table.to_parquet(folder / "test.parquet", index=False)
                    (folder / "test.json").write_text(json.dumps(
                        {"rows": len(table), "examples": len(table), "sampled": False,
                         "metrics": {test_key: spec}}))
                    client.log_artifacts(rid, str(folder), "predictions")
                client.set_terminated(rid, "FINISHED")
    return uri


def test_report_says_which_differences_are_significant(tmp_path: Path) -> None:
    uri = _planted_store(tmp_path)
    out = tmp_path / "rep"
    assert main(["--tracking-uri", uri, "--out", str(out)]) == 0
    rows = {(r["task"], r["model"]): r for r in _rows(out)}
    for task in PLANTED:
        best, hair, worse = rows[(task, "lstm")], rows[(task, "gru")], rows[(task, "rnn")]
        assert best["rank"] == "1" and best["p vs best"] == "best"
        low, high = (float(v) for v in best["test 95% CI"].strip("[]").split(", "))
        assert low < float(best["test (best run)"]) < high, task
        assert float(worse["p vs best"]) < 0.01, task  # planted: clearly worse
        assert float(hair["p vs best"]) > 0.2, task  # planted: within the noise
    seeds = rows[("sentiment", "lstm")]
    assert seeds["seeds"] == "3" and seeds["seeds 95% CI"].startswith("[0.82")
    report = (out / "report.md").read_text()
    assert "rnn (0.7000) is **significantly worse** than lstm (0.8500) on the same 400" in report
    assert "gru (0.8475) and lstm (0.8500) are **not significantly different**" in report
    assert "p = 0.00674: the models' ranks differ significantly at 0.05" in report
    assert "Significantly different (mean ranks further apart than the CD): lstm vs rnn" in report
    assert "Not significantly different: gru vs lstm (|ΔR| = 1.00); gru vs rnn" in report
    assert "![critical difference diagram](cd_diagram.png)" in report
    assert (out / "cd_diagram.png").stat().st_size > 5000
    client = MlflowClient(uri)
    reports = client.search_runs([client.get_experiment_by_name("reports").experiment_id])
    assert "report/cd_diagram.png" in {a.path for a in client.list_artifacts(
        reports[0].info.run_id, "report")}


def test_seed_intervals_need_three_distinct_seeds_and_repeats_are_not_seeds(tmp_path: Path
                                                                          ) -> None:
    """gru ran seed 1 twice: one seed with repeats, no interval; lstm two seeds: n/a; rnn
    seeds 1, 1, 2 (three runs, two seeds): n/a; transformer three seeds: an interval over
    the three seeds, its repeated seed averaged first."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("sentiment", artifact_location=(tmp_path / "art").as_uri())
    for model, runs in {"gru": [(1, 0.70), (1, 0.72)], "lstm": [(1, 0.80), (2, 0.78)],
                        "rnn": [(1, 0.60), (1, 0.62), (2, 0.58)],
                        "transformer": [(1, 0.75), (1, 0.77), (2, 0.74), (3, 0.73)]}.items():
        for seed, test in runs:
            rid = client.create_run(exp, tags={"model": model, "seed": str(seed)}).info.run_id
            client.log_param(rid, "task.monitor", "val/acc")
            client.log_param(rid, "task.mode", "max")
            client.log_metric(rid, "best/val/acc", test + 0.01)
            client.log_metric(rid, "test/acc", test)
            client.set_terminated(rid, "FINISHED")
    out = tmp_path / "rep"
    assert main(["--tracking-uri", uri, "--out", str(out), "--no-log", "--resamples", "20"]) == 0
    rows = {r["model"]: r for r in _rows(out)}
    assert rows["gru"]["seeds 95% CI"] == "n/a (1 seed, 2 repeats)"
    assert rows["lstm"]["seeds 95% CI"] == "n/a (2 seeds)"
    assert rows["rnn"]["seeds 95% CI"] == "n/a (2 seeds, 2 repeats)"
    assert rows["rnn"]["seeds"] == "2"
    assert rows["transformer"]["seeds 95% CI"].startswith("[")
    report = (out / "report.md").read_text()
    assert "gru over 1 seed (2 repeats): no seed interval (it needs 3 distinct seeds)." in report
    # the interval is over the three seeds' means (0.76, 0.74, 0.73), not the four runs
    assert "transformer over 3 seeds (2 repeats): mean 0.7433, 95% t interval" in report
