"""The model registry: each task's best model as ``rnnlab-<task>@champion``.

``python compare.py --register`` looks at every finished run that logged a model (tag
``rnnlab.model_uri``), picks each task's best one by the rule of
:mod:`rnnlab.report.selection` (the task's validation metric ``best/<task.monitor>`` in
the direction ``task.mode``: the same run the report names as the one it would register),
registers its model as a version of the registered model ``rnnlab-<task>`` (once:
registering again finds the same version) and moves the alias ``champion`` to it. So
"the current best NER tagger" has a name: ``models:/rnnlab-ner@champion``.
Every command that takes a checkpoint path also takes such a URI
(:func:`rnnlab.inference.load_checkpoint`).
"""

from __future__ import annotations

import datetime as dt
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any

from mlflow.exceptions import MlflowException

from rnnlab.report.selection import (
    Choice,
    best_run,
    maximises,
    monitor_of,
    task_experiments,
    task_runs,
)
from rnnlab.serving.publish import MODEL_URI_TAG
from rnnlab.tracking.mlflow import quiet_mlflow, using_tracking_uri

PREFIX = "rnnlab-"
ALIAS = "champion"


@dataclass
class Champion:
    """One task's best run and the registry version that now carries the alias."""

    task: str
    name: str
    version: str
    run_id: str
    model: str
    seed: str
    monitor: str
    maximise: bool
    value: float
    model_uri: str
    previous: str | None = None  # the version the alias pointed at before, if another

    def line(self) -> str:
        moved = "" if self.previous in (None, self.version) else f" (was version {self.previous})"
        kept = " (unchanged)" if self.previous == self.version else ""
        return (f"{self.name}@{ALIAS} -> version {self.version}: {self.model} seed {self.seed}, "
                f"{self.monitor} {self.value:.4f} ({'max' if self.maximise else 'min'}), run "
                f"{self.run_id[:8]}{moved}{kept}")


def best_runs(client: Any, tasks: list[str] | None = None, models: list[str] | None = None,
              sweep_id: str | None = None, since: dt.date | None = None
              ) -> tuple[dict[str, Choice], list[str]]:
    """``{task: Choice(run, monitor, maximise, value)}``: each task's best run with a
    logged model (:func:`rnnlab.report.selection.best_run`), and notes on the tasks that
    have none. The report names these runs too, so both say the same."""
    notes: list[str] = []
    chosen: dict[str, Choice] = {}
    for exp in task_experiments(client, tasks):
        runs = [r for r in task_runs(client, exp.experiment_id, models, sweep_id, since)
                if r.data.tags.get(MODEL_URI_TAG)]
        if not runs:
            notes.append(f"task {exp.name}: no finished run with a logged model matches "
                         f"(runs from before models were logged have none).")
            continue
        # the task's metric: what its runs monitor (an override of task.monitor on a few
        # runs makes them incomparable, so they are left out)
        monitor, _ = Counter(monitor_of(r) for r in runs).most_common(1)[0]
        same = [r for r in runs if monitor_of(r) == monitor]
        if len(same) < len(runs):
            notes.append(f"task {exp.name}: {len(runs) - len(same)} run(s) monitor another "
                         f"metric than {monitor} and were left out.")
        choice = best_run(same, monitor, maximises(same[0]))
        if choice is None:
            notes.append(f"task {exp.name}: no run with a logged model has {monitor}.")
            continue
        chosen[exp.name] = choice
    return chosen, notes


def _version_of(client: Any, name: str, model_uri: str, run_id: str) -> Any:
    """The version of ``name`` that already holds this model, if any."""
    for v in client.search_model_versions(f"name = '{name}'"):
        if v.source == model_uri or (v.run_id == run_id and
                                     getattr(v, "model_id", None) == model_uri.split("/")[-1]):
            return v
    return None


def register(client: Any, task: str, run: Any, monitor: str, maximise: bool,
             value: float) -> Champion:
    """Register ``run``'s model under ``rnnlab-<task>`` and point ``champion`` at it."""
    name, uri = f"{PREFIX}{task}", run.data.tags[MODEL_URI_TAG]
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, tags={"task": task, "monitor": monitor},
            description=f"The best rnnlab model of task={task} by {monitor} "
                        f"({'max' if maximise else 'min'}); @{ALIAS} is moved by "
                        f"python compare.py --register.")
    try:
        previous = client.get_model_version_by_alias(name, ALIAS).version
    except MlflowException:
        previous = None
    version = _version_of(client, name, uri, run.info.run_id)
    if version is None:
        tags = {"model": run.data.tags.get("model", ""), "seed": run.data.tags.get("seed", ""),
                "monitor": monitor, "value": f"{value:.6g}"}
        version = client.create_model_version(
            name, uri, run_id=run.info.run_id, tags=tags, model_id=uri.split("/")[-1],
            description=f"{run.info.run_name}: {monitor} = {value:.4f}")
    client.set_registered_model_alias(name, ALIAS, version.version)
    return Champion(task, name, str(version.version), run.info.run_id,
                    run.data.tags.get("model", "?"), run.data.tags.get("seed", "?"), monitor,
                    maximise, value, uri, None if previous is None else str(previous))


def register_champions(client: Any, tasks: list[str] | None = None,
                       models: list[str] | None = None, sweep_id: str | None = None,
                       since: dt.date | None = None) -> int:
    """``compare.py --register``: register each task's best run, print what moved and
    return the exit code (2 with one sentence when nothing can be registered)."""
    chosen, notes = best_runs(client, tasks, models, sweep_id, since)
    if not chosen:
        print("error: no finished run with a logged model matches the filters, so nothing "
              "was registered; train a model first (every run since models are logged has "
              "one). " + " ".join(notes), file=sys.stderr)
        return 2
    # MLflow resolves a version's models:/m-<id> source through the global store
    with using_tracking_uri(client.tracking_uri), quiet_mlflow():
        for task, (run, monitor, maximise, value) in sorted(chosen.items()):
            print(register(client, task, run, monitor, maximise, value).line())
    for note in notes:
        print(f"note: {note}")
    first = sorted(chosen)[0]
    print(f"use them as mlflow.pyfunc.load_model('models:/{PREFIX}{first}@{ALIAS}') or pass "
          f"the URI to rnnlab-tag / rnnlab-generate / rnnlab-convert.")
    return 0
