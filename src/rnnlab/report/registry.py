"""The model registry: each task's best model as ``rnnlab-<task>@champion``.

``python compare.py --register`` looks at every finished run that logged a model (tag
``rnnlab.model_uri``), splits each task's runs by their data (fingerprint) and picks each
group's best one by the rule of :mod:`rnnlab.report.selection` (the task's validation
metric ``best/<task.monitor>`` in the direction ``task.mode``: the same run the report
names as the one it would register). A model that does not beat its task's trivial
baseline on validation is refused, with one sentence, unless ``--force``. The chosen model
is registered with :func:`mlflow.register_model` as a version of ``rnnlab-<task>`` (the
task's built-in data) or ``rnnlab-<task>-<fingerprint>`` (other data), once: registering
again finds the same version; the logged model's page lists it. The alias ``champion``
moves to it, so "the current best NER tagger" has a name: ``models:/rnnlab-ner@champion``.
Every command that takes a checkpoint path also takes such a URI
(:func:`rnnlab.inference.load_checkpoint`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS as MODEL_VERSIONS_TAG

from rnnlab.report.selection import (
    FINGERPRINT_TAG,
    PREFIX,
    Choice,
    best_run,
    bound_fingerprint,
    check_trivial,
    data_groups,
    fingerprint_of,
    maximises,
    monitor_of,
    task_experiments,
    task_runs,
)
from rnnlab.serving.publish import MODEL_URI_TAG
from rnnlab.tracking.mlflow import quiet_mlflow, using_tracking_uri

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


@dataclass
class Pick:
    """A data group's best run, with what the registry needs to know about the group."""

    task: str
    group: str  # the data group's name: ner, ner-1a2b3c4d
    experiment_id: str
    choice: Choice


def picks(client: Any, tasks: list[str] | None = None, models: list[str] | None = None,
          sweep_id: str | None = None, since: dt.date | None = None
          ) -> tuple[list[Pick], list[str]]:
    """Each data group's best run with a logged model
    (:func:`rnnlab.report.selection.best_run`), and notes on what has none."""
    notes: list[str] = []
    out: list[Pick] = []
    for exp in task_experiments(client, tasks):
        runs = [r for r in task_runs(client, exp.experiment_id, models, sweep_id, since)
                if r.data.tags.get(MODEL_URI_TAG)]
        if not runs:
            notes.append(f"task {exp.name}: no finished run with a logged model matches "
                         f"(runs from before models were logged have none).")
            continue
        groups = data_groups(exp.name, runs, bound_fingerprint(client, exp.name))
        for group, members in groups.items():
            # the group's metric: what its runs monitor (an override of task.monitor on a
            # few runs makes them incomparable, so they are left out)
            monitor, _ = Counter(monitor_of(r) for r in members).most_common(1)[0]
            same = [r for r in members if monitor_of(r) == monitor]
            if len(same) < len(members):
                notes.append(f"task {group}: {len(members) - len(same)} run(s) monitor "
                             f"another metric than {monitor} and were left out.")
            choice = best_run(same, monitor, maximises(same[0]))
            if choice is None:
                notes.append(f"task {group}: no run with a logged model has {monitor}.")
                continue
            out.append(Pick(exp.name, group, exp.experiment_id, choice))
    return out, notes


def best_runs(client: Any, tasks: list[str] | None = None, models: list[str] | None = None,
              sweep_id: str | None = None, since: dt.date | None = None
              ) -> tuple[dict[str, Choice], list[str]]:
    """``{group: Choice(run, monitor, maximise, value)}`` (the group is the task for its
    built-in data, ``<task>-<fingerprint>`` for other data): what :func:`picks` chose, as
    the report names it, and the notes."""
    found, notes = picks(client, tasks, models, sweep_id, since)
    return {p.group: p.choice for p in found}, notes


def _version_of(client: Any, name: str, model_uri: str, run_id: str) -> Any:
    """The version of ``name`` that already holds this model, if any."""
    for v in client.search_model_versions(f"name = '{name}'"):
        if v.source == model_uri or (v.run_id == run_id and
                                     getattr(v, "model_id", None) == model_uri.split("/")[-1]):
            return v
    return None


def _list_on_logged_model(client: Any, model_uri: str, name: str, version: str) -> None:
    """Add ``name`` ``version`` to the logged model's ``mlflow.modelVersions`` tag (what its
    page shows) when missing: versions registered by older rnnlab lack it."""
    model_id = model_uri.removeprefix("models:/")
    try:
        tags = client.get_logged_model(model_id).tags
    except MlflowException:  # not a logged model of this store: nothing to list it on
        return
    listed = json.loads(tags.get(MODEL_VERSIONS_TAG) or "[]")
    if not any(v.get("name") == name and str(v.get("version")) == version for v in listed):
        listed.append({"name": name, "version": int(version)})
        client.set_logged_model_tags(model_id, {MODEL_VERSIONS_TAG: json.dumps(listed)})


