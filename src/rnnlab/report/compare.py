"""``python compare.py``: one cross-task report from the MLflow store.

An entry of the report is one *configuration* of a task: the runs whose resolved config
is the same apart from the seed and run-local bookkeeping (tag ``rnnlab.config_hash``,
see :func:`config_identity`), so only seeds of one configuration are averaged; a one-epoch
smoke test never pools with a full run. ``--group-by`` chooses the keys instead. For each
entry: the best finished run by the task's own validation metric and direction (read from
the run's logged config, so a loss is minimised and an accuracy maximised), its test
score, mean +- std over the entry's runs (seeds), parameter count, training time and
throughput, and the config keys that tell it apart from the same model's other entries.
Entries are ranked within each task by their best run's validation score, the rule of
:mod:`rnnlab.report.selection` that ``--register`` follows too, so the report names the
run ``--register`` would register; test scores are reported beside it, never chosen by.
Each model's best entry is ranked across tasks. A task's runs on other data than its
built-in data (another data fingerprint: a user's file) form their own group,
``<task>-<fingerprint>``, ranked apart, as ``--register`` registers them apart. Seed
intervals need three distinct seeds; repeats of one seed are averaged, never counted as
seeds.
Writes Markdown, CSV and learning-curve plots, prints the table, and logs the files as
artifacts of a run in the ``reports`` experiment.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from rnnlab.core.errors import ConfigError, UserError
from rnnlab.core.paths import project_root
from rnnlab.report.registry import picks, register_champions
from rnnlab.report.selection import (
    REPORT_EXPERIMENT,
    Choice,
    Verdict,
    best_run,
    bound_fingerprint,
    check_trivial,
    data_groups,
    maximises,
    monitor_of,
    order_key,
    task_experiments,
    task_runs,
    test_metric,
    val_score,
)
from rnnlab.report.stats import (
    align,
    average_ranks,
    bootstrap_interval,
    cd_diagram,
    cliques,
    friedman,
    randomisation_test,
    t_interval,
)
from rnnlab.tracking.artifacts import plt
from rnnlab.tracking.config_hash import CONFIG_HASH_TAG, config_hash, config_identity
from rnnlab.tracking.mlflow import (
    check_reachable,
    ensure_experiment,
    local_artifact_root,
    resolve_tracking_uri,
)


def run_config_hash(run: Any) -> str:
    """A run's configuration digest: its tag, or (runs from before the tag) derived from
    its logged params and data fingerprint the same way."""
    tagged = run.data.tags.get(CONFIG_HASH_TAG)
    if tagged:
        return tagged
    return config_hash(config_identity(run.data.params, run.data.tags.get("data_fingerprint")))


def _group_value(run: Any, key: str) -> str:
    """A ``--group-by`` key's value in a run: a param (config key), else a tag."""
    if key in run.data.params:
        return run.data.params[key]
    return run.data.tags.get(key, "(unset)")


