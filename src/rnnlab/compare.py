"""``python compare.py``: one cross-task report from the MLflow store.

For each task (one MLflow experiment each) and each model: the best finished run by
the task's own monitored metric and direction (read from the run's logged config, so a
loss is minimised and an accuracy maximised), its test score, mean +- std over every
finished run of that model (seeds), parameter count, training time and throughput.
Models are then ranked within each task and the ranks averaged across tasks. Writes
Markdown, CSV and learning-curve plots, prints the table, and logs the files as
artifacts of a run in the ``reports`` experiment.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnlab.config import project_root
from rnnlab.errors import UserError

REPORT_EXPERIMENT = "reports"


@dataclass
class Entry:
    """One (task, model) row of the report."""

    task: str
    model: str
    monitor: str
    maximise: bool
    best_val: float
    best_test: float | None
    best_run_id: str
    tests: list[float] = field(default_factory=list)
    seeds: set[str] = field(default_factory=set)
    n_params: str = ""
    train_seconds: float | None = None
    throughput: float | None = None
    rank: int = 0

    @property
    def test_metric(self) -> str:
        return self.monitor.replace("val/", "test/", 1)

    @property
    def test_mean(self) -> float | None:
        """The mean test score over seeds (None when no run has one)."""
        return statistics.mean(self.tests) if self.tests else None

    def mean_std(self) -> str:
        if not self.tests:
            return ""
        if len(self.tests) == 1:
            return f"{self.tests[0]:.4f}"
        return f"{statistics.mean(self.tests):.4f} ± {statistics.stdev(self.tests):.4f}"


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    from rnnlab.errors import ConfigError
    from rnnlab.tracking.mlflow import check_reachable

    try:
        check_reachable(uri)
    except ConfigError as err:
        raise UserError(f"cannot read the MLflow tracking store {uri} ({err.__cause__}); start "
                        f"the server or pass the right --tracking-uri.") from err
    client = MlflowClient(uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as err:
        first = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise UserError(f"cannot read the MLflow tracking store {uri} ({first}); start the "
                        f"server or pass the right --tracking-uri.") from err
    return client


def collect(client: Any, tasks: list[str] | None = None, models: list[str] | None = None,
            sweep_id: str | None = None, since: dt.date | None = None) -> tuple[list[Entry], list[str]]:
    """Rows of the report and notes on what was skipped."""
    notes: list[str] = []
    experiments = [e for e in client.search_experiments()
                   if e.name not in ("Default", REPORT_EXPERIMENT)
                   and (not tasks or e.name in tasks)]
    if not experiments:
        raise UserError("the MLflow store has no task experiments"
                        + (f" named {', '.join(tasks)}" if tasks else "")
                        + "; train something first (python train.py ...).")
    grouped: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for exp in experiments:
        runs = client.search_runs([exp.experiment_id], max_results=50_000)
        finished = [r for r in runs if r.info.status == "FINISHED"
                    and r.data.tags.get("rnnlab_role") != "sweep_parent"
                    and r.data.tags.get("model")]
        if sweep_id:
            finished = [r for r in finished if r.data.tags.get("sweep_id") == sweep_id]
        if since:
            start = dt.datetime.combine(since, dt.time()).timestamp() * 1000
            finished = [r for r in finished if r.info.start_time >= start]
        if models:
            finished = [r for r in finished if r.data.tags["model"] in models]
        if not finished:
            notes.append(f"task {exp.name}: no finished runs match the filters.")
        for r in finished:
            grouped[(exp.name, r.data.tags["model"])].append(r)
    entries = []
    for (task, model), runs in sorted(grouped.items()):
        monitor = runs[0].data.params.get("task.monitor", "val/loss")
        maximise = runs[0].data.params.get("task.mode", "min") == "max"
        scored = []
        for r in runs:
            value = r.data.metrics.get(f"best/{monitor}", r.data.metrics.get(monitor))
            if value is not None:
                scored.append((value, r))
        if len(scored) < len(runs):
            notes.append(f"task {task}, model {model}: {len(runs) - len(scored)} run(s) have no "
                         f"{monitor} and were left out.")
        if not scored:
            continue
        value, best = (max if maximise else min)(scored, key=lambda t: t[0])
        test_key = monitor.replace("val/", "test/", 1)
        entry = Entry(task, model, monitor, maximise, value, best.data.metrics.get(test_key),
                      best.info.run_id)
        entry.tests = [r.data.metrics[test_key] for _, r in scored if test_key in r.data.metrics]
        entry.seeds = {r.data.tags.get("seed", "?") for _, r in scored}
        entry.n_params = best.data.params.get("model.num_parameters", "")
        if best.info.end_time and best.info.start_time:
            entry.train_seconds = (best.info.end_time - best.info.start_time) / 1000
        entry.throughput = best.data.metrics.get("perf/train_items_per_sec")
        entries.append(entry)
    _rank(entries)
    return entries, notes


def _rank(entries: list[Entry]) -> None:
    by_task: dict[str, list[Entry]] = defaultdict(list)
    for e in entries:
        by_task[e.task].append(e)
    for rows in by_task.values():
        def key(e: Entry) -> float:
            # the mean test score over seeds: one lucky seed's best run must not decide
            score = e.test_mean if e.tests else e.best_val
            return -score if e.maximise else score
        for i, e in enumerate(sorted(rows, key=key), start=1):
            e.rank = i


def ranking(entries: list[Entry]) -> list[tuple[str, float, int]]:
    """(model, mean rank across tasks, number of tasks), best first."""
    ranks: dict[str, list[int]] = defaultdict(list)
    for e in entries:
        ranks[e.model].append(e.rank)
    return sorted(((m, statistics.mean(r), len(r)) for m, r in ranks.items()),
                  key=lambda t: (t[1], -t[2], t[0]))


COLUMNS = ["task", "model", "rank", "metric", "best val", "test (best run)", "test mean ± std",
           "seeds", "params", "train s", "items/s"]


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _row(e: Entry) -> list[str]:
    fmt = _fmt
    return [e.task, e.model, str(e.rank), f"{e.monitor} ({'max' if e.maximise else 'min'})",
            f"{e.best_val:.4f}", fmt(e.best_test, ".4f"), e.mean_std(), str(len(e.seeds)),
            e.n_params, fmt(e.train_seconds, ".0f"), fmt(e.throughput, ".0f")]


def task_by_model(entries: list[Entry]) -> list[str]:
    """Markdown rows: one line per task, the mean test score of every model (rank)."""
    models = sorted({e.model for e in entries})
    by_task: dict[str, dict[str, Entry]] = defaultdict(dict)
    for e in entries:
        by_task[e.task][e.model] = e
    lines = ["| task | test metric | " + " | ".join(models) + " |",
             "|" + "---|" * (len(models) + 2)]
    for task, row in sorted(by_task.items()):
        any_entry = next(iter(row.values()))
        cells = []
        for m in models:
            e = row.get(m)
            score = e.test_mean if e else None
            cells.append("" if score is None else f"{score:.4g} ({e.rank})")
        metric = f"{any_entry.test_metric} ({'max' if any_entry.maximise else 'min'})"
        lines.append(f"| {task} | {metric} | " + " | ".join(cells) + " |")
    return lines


def to_markdown(entries: list[Entry], notes: list[str]) -> str:
    lines = ["# rnnlab comparison", "", f"Generated {dt.datetime.now():%Y-%m-%d %H:%M}.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_row(e)) + " |" for e in entries]
    lines += ["", "## Task x model (mean test score over seeds, rank in brackets)", "",
              *task_by_model(entries)]
    lines += ["", "## Ranking across tasks (mean rank; 1 is best)", "",
              "| model | mean rank | tasks |", "|---|---|---|"]
    lines += [f"| {m} | {r:.2f} | {n} |" for m, r, n in ranking(entries)]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def learning_curves(client: Any, entries: list[Entry], out_dir: Path) -> list[Path]:
    """One PNG per task: the monitored metric per epoch of each model's best run."""
    from rnnlab.tracking.artifacts import plt

    paths = []
    for task in sorted({e.task for e in entries}):
        rows = [e for e in entries if e.task == task]
        fig, ax = plt.subplots(figsize=(6, 4))
        drawn = 0
        for e in rows:
            history = sorted(client.get_metric_history(e.best_run_id, e.monitor),
                             key=lambda m: (m.step, m.timestamp))
            if len(history) > 1:
                ax.plot(range(1, len(history) + 1), [m.value for m in history], marker=".",
                        label=e.model)
                drawn += 1
        if not drawn:
            plt.close(fig)
            continue
        ax.set_xlabel("validation round (epoch)")
        ax.set_ylabel(rows[0].monitor)
        ax.set_title(f"{task}: {rows[0].monitor} of each model's best run")
        ax.legend(fontsize=8)
        path = out_dir / f"curves_{task}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths


def write_report(client: Any, entries: list[Entry], notes: list[str], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "report.md"
    md.write_text(to_markdown(entries, notes), encoding="utf-8")
    table = out_dir / "report.csv"
    with open(table, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(_row(e) for e in entries)
    return [md, table, *learning_curves(client, entries, out_dir)]


def _print(entries: list[Entry], notes: list[str]) -> None:
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title="rnnlab comparison")
        for c in COLUMNS:
            table.add_column(c)
        for e in entries:
            table.add_row(*_row(e))
        Console().print(table)
        for n in notes:
            print(f"note: {n}")
    else:
        print(to_markdown(entries, notes))


def main(argv: list[str] | None = None) -> int:
    from rnnlab.tracking.mlflow import ensure_experiment, local_artifact_root, resolve_tracking_uri

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", help="default: MLFLOW_TRACKING_URI or the project's mlflow.db")
    parser.add_argument("--tasks", help="comma-separated task names (experiments)")
    parser.add_argument("--models", help="comma-separated model names")
    parser.add_argument("--sweep-id", help="only runs of this sweep (tag sweep_id)")
    parser.add_argument("--since", help="only runs started on or after YYYY-MM-DD")
    parser.add_argument("--out", help="output folder (default reports/<timestamp>)")
    parser.add_argument("--no-log", action="store_true", help="do not log the report to MLflow")
    parser.add_argument("--register", action="store_true",
                        help="register each task's best run (by its own metric) as "
                             "rnnlab-<task> and move the alias champion to it")
    args = parser.parse_args(argv)
    root = project_root()
    try:
        since = dt.date.fromisoformat(args.since) if args.since else None
    except ValueError:
        print(f"error: --since={args.since} is not a date; use YYYY-MM-DD.", file=sys.stderr)
        return 2
    uri = resolve_tracking_uri(args.tracking_uri, root)
    try:
        client = _client(uri)
        entries, notes = collect(client, args.tasks.split(",") if args.tasks else None,
                                 args.models.split(",") if args.models else None,
                                 args.sweep_id, since)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not entries:
        print("error: no finished runs with their task's metric match the filters; "
              + " ".join(notes), file=sys.stderr)
        return 2
    out_dir = Path(args.out) if args.out else root / "reports" / f"{dt.datetime.now():%Y-%m-%d_%H-%M-%S}"
    files = write_report(client, entries, notes, out_dir)
    _print(entries, notes)
    if not args.no_log:
        exp_id = ensure_experiment(client, REPORT_EXPERIMENT, local_artifact_root(uri, root))
        run = client.create_run(exp_id, run_name=f"report {out_dir.name}",
                                tags={"rnnlab_role": "report"})
        for path in files:
            client.log_artifact(run.info.run_id, str(path), "report")
        client.set_terminated(run.info.run_id, "FINISHED")
    print(f"report written to {out_dir}")
    if args.register:
        from rnnlab.tracking.registry import register_champions

        return register_champions(client, args.tasks.split(",") if args.tasks else None,
                                  args.models.split(",") if args.models else None,
                                  args.sweep_id, since)
    return 0


if __name__ == "__main__":
    sys.exit(main())
