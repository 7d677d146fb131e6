"""Which run is a task's best: the one rule the report and the registry share.

A run is chosen by its task's *validation* metric, ``best/<task.monitor>`` (the best value
of the monitored metric over the run, as training logged it) in the direction
``task.mode``; the test score is only reported beside it, because choosing by the test
set would make the test score an optimistic estimate. Ties go to the run that started
first, so choosing again never changes the answer for nothing. ``compare.py`` ranks its
entries by this rule and ``compare.py --register`` registers the run it picks, so the
report's best run and the registry's champion are the same run.

Two more rules live here, so the report and the registry cannot disagree on them:

* **Data groups.** Scores on different data are not comparable, so a task's runs are
  split by their data fingerprint (tag ``data_fingerprint``) before a best run is chosen.
  The task's own built-in data keeps the bare name (``rnnlab-ner``); any other data (a
  user's file, another built-in dataset, other split settings) is ``<task>-<fingerprint
  [:8]>`` (``rnnlab-ner-1a2b3c4d``). Which fingerprint is the built-in one is bound on the
  registered model (its tag ``data_fingerprint``) once it exists; before that it is the
  fingerprint of the earliest run that read no user file and the task's default dataset.
* **Trivial baselines** (:data:`TRIVIAL`): the validation score a model must beat before
  ``--register`` promotes it (majority class, all-``O``, the memoryless answer, seasonal
  naive); tasks without one are said to be unchecked.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from mlflow.exceptions import MlflowException
from omegaconf import OmegaConf

from rnnlab.core.paths import config_dir

REPORT_EXPERIMENT = "reports"
SKIPPED_EXPERIMENTS = ("Default", REPORT_EXPERIMENT)
FINISHED = "attributes.status = 'FINISHED'"


def task_experiments(client: Any, tasks: list[str] | None = None) -> list[Any]:
    """The store's task experiments (not MLflow's default one nor the reports), optionally
    only those named in ``tasks``."""
    return [e for e in client.search_experiments()
            if e.name not in SKIPPED_EXPERIMENTS and (not tasks or e.name in tasks)]


def task_runs(client: Any, experiment_id: str, models: list[str] | None = None,
              sweep_id: str | None = None, since: dt.date | None = None) -> list[Any]:
    """The finished training runs of one experiment that match the filters (a sweep's
    parent run trains nothing, and a run without a model tag is no training run)."""
    start = dt.datetime.combine(since, dt.time()).timestamp() * 1000 if since else None
    runs = client.search_runs([experiment_id], FINISHED, max_results=50_000)
    return [r for r in runs if r.data.tags.get("rnnlab_role") != "sweep_parent"
            and r.data.tags.get("model")
            and (not models or r.data.tags["model"] in models)
            and (not sweep_id or r.data.tags.get("sweep_id") == sweep_id)
            and (start is None or r.info.start_time >= start)]


def monitor_of(run: Any) -> str:
    """The validation metric the run's task monitors (``task.monitor``)."""
    return run.data.params.get("task.monitor", "val/loss")


def maximises(run: Any) -> bool:
    """Whether higher is better for the run's monitored metric (``task.mode``)."""
    return run.data.params.get("task.mode", "min") == "max"


def test_metric(monitor: str) -> str:
    """The test counterpart of a validation metric: ``val/acc`` -> ``test/acc``."""
    return monitor.replace("val/", "test/", 1)


def val_score(run: Any, monitor: str) -> float | None:
    """The run's selection score: ``best/<monitor>`` (else the last ``<monitor>``), None
    when it has neither or the value is NaN (a diverged run is not chosen)."""
    metrics = run.data.metrics
    value = metrics.get(f"best/{monitor}", metrics.get(monitor))
    return None if value is None or math.isnan(value) else float(value)


def order_key(value: float, start_time: int, maximise: bool) -> tuple[float, int]:
    """Sort key that puts the better validation score first, and of equal scores the run
    that started first."""
    return (-value if maximise else value, start_time)


class Choice(NamedTuple):
    """A chosen run with the metric it was chosen by."""

    run: Any
    monitor: str
    maximise: bool
    value: float  # the validation score it was chosen by

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    @property
    def model(self) -> str:
        return self.run.data.tags.get("model", "?")

    @property
    def seed(self) -> str:
        return self.run.data.tags.get("seed", "?")

    @property
    def test(self) -> float | None:
        """The run's test score on the same metric (reported, never chosen by)."""
        return self.run.data.metrics.get(test_metric(self.monitor))

    def describe(self) -> str:
        """``lstm seed 1, run 0123abcd``: how the report and the registry name the run."""
        return f"{self.model} seed {self.seed}, run {self.run_id[:8]}"