@dataclass
class Entry:
    """One (task, model) row of the report."""

    task: str  # the data group: the task on its built-in data, else <task>-<fingerprint>
    model: str
    monitor: str
    maximise: bool
    best_val: float
    best_test: float | None
    best_run_id: str
    best_seed: str = "?"
    best_start: int = 0  # the best run's start time: of equal scores the earlier ranks first
    tests: list[float] = field(default_factory=list)
    seeds: set[str] = field(default_factory=set)
    # the test scores by seed (repeats of one seed are several values of one key)
    seed_tests: dict[str, list[float]] = field(default_factory=dict)
    n_params: str = ""
    train_seconds: float | None = None
    throughput: float | None = None
    rank: int = 0
    config_hash: str = ""
    # the settings of the entry's best run (config_identity), or its --group-by values
    config: dict[str, str] = field(default_factory=dict)
    run_ids: list[str] = field(default_factory=list)
    # what tells this entry apart from the same model's other entries in its task
    differs: dict[str, str] = field(default_factory=dict)
    fingerprint: str = ""  # the data fingerprint of the best run
    # significance (filled by significance()): the best run's bootstrap interval, the
    # t interval over seeds, the paired test against the task's best entry
    ci: Any = None
    seed_ci: Any = None  # None with ci_done: fewer than MIN_SEEDS distinct seeds
    ci_done: bool = False
    p_value: float | None = None

    @property
    def label(self) -> str:
        """The model, with the settings that set it apart when the model has several
        entries in the task."""
        if not self.differs:
            return self.model
        return f"{self.model} ({_short_config(self.differs)})"

    @property
    def test_metric(self) -> str:
        return test_metric(self.monitor)

    @property
    def test_mean(self) -> float | None:
        """The mean test score over seeds (None when no run has one)."""
        return statistics.mean(self.tests) if self.tests else None

    def seed_means(self) -> list[float]:
        """One test score per distinct seed (the mean of its repeats): what a seed
        interval is computed over, so a repeated seed is not counted twice."""
        return [statistics.mean(v) for _, v in sorted(self.seed_tests.items())]

    def seed_count(self, sep: str = " (") -> str:
        """``3 seeds``, ``1 seed (2 repeats)``: the distinct seeds, and the runs that share
        their seed with another run (``sep=", "`` for a table cell: ``1 seed, 2 repeats``)."""
        n = len(self.seed_tests)
        repeats = sum(len(v) for v in self.seed_tests.values() if len(v) > 1)
        text = f"{n} seed{'' if n == 1 else 's'}"
        if not repeats:
            return text
        return f"{text}{sep}{repeats} repeats" + (")" if sep == " (" else "")

    def mean_std(self) -> str:
        if not self.tests:
            return ""
        if len(self.tests) == 1:
            return f"{self.tests[0]:.4f}"
        return f"{statistics.mean(self.tests):.4f} ± {statistics.stdev(self.tests):.4f}"


def _client(uri: str) -> MlflowClient:
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
            sweep_id: str | None = None, since: dt.date | None = None,
            group_by: list[str] | None = None) -> tuple[list[Entry], list[str]]:
    """Rows of the report and notes on what was skipped.

    Runs of one task form one entry when they share a configuration (their config hash);
    with ``group_by``, when they share the model and the values of those keys (params such
    as ``trainer.max_epochs``, or tags), so ``group_by=["model"]`` pools by model name."""
    notes: list[str] = []
    experiments = task_experiments(client, tasks)
    if not experiments:
        raise UserError("the MLflow store has no task experiments"
                        + (f" named {', '.join(tasks)}" if tasks else "")
                        + "; train something first (python train.py ...).")
    keys = [k for k in (group_by or []) if k != "model"]
    grouped: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
    for exp in experiments:
        finished = task_runs(client, exp.experiment_id, models, sweep_id, since)
        if not finished:
            notes.append(f"task {exp.name}: no finished runs match the filters.")
        # runs on other data rank apart, named as --register names them
        groups = data_groups(exp.name, finished, bound_fingerprint(client, exp.name))
        for group, members in groups.items():
            for r in members:
                if group_by is None:
                    key = run_config_hash(r)
                else:
                    key = json.dumps([_group_value(r, k) for k in keys])
                grouped[(group, r.data.tags["model"], key)].append(r)
    considered = [r for runs in grouped.values() for r in runs]
    for k in keys:
        if considered and not any(k in r.data.params or k in r.data.tags for r in considered):
            raise UserError(f"--group-by key {k!r} is neither a config key nor a tag of any "
                            f"matching run; config keys are written as logged, e.g. "
                            f"trainer.max_epochs or model.hidden_size.")
    entries = []
    for (task, model, key), runs in sorted(grouped.items()):
        monitor, maximise = monitor_of(runs[0]), maximises(runs[0])
        scored = [r for r in runs if val_score(r, monitor) is not None]
        if len(scored) < len(runs):
            notes.append(f"task {task}, model {model}: {len(runs) - len(scored)} run(s) have no "
                         f"{monitor} and were left out.")
        choice = best_run(scored, monitor, maximise)
        if choice is None:
            continue
        best, test_key = choice.run, test_metric(monitor)
        entry = Entry(task, model, monitor, maximise, choice.value, choice.test, choice.run_id,
                      choice.seed, best.info.start_time)
        entry.tests = [r.data.metrics[test_key] for r in scored if test_key in r.data.metrics]
        entry.seeds = {r.data.tags.get("seed", "?") for r in scored}
        for r in scored:
            if test_key in r.data.metrics:
                entry.seed_tests.setdefault(r.data.tags.get("seed", "?"), []).append(
                    r.data.metrics[test_key])
        entry.run_ids = [r.info.run_id for r in scored]
        entry.n_params = best.data.params.get("model.num_parameters", "")
        if best.info.end_time and best.info.start_time:
            entry.train_seconds = (best.info.end_time - best.info.start_time) / 1000
        entry.throughput = best.data.metrics.get("perf/train_items_per_sec")
        entry.fingerprint = best.data.tags.get("data_fingerprint", "")
        if group_by is None:
            entry.config_hash = key
            entry.config = config_identity(best.data.params, best.data.tags.get("data_fingerprint"))
        else:
            entry.config = dict(zip(keys, json.loads(key), strict=True))
            entry.config_hash = config_hash(entry.config)
        entries.append(entry)
    _describe_differences(entries)
    _rank(entries)
    return entries, notes


