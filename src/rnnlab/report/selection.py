"""Which run is a task's best: the one rule the report and the registry share.

A run is chosen by its task's *validation* metric, ``best/<task.monitor>`` (the best value
of the monitored metric over the run, as training logged it) in the direction
``task.mode``; the test score is only reported beside it, because choosing by the test
set would make the test score an optimistic estimate. Ties go to the run that started
first, so choosing again never changes the answer for nothing. ``compare.py`` ranks its
entries by this rule and ``compare.py --register`` registers the run it picks, so the
report's best run and the registry's champion are the same run.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from typing import Any, NamedTuple

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