def best_run(runs: Iterable[Any], monitor: str, maximise: bool) -> Choice | None:
    """The run with the best validation score (None when no run has one)."""
    scored = [(v, r) for r in runs if (v := val_score(r, monitor)) is not None]
    if not scored:
        return None
    value, run = min(scored, key=lambda t: order_key(t[0], t[1].info.start_time, maximise))
    return Choice(run, monitor, maximise, value)


# ---- data groups ------------------------------------------------------------------------
PREFIX = "rnnlab-"  # registered models are named rnnlab-<group>
FINGERPRINT_TAG = "data_fingerprint"  # on runs (their data) and on registered models (bound)
USER_DATA_KEYS = ("train", "val", "test", "path", "locales")  # task.data.<key>: user's data
DATASET_KEYS = ("task.datamodule.dataset", "task.datamodule.corpus")  # built-in choices
UNSET = ("null", "None", "")


def fingerprint_of(run: Any) -> str:
    """The run's data fingerprint ("" for runs from before it was tagged)."""
    return run.data.tags.get(FINGERPRINT_TAG, "")


@functools.cache
def default_datasets(task: str) -> dict[str, str]:
    """``{param: value}`` of the built-in dataset the task's config chooses by default
    (``task.datamodule.dataset: msra``), read from ``conf/task/<task>.yaml``; empty for a
    task without such a choice or without a config file here."""
    path = config_dir() / "task" / f"{task}.yaml"
    if not path.is_file():
        return {}
    cfg = OmegaConf.load(path)
    out = {}
    for key in DATASET_KEYS:
        try:
            value = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
        except Exception:  # noqa: BLE001  (an interpolation into another config group)
            value = None
        if value is not None:
            out[key] = str(value)
    return out


def on_default_data(run: Any, task: str) -> bool:
    """Whether the run read the task's default built-in data: no user file (``task.data.
    train/val/test/path/locales`` unset) and the default dataset, where the task has a
    choice. Runs without these params (older runs, planted ones) count as default."""
    params = run.data.params
    if any(params.get(f"task.data.{k}", "null") not in UNSET for k in USER_DATA_KEYS):
        return False
    return all(params.get(k, v) == v for k, v in default_datasets(task).items())


@dataclass(frozen=True)
class DataGroup:
    """The runs of one task on one data fingerprint: what a champion is chosen among."""

    task: str
    fingerprint: str
    default: bool  # the task's built-in data: the bare name

    @property
    def name(self) -> str:
        """``ner`` for the task's built-in data, ``ner-1a2b3c4d`` for other data."""
        return self.task if self.default else f"{self.task}-{self.fingerprint[:8] or 'unknown'}"

    @property
    def registered_name(self) -> str:
        return f"{PREFIX}{self.name}"


def bound_fingerprint(client: Any, task: str) -> str | None:
    """The data fingerprint ``rnnlab-<task>`` was registered for (None: not registered
    yet, or registered before the tag existed)."""
    try:
        return client.get_registered_model(f"{PREFIX}{task}").tags.get(FINGERPRINT_TAG)
    except MlflowException:
        return None


def data_groups(task: str, runs: Iterable[Any], bound: str | None = None
                ) -> dict[str, list[Any]]:
    """``{group name: runs}``: the task's runs split by data fingerprint. The built-in
    data's group (bare name) is the ``bound`` fingerprint when given, else that of the
    earliest run on the task's default data."""
    by_fp: dict[str, list[Any]] = defaultdict(list)
    for r in runs:
        by_fp[fingerprint_of(r)].append(r)
    default = bound
    if default is None:
        builtin = [r for r in (r for rs in by_fp.values() for r in rs) if on_default_data(r, task)]
        if builtin:
            default = fingerprint_of(min(builtin, key=lambda r: r.info.start_time))
    return {DataGroup(task, fp, fp == default).name: rs for fp, rs in sorted(by_fp.items())}