def _describe_differences(entries: list[Entry]) -> None:
    """For each model with several entries in a task: the settings in which they differ
    (a key one entry lacks counts as a difference)."""
    by_model: dict[tuple[str, str], list[Entry]] = defaultdict(list)
    for e in entries:
        by_model[(e.task, e.model)].append(e)
    for rows in by_model.values():
        if len(rows) < 2:
            continue
        keys = sorted({k for e in rows for k in e.config})
        differing = [k for k in keys if len({e.config.get(k) for e in rows}) > 1]
        for e in rows:
            e.differs = {k: e.config.get(k, "(unset)") for k in differing}
            if not e.differs:  # same settings on the shown keys: the digest tells them apart
                e.differs = {"config": e.config_hash}


def _short_config(settings: Mapping[str, str], limit: int = 4, width: int = 40) -> str:
    """``trainer.max_epochs=1, trainer.limit_train_batches=20 (+2 more)`` for a table cell."""
    parts = []
    for k, v in list(settings.items())[:limit]:
        v = v if len(v) <= width else v[: width - 1] + "…"
        parts.append(f"{k}={v}")
    more = len(settings) - limit
    return ", ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _rank(entries: list[Entry]) -> None:
    by_task: dict[str, list[Entry]] = defaultdict(list)
    for e in entries:
        by_task[e.task].append(e)
    for rows in by_task.values():
        # by the best run's validation score (the selection rule), so the first entry holds
        # the run --register picks; its test score is reported, never ranked by
        ordered = sorted(rows, key=lambda e: order_key(e.best_val, e.best_start, e.maximise))
        for i, e in enumerate(ordered, start=1):
            e.rank = i


def model_ranks(entries: list[Entry]) -> dict[str, dict[str, tuple[Entry, int]]]:
    """``{task: {model: (its best entry, rank among the models)}}``: a model with several
    configurations in a task is represented by its best one across tasks."""
    out: dict[str, dict[str, tuple[Entry, int]]] = {}
    by_task: dict[str, list[Entry]] = defaultdict(list)
    for e in entries:
        by_task[e.task].append(e)
    for task, rows in by_task.items():
        best: dict[str, Entry] = {}
        for e in sorted(rows, key=lambda e: e.rank):
            best.setdefault(e.model, e)
        ordered = sorted(best.values(), key=lambda e: e.rank)
        out[task] = {e.model: (e, i) for i, e in enumerate(ordered, start=1)}
    return out


def ranking(entries: list[Entry]) -> list[tuple[str, float, int]]:
    """(model, mean rank across tasks, number of tasks), best first; each model ranked by
    its best entry of each task."""
    ranks: dict[str, list[int]] = defaultdict(list)
    for row in model_ranks(entries).values():
        for model, (_, rank) in row.items():
            ranks[model].append(rank)
    return sorted(((m, statistics.mean(r), len(r)) for m, r in ranks.items()),
                  key=lambda t: (t[1], -t[2], t[0]))


