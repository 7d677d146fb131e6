"""compare.py on a store built here with known metrics: directions, ranking, filters, errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from rnnlab.compare import main

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
    assert rank[("speech", "lstm")] == 1 and rank[("speech", "gru")] == 2  # mean over seeds
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