# ---- trivial baselines ---------------------------------------------------------------------
@dataclass(frozen=True)
class Trivial:
    """The score of a trivial answer on a task's validation set, and where it is found: a
    constant, a metric or param the run logs, or the runs of a baseline model on the same
    data (compared on ``compare_on`` when the monitor is not comparable, e.g. a forecast's
    scaled window loss)."""

    what: str
    monitor: str  # the validation metric it is defined for (another one: not checked)
    constant: float | None = None
    metric: str | None = None
    param: str | None = None
    model: str | None = None
    compare_on: str | None = None


MAJORITY = Trivial("always the most frequent training class", "val/acc",
                   param="data.majority_val_acc")
TRIVIAL: dict[str, Trivial] = {
    "sentiment": MAJORITY,
    "speech": MAJORITY,
    "ner": Trivial("tagging every token O (entity F1 0)", "val/f1", constant=0.0),
    "adding": Trivial("the memoryless answer", "val/loss", metric="val/baseline_loss",
                      constant=1 / 6),
    "copy": Trivial("the memoryless answer", "val/loss", metric="val/baseline_loss"),
    "forecast": Trivial("seasonal naive", "val/loss", model="seasonal_naive",
                        compare_on="val/mae"),
}


class Verdict(NamedTuple):
    """Whether a chosen run beats its task's trivial baseline (None: not checked), and the
    sentence that says so."""

    beats: bool | None
    sentence: str


def _value_at_best(client: Any, run: Any, monitor: str, metric: str, best: float
                   ) -> float | None:
    """``metric`` at the validation round where ``monitor`` reached ``best`` (the weights
    the checkpoint keeps), else its last value."""
    try:
        steps = {m.step for m in client.get_metric_history(run.info.run_id, monitor)
                 if math.isclose(m.value, best, rel_tol=1e-9, abs_tol=1e-12)}
        values = [m for m in client.get_metric_history(run.info.run_id, metric)
                  if m.step in steps]
    except (MlflowException, AttributeError):  # a store without histories: the last value
        values = []
    if values:
        return float(values[-1].value)
    return run.data.metrics.get(metric)


def _trivial_value(client: Any, task: str, choice: Choice, trivial: Trivial,
                   experiment_id: str | None) -> tuple[float | None, str]:
    """The trivial answer's validation score, or None with the reason."""
    run = choice.run
    if trivial.param is not None:
        value = run.data.params.get(trivial.param)
        if value not in (None, *UNSET):
            return float(value), ""
        return None, f"the run does not record it (param {trivial.param})"
    if trivial.metric is not None and trivial.metric in run.data.metrics:
        return float(run.data.metrics[trivial.metric]), ""
    if trivial.constant is not None:
        return trivial.constant, ""
    if trivial.model is not None and experiment_id is not None:
        key = trivial.compare_on or trivial.monitor
        same = [r for r in task_runs(client, experiment_id, [trivial.model])
                if fingerprint_of(r) == fingerprint_of(run) and key in r.data.metrics]
        if same:
            return min(r.data.metrics[key] for r in same), ""
        return None, (f"no finished model={trivial.model} run on the same data to compare "
                      f"with")
    return None, f"the run does not record it (metric {trivial.metric})"


def check_trivial(client: Any, task: str, choice: Choice, experiment_id: str | None = None,
                  group: str | None = None) -> Verdict:
    """Whether ``choice`` beats ``task``'s trivial baseline on validation (strictly); the
    sentence names ``group`` (the data group's name, default the task)."""
    trivial = TRIVIAL.get(task)
    name = group or task
    if trivial is None:
        return Verdict(None, f"{name}: no trivial baseline known, not checked.")
    if choice.monitor != trivial.monitor:
        return Verdict(None, f"{name}: the trivial baseline ({trivial.what}) is known for "
                             f"{trivial.monitor}, and the run monitors {choice.monitor}; not "
                             f"checked.")
    base, why = _trivial_value(client, task, choice, trivial, experiment_id)
    if base is None:
        return Verdict(None, f"{name}: {why}, so {trivial.what} is not checked.")
    key, value = choice.monitor, choice.value
    if trivial.compare_on is not None:
        key = trivial.compare_on
        value = _value_at_best(client, choice.run, choice.monitor, key, choice.value)
        if value is None:
            return Verdict(None, f"{name}: the run has no {key}, so {trivial.what} is not "
                                 f"checked.")
    beats = value > base if choice.maximise else value < base
    word = "beats" if beats else "does not beat"
    return Verdict(beats, f"{name}: {choice.describe()} has {key} {value:.4f}, which {word} "
                          f"{trivial.what} ({base:.4f}) on validation.")