COLUMNS = ["task", "model", "config", "rank", "metric", "best val", "test (best run)",
           "test 95% CI", "test mean ± std", "seeds 95% CI", "p vs best", "seeds", "params",
           "train s", "items/s", "config hash"]


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _row(e: Entry) -> list[str]:
    fmt = _fmt
    ci = f"[{e.ci.low:.4f}, {e.ci.high:.4f}]" if e.ci is not None else ""
    if e.seed_ci is not None:
        seed_ci = f"[{e.seed_ci.low:.4f}, {e.seed_ci.high:.4f}]"
    else:  # computed (significance ran) but too few seeds, or not computed
        seed_ci = f"n/a ({e.seed_count(', ')})" if e.ci_done and e.seed_tests else ""
    p = "best" if e.rank == 1 and e.ci is not None else _fmt(e.p_value, ".3g")
    return [e.task, e.model, _short_config(e.differs), str(e.rank),
            f"{e.monitor} ({'max' if e.maximise else 'min'})",
            f"{e.best_val:.4f}", fmt(e.best_test, ".4f"), ci, e.mean_std(), seed_ci, p,
            str(len(e.seeds)), e.n_params, fmt(e.train_seconds, ".0f"), fmt(e.throughput, ".0f"),
            e.config_hash]


def chosen_runs(entries: list[Entry], chosen: Mapping[str, Choice],
                verdicts: Mapping[str, Verdict] | None = None) -> list[str]:
    """One sentence per task (data group): its best run by the validation metric, with the
    test score beside it, and the run ``--register`` would register (``chosen``, from
    :func:`rnnlab.report.registry.picks`): the same run, unless the best one logged no
    model; with ``verdicts``, whether that run beats the task's trivial baseline."""
    lines = []
    for task in sorted({e.task for e in entries}):
        top = min((e for e in entries if e.task == task), key=lambda e: e.rank)
        test = "" if top.best_test is None else f", {top.test_metric} {top.best_test:.4f}"
        line = (f"{task}: best by {top.monitor} ({'max' if top.maximise else 'min'}) is "
                f"{top.label} seed {top.best_seed}, run {top.best_run_id[:8]}: {top.monitor} "
                f"{top.best_val:.4f}{test}; ")
        pick = chosen.get(task)
        if pick is None:
            line += "would register: nothing (no run with a logged model)."
        elif pick.run_id == top.best_run_id:
            line += f"would register: {pick.describe()}."
        else:
            line += (f"would register: {pick.describe()} (the best run with a logged model, "
                     f"{pick.monitor} {pick.value:.4f}).")
        verdict = (verdicts or {}).get(task)
        if verdict is not None:
            refused = " --register refuses it without --force." if verdict.beats is False else ""
            line += f" Trivial baseline: {verdict.sentence.split(': ', 1)[1]}{refused}"
        lines.append(line)
    return lines


def task_by_model(entries: list[Entry]) -> list[str]:
    """Markdown rows: one line per task, the mean test score of every model's best entry
    (its rank among the models)."""
    models = sorted({e.model for e in entries})
    lines = ["| task | test metric | " + " | ".join(models) + " |",
             "|" + "---|" * (len(models) + 2)]
    for task, row in sorted(model_ranks(entries).items()):
        any_entry = next(iter(row.values()))[0]
        cells = []
        for m in models:
            e, rank = row.get(m, (None, 0))
            score = e.test_mean if e else None
            cells.append("" if score is None else f"{score:.4g} ({rank})")
        metric = f"{any_entry.test_metric} ({'max' if any_entry.maximise else 'min'})"
        lines.append(f"| {task} | {metric} | " + " | ".join(cells) + " |")
    return lines


# ---- significance ----------------------------------------------------------------------
PREDICTIONS_DIR = "predictions"
MIN_SEEDS = 3  # a t interval over two seeds is wider than the scale it is read on


@dataclass
class Significance:
    """What the report says about noise: sentences per task and across tasks, and the
    critical-difference diagram."""

    alpha: float
    resamples: int
    by_task: dict[str, list[str]] = field(default_factory=dict)
    across: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)


def load_predictions(client: Any, run_id: str, cache: Path) -> tuple[Any, dict] | None:
    """A run's ``predictions/test.parquet`` and its description, or None when the run has
    none (runs from before the lab wrote them, or ``max_predictions=0``)."""
    try:
        names = {a.path for a in client.list_artifacts(run_id, PREDICTIONS_DIR)}
        if {f"{PREDICTIONS_DIR}/test.parquet", f"{PREDICTIONS_DIR}/test.json"} - names:
            return None
        dest = cache / run_id
        dest.mkdir(parents=True, exist_ok=True)
        local = Path(client.download_artifacts(run_id, PREDICTIONS_DIR, str(dest)))
        meta = json.loads((local / "test.json").read_text(encoding="utf-8"))
        return pd.read_parquet(local / "test.parquet"), meta
    except Exception:  # an unreadable artifact is reported as missing, not as a crash
        return None