def register(client: Any, task: str, run: Any, monitor: str, maximise: bool,
             value: float, group: str | None = None) -> Champion:
    """Register ``run``'s model under ``rnnlab-<group>`` (``rnnlab-<task>`` by default) with
    :func:`mlflow.register_model`, which also lists the version on the logged model, and
    point ``champion`` at it. The tracking URI must be ``client``'s (MLflow resolves the
    ``models:/m-<id>`` source through it)."""
    name, uri = f"{PREFIX}{group or task}", run.data.tags[MODEL_URI_TAG]
    fingerprint = fingerprint_of(run)
    try:
        registered = client.get_registered_model(name)
        if FINGERPRINT_TAG not in registered.tags:  # registered before models were bound
            client.set_registered_model_tag(name, FINGERPRINT_TAG, fingerprint)
    except MlflowException:
        client.create_registered_model(
            name, tags={"task": task, "monitor": monitor, FINGERPRINT_TAG: fingerprint},
            description=f"The best rnnlab model of task={task} on data {fingerprint or '?'} "
                        f"by {monitor} ({'max' if maximise else 'min'}); @{ALIAS} is moved by "
                        f"python compare.py --register.")
    try:
        previous = client.get_model_version_by_alias(name, ALIAS).version
    except MlflowException:
        previous = None
    version = _version_of(client, name, uri, run.info.run_id)
    if version is None:
        tags = {"model": run.data.tags.get("model", ""), "seed": run.data.tags.get("seed", ""),
                "monitor": monitor, "value": f"{value:.6g}", FINGERPRINT_TAG: fingerprint}
        # MLflow prints "already exists... Created version..." to stderr: the line below says it
        with contextlib.redirect_stderr(io.StringIO()):
            version = mlflow.register_model(uri, name, tags=tags)
        client.update_model_version(name, version.version,
                                    f"{run.info.run_name}: {monitor} = {value:.4f}")
    else:
        _list_on_logged_model(client, uri, name, str(version.version))
    client.set_registered_model_alias(name, ALIAS, version.version)
    return Champion(task, name, str(version.version), run.info.run_id,
                    run.data.tags.get("model", "?"), run.data.tags.get("seed", "?"), monitor,
                    maximise, value, uri, None if previous is None else str(previous))


def register_champions(client: Any, tasks: list[str] | None = None,
                       models: list[str] | None = None, sweep_id: str | None = None,
                       since: dt.date | None = None, force: bool = False) -> int:
    """``compare.py --register``: register each data group's best run, print what moved and
    return the exit code: 2 with one sentence when nothing can be registered, or when a
    group's best model does not beat its task's trivial baseline (refused, one sentence
    each, unless ``force``; the other groups are registered)."""
    found, notes = picks(client, tasks, models, sweep_id, since)
    if not found:
        print("error: no finished run with a logged model matches the filters, so nothing "
              "was registered; train a model first (every run since models are logged has "
              "one). " + " ".join(notes), file=sys.stderr)
        return 2
    refused, registered = [], []
    # MLflow resolves a version's models:/m-<id> source through the global store
    with using_tracking_uri(client.tracking_uri), quiet_mlflow():
        for pick in sorted(found, key=lambda p: p.group):
            verdict = check_trivial(client, pick.task, pick.choice, pick.experiment_id,
                                    pick.group)
            if verdict.beats is False and not force:
                refused.append(f"error: {PREFIX}{pick.group} was not registered: "
                               f"{verdict.sentence.split(': ', 1)[1].rstrip('.')}; pass "
                               f"--force to register it anyway.")
                continue
            run, monitor, maximise, value = pick.choice
            print(register(client, pick.task, run, monitor, maximise, value, pick.group).line())
            registered.append(pick.group)
            if verdict.beats is not True:
                notes.append(verdict.sentence)
    for note in notes:
        print(f"note: {note}")
    if registered:
        print(f"use them as mlflow.pyfunc.load_model('models:/{PREFIX}{registered[0]}@{ALIAS}') "
              f"or pass the URI to rnnlab-tag / rnnlab-generate / rnnlab-convert.")
    for line in refused:
        print(line, file=sys.stderr)
    return 2 if refused else 0