def _better(a: float, b: float, maximise: bool) -> bool:
    return a > b if maximise else a < b


def _task_significance(client: Any, rows: list[Entry], cache: Path, resamples: int,
                       alpha: float, seed: int) -> list[str]:
    """Intervals for each entry of one task, the paired test of each against the task's
    best entry, and the sentences that say what they mean."""
    rows = sorted(rows, key=lambda e: e.rank)
    metric = rows[0].test_metric
    loaded: dict[str, tuple[Any, dict, dict] | None] = {}
    missing = []
    for e in rows:
        e.ci_done = True
        means = e.seed_means()
        e.seed_ci = t_interval(means, alpha) if len(means) >= MIN_SEEDS else None
        found = load_predictions(client, e.best_run_id, cache)
        spec = (found[1].get("metrics") or {}).get(metric) if found else None
        if found is None or spec is None:
            loaded[e.label] = None
            missing.append(e.label)
            continue
        loaded[e.label] = (found[0], found[1], spec)
        e.ci = bootstrap_interval(found[0], spec, resamples, alpha, seed)
    best = rows[0]
    out = []
    direction = "higher" if best.maximise else "lower"
    if best.ci is not None:
        sampled = " (a sample of the test set)" if loaded[best.label][1].get("sampled") else ""
        out.append(f"Best: **{best.label}**, {metric} {best.ci.value:.4f} with 95% bootstrap "
                   f"interval [{best.ci.low:.4f}, {best.ci.high:.4f}] over {best.ci.n} test "
                   f"examples{sampled} ({direction} is better).")
    else:
        out.append(f"Best: **{best.label}** ({metric}); it has no per-example predictions, so "
                   f"no interval and no paired test against it.")
    for e in rows:
        if e.seed_ci is not None:
            out.append(f"{e.label} over {e.seed_count()}: mean {e.seed_ci.value:.4f}, 95% "
                       f"t interval [{e.seed_ci.low:.4f}, {e.seed_ci.high:.4f}].")
        elif len(e.tests) > 1:
            out.append(f"{e.label} over {e.seed_count()}: no seed interval (it needs "
                       f"{MIN_SEEDS} distinct seeds).")
    for e in rows[1:]:
        if loaded[best.label] is None or loaded[e.label] is None:
            continue
        if e.fingerprint != best.fingerprint:
            out.append(f"{e.label} was tested on other data (fingerprint {e.fingerprint or '?'} "
                       f"vs {best.fingerprint or '?'}): no paired test.")
            continue
        a, b, dropped = align(loaded[best.label][0], loaded[e.label][0])
        if len(a) < 2:
            out.append(f"{e.label} and {best.label} share fewer than two test examples: no "
                       f"paired test.")
            continue
        test = randomisation_test(a, b, loaded[best.label][2], resamples, seed)
        e.p_value = test.p_value
        extra = f"; {dropped} examples only one of them has were left out" if dropped else ""
        where = f"the same {test.n} test examples{extra}"
        if test.p_value < alpha:
            word = "worse" if _better(test.a, test.b, best.maximise) else "better"
            out.append(f"{e.label} ({test.b:.4f}) is **significantly {word}** than {best.label} "
                       f"({test.a:.4f}) on {where}: paired randomisation test p = "
                       f"{test.p_value:.3g} < {alpha}.")
        else:
            out.append(f"{e.label} ({test.b:.4f}) and {best.label} ({test.a:.4f}) are **not "
                       f"significantly different** on {where}: p = {test.p_value:.3g} >= "
                       f"{alpha}, so their order may be noise.")
    missing = [m for m in missing if m != best.label]  # said above
    if missing:
        out.append(f"No per-example predictions for {', '.join(missing)} (runs logged before "
                   f"predictions/test.parquet, or max_predictions=0): no interval or paired "
                   f"test.")
    return out


def _across_tasks(entries: list[Entry], out_dir: Path, alpha: float) -> tuple[list[str], list[Path]]:
    """The Friedman test over the models' ranks on the tasks they all ran, the Nemenyi
    critical difference, and the CD diagram."""
    table = model_ranks(entries)
    tasks = sorted(table)
    scored = {t: {m: e for m, (e, _) in row.items()
                  if (e.test_mean if e.tests else None) is not None} for t, row in table.items()}
    every = sorted(set.intersection(*(set(r) for r in scored.values()))) if scored else []
    left_out = sorted({m for r in scored.values() for m in r} - set(every))
    if len(tasks) < 2 or len(every) < 2:
        return ([f"The Friedman test needs at least two tasks and two models that ran on all "
                 f"of them; here {len(tasks)} task(s) and {len(every)} such model(s)."], [])
    scores = np.array([[scored[t][m].test_mean for m in every] for t in tasks])
    ranks = average_ranks(scores, [scored[t][every[0]].maximise for t in tasks])
    fr = friedman(ranks, alpha)
    verdict = ("the models' ranks differ significantly" if fr.p_value < alpha else
               "no significant difference between the models' ranks")
    lines = [f"Friedman test over {fr.n_tasks} tasks ({', '.join(tasks)}) and {fr.n_models} "
             f"models, each model by its best configuration's mean test score: chi² = "
             f"{fr.statistic:.3f}, p = {fr.p_value:.3g}: {verdict} at {alpha}."]
    if left_out:
        lines.append(f"Left out (not run on every task): {', '.join(left_out)}.")
    lines.append(f"Nemenyi critical difference at {alpha}: CD = {fr.cd:.3f} in mean rank "
                 f"(Demšar 2006).")
    pairs_sig, pairs_not = [], []
    for i in range(len(every)):
        for j in range(i + 1, len(every)):
            d = abs(fr.mean_ranks[i] - fr.mean_ranks[j])
            text = f"{every[i]} vs {every[j]} (|ΔR| = {d:.2f})"
            (pairs_sig if d > fr.cd else pairs_not).append(text)
    if fr.p_value >= alpha:
        lines.append("As the Friedman test does not reject equal ranks, no pair is called "
                     "significantly different.")
        pairs_not, pairs_sig = pairs_sig + pairs_not, []
    if pairs_sig:
        lines.append("Significantly different (mean ranks further apart than the CD): "
                     + "; ".join(pairs_sig) + ".")
    if pairs_not:
        lines.append("Not significantly different: " + "; ".join(pairs_not) + ".")
    if fr.n_tasks < 10:
        lines.append(f"With {fr.n_tasks} tasks the test has little power (Demšar suggests 10 "
                     f"or more), so a non-significant result is weak evidence of no difference.")
    fig = cd_diagram(every, list(fr.mean_ranks), fr.cd,
                     f"critical difference (Nemenyi, alpha={alpha}), {fr.n_tasks} tasks")
    path = out_dir / "cd_diagram.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    groups = cliques(every, list(fr.mean_ranks), fr.cd)
    if groups:
        lines.append("Groups whose members do not differ significantly (the bars of the "
                     "diagram): " + "; ".join("{" + ", ".join(g) + "}" for g in groups) + ".")
    return lines, [path]


def significance(client: Any, entries: list[Entry], out_dir: Path,
                 resamples: int = 1000, alpha: float = 0.05, seed: int = 0) -> Significance:
    """Intervals, paired tests and the cross-task Friedman/Nemenyi analysis."""
    sig = Significance(alpha, resamples)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_task: dict[str, list[Entry]] = defaultdict(list)
    for e in entries:
        by_task[e.task].append(e)
    quiet = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}  # one bar per run is noise
    before = {k: os.environ.get(k) for k in quiet}
    os.environ.update(quiet)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for task, rows in sorted(by_task.items()):
                sig.by_task[task] = _task_significance(client, rows, Path(tmp), resamples,
                                                       alpha, seed)
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    sig.across, sig.figures = _across_tasks(entries, out_dir, alpha)
    return sig


def significance_markdown(sig: Significance) -> list[str]:
    lines = ["", "## What is significant", "",
             f"Intervals: 95% percentile bootstrap over the best run's test examples "
             f"({sig.resamples} resamples; sentences are resampled whole, and F1, BLEU and "
             f"error rates are recomputed from the resampled counts), and the Student t "
             f"interval over seeds. `p vs best`: paired approximate randomisation test "
             f"({sig.resamples} shuffles) of each entry's best run against the task's best "
             f"entry's best run on the same test examples; not corrected for multiple "
             f"comparisons. Seed intervals need {MIN_SEEDS} distinct seeds (repeats of a seed "
             f"are averaged first); with fewer they read n/a."]
    for task, sentences in sig.by_task.items():
        lines += ["", f"### {task}", ""] + [f"- {s}" for s in sentences]
    lines += ["", "### Across tasks", ""] + [f"- {s}" for s in sig.across]
    lines += ["", *(f"![critical difference diagram]({p.name})" for p in sig.figures)]
    return lines


def to_markdown(entries: list[Entry], notes: list[str], sig: Significance | None = None,
                chosen: Mapping[str, Choice] | None = None,
                verdicts: Mapping[str, Verdict] | None = None) -> str:
    lines = ["# rnnlab comparison", "", f"Generated {dt.datetime.now():%Y-%m-%d %H:%M}.", "",
             "An entry is one configuration of a model: its runs differ only in the seed "
             "(or, with --group-by, share the chosen keys). `config` shows what sets it apart "
             "from the same model's other entries.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_row(e)) + " |" for e in entries]
    lines += ["", "## Best run per task (by the validation metric; what --register would "
              "register)", "", *(f"- {line}" for line in chosen_runs(entries, chosen or {}, verdicts))]
    lines += ["", "## Task x model (each model's best configuration by validation: mean test "
              "score over seeds, rank in brackets)", "",
              *task_by_model(entries)]
    lines += ["", "## Ranking across tasks (mean rank; 1 is best)", "",
              "| model | mean rank | tasks |", "|---|---|---|"]
    lines += [f"| {m} | {r:.2f} | {n} |" for m, r, n in ranking(entries)]
    if sig is not None:
        lines += significance_markdown(sig)
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def learning_curves(client: Any, entries: list[Entry], out_dir: Path) -> list[Path]:
    """One PNG per task: the monitored metric per epoch of each model's best run."""
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
                        label=e.label)
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


def write_report(client: Any, entries: list[Entry], notes: list[str], out_dir: Path,
                 sig: Significance | None = None,
                 chosen: Mapping[str, Choice] | None = None,
                 verdicts: Mapping[str, Verdict] | None = None) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "report.md"
    md.write_text(to_markdown(entries, notes, sig, chosen, verdicts), encoding="utf-8")
    table = out_dir / "report.csv"
    with open(table, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(_row(e) for e in entries)
    figures = sig.figures if sig is not None else []
    return [md, table, *figures, *learning_curves(client, entries, out_dir)]


def _print(entries: list[Entry], notes: list[str], sig: Significance | None = None,
           chosen: Mapping[str, Choice] | None = None,
           verdicts: Mapping[str, Verdict] | None = None) -> None:
    if sys.stdout.isatty():  # rich only draws for a terminal
        # rich: only on a terminal
        from rich.console import Console
        from rich.table import Table

        table = Table(title="rnnlab comparison")
        for c in COLUMNS:
            table.add_column(c)
        for e in entries:
            table.add_row(*_row(e))
        Console().print(table)
        print("\n".join(chosen_runs(entries, chosen or {}, verdicts)))
        if sig is not None:
            print("\n".join(significance_markdown(sig)[1:]))
        for n in notes:
            print(f"note: {n}")
    else:
        print(to_markdown(entries, notes, sig, chosen, verdicts))


def _keys(text: str | None) -> list[str] | None:
    if text is None:
        return None
    keys = [k.strip() for k in text.split(",") if k.strip()]
    if not keys:
        raise UserError("--group-by is empty; give comma-separated config keys such as "
                        "trainer.max_epochs, or leave it out to group by the whole config.")
    return keys


def report_run_text(argv: list[str], args: argparse.Namespace, entries: list[Entry],
                    out_dir: Path) -> tuple[str, str]:
    """The report run's name (when and over what: ``report 2026-05-01 14:03 tasks=ner``)
    and description (the command, what it compared, where the files are), so the runs of
    the ``reports`` experiment can be told apart."""
    filters = [f"{flag}={value}" for flag, value in (
        ("tasks", args.tasks), ("models", args.models), ("sweep", args.sweep_id),
        ("since", args.since), ("group-by", args.group_by)) if value]
    name = f"report {dt.datetime.now():%Y-%m-%d %H:%M} {' '.join(filters) or 'all runs'}"
    tasks = sorted({e.task for e in entries})
    models = sorted({e.model for e in entries})
    description = (f"`python compare.py {' '.join(argv)}`: {len(entries)} entries over "
                   f"{', '.join(tasks)} (models {', '.join(models)}); the report's files are "
                   f"this run's artifacts and {out_dir}.")
    return name[:250], description[:5000]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", help="default: MLFLOW_TRACKING_URI or the project's mlflow.db")
    parser.add_argument("--tasks", help="comma-separated task names (experiments)")
    parser.add_argument("--models", help="comma-separated model names")
    parser.add_argument("--sweep-id", help="only runs of this sweep (tag sweep_id)")
    parser.add_argument("--since", help="only runs started on or after YYYY-MM-DD")
    parser.add_argument("--out", help="output folder (default reports/<timestamp>)")
    parser.add_argument("--no-log", action="store_true", help="do not log the report to MLflow")
    parser.add_argument("--group-by", metavar="KEYS",
                        help="comma-separated config keys (e.g. trainer.max_epochs,"
                             "model.hidden_size) or tags: runs of one model with equal values "
                             "form one entry (default: the whole config but the seed; "
                             "--group-by model pools every run of a model)")
    parser.add_argument("--resamples", type=int, default=1000, metavar="N",
                        help="bootstrap resamples and randomisation-test shuffles (default "
                             "1000; 0 skips intervals and tests)")
    parser.add_argument("--register", action="store_true",
                        help="register each task's best run (by its validation metric: the "
                             "run the report names) as rnnlab-<task> and move the alias "
                             "champion to it; runs on other data than the task's built-in "
                             "data are registered as rnnlab-<task>-<fingerprint>")
    parser.add_argument("--force", action="store_true",
                        help="with --register: register a best model even when it does not "
                             "beat its task's trivial baseline on validation")
    args = parser.parse_args(argv)
    root = project_root()
    try:
        since = dt.date.fromisoformat(args.since) if args.since else None
    except ValueError:
        print(f"error: --since={args.since} is not a date; use YYYY-MM-DD.", file=sys.stderr)
        return 2
    uri = resolve_tracking_uri(args.tracking_uri, root)
    tasks = args.tasks.split(",") if args.tasks else None
    models = args.models.split(",") if args.models else None
    try:
        client = _client(uri)
        entries, notes = collect(client, tasks, models, args.sweep_id, since,
                                 _keys(args.group_by))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not entries:
        print("error: no finished runs with their task's metric match the filters; "
              + " ".join(notes), file=sys.stderr)
        return 2
    out_dir = Path(args.out) if args.out else root / "reports" / f"{dt.datetime.now():%Y-%m-%d_%H-%M-%S}"
    if args.resamples < 0:
        print(f"error: --resamples={args.resamples} must be 0 (no tests) or a positive count.",
              file=sys.stderr)
        return 2
    sig = significance(client, entries, out_dir, args.resamples) if args.resamples else None
    found, _ = picks(client, tasks, models, args.sweep_id, since)  # what --register takes
    chosen = {p.group: p.choice for p in found}
    verdicts = {p.group: check_trivial(client, p.task, p.choice, p.experiment_id, p.group)
                for p in found}
    files = write_report(client, entries, notes, out_dir, sig, chosen, verdicts)
    _print(entries, notes, sig, chosen, verdicts)
    if not args.no_log:
        exp_id = ensure_experiment(client, REPORT_EXPERIMENT, local_artifact_root(uri, root))
        name, description = report_run_text(argv if argv is not None else sys.argv[1:],
                                            args, entries, out_dir)
        run = client.create_run(exp_id, run_name=name, tags={
            "rnnlab_role": "report", "mlflow.note.content": description})
        for path in files:
            client.log_artifact(run.info.run_id, str(path), "report")
        client.set_terminated(run.info.run_id, "FINISHED")
    print(f"report written to {out_dir}")
    if args.register:
        return register_champions(client, tasks, models, args.sweep_id, since, args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
