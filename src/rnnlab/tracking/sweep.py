"""Grouping the jobs of a Hydra multirun under one MLflow parent run per experiment.

MLflow nests runs whose ``mlflow.parentRunId`` tag names another run of the same
experiment. A sweep can span tasks (one experiment each), so every job finds or creates
the parent run of *its* experiment for the sweep, under a file lock in the sweep folder
(the same folder every launcher writes to). This works the same for the basic launcher,
joblib workers and cluster launchers on a shared file system. The Hydra callback
:class:`SweepParentRuns` prepares the store before any job starts (so parallel jobs never
race to create the SQLite schema) and, at the end, writes each parent's summary: job
count, the best job by the task's own metric and direction, and Optuna's best params.

A sweep ends honestly: a job that fails (a refused config, a crash, a diverged run) is
recorded FAILED with its reason (a job that failed before its run existed gets a FAILED
child run of its own), the remaining jobs run, the parent ends FAILED when any job failed
(FINISHED otherwise) with the count in its description, and the command exits 1. The
launchers (basic, joblib, submitit) would otherwise stop the sweep at the first failed
job with a traceback and leave the parent RUNNING; a sweep stopped before its end (a
signal, a sweeper giving up) still closes its parents.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import shutil
import sys
import traceback
import uuid
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from rnnlab.core.errors import ConfigError, UserError
from rnnlab.data.sources import file_lock
from rnnlab.tracking.mlflow import (
    credentials_to_env,
    ensure_experiment,
    local_artifact_root,
    redact,
    resolve_tracking_uri,
)

SWEEP_ID_ENV = "RNNLAB_SWEEP_ID"
SWEEP_ID_FILE = ".rnnlab_sweep_id"
FAILED_JOBS_FILE = ".rnnlab_failed_jobs"  # one line per failed job, from every launcher
PARENT_ROLE = "sweep_parent"
FAILURE_TAG = "rnnlab.failure"  # as tracking.record writes it
NOTE_TAG = "mlflow.note.content"  # the run's description in the MLflow UI
log = logging.getLogger("rnnlab")


@dataclass(frozen=True)
class FailedJob:
    """What a failed job returns to the sweeper once its failure is recorded, so the
    launcher goes on with the other jobs; the Optuna sweeper tells such a trial FAIL."""

    reason: str


def current_sweep() -> tuple[str, Path] | None:
    """(sweep id, sweep folder) when running as a multirun job, else None."""
    try:
        hc = HydraConfig.get()
    except ValueError:
        return None
    if hc.mode != RunMode.MULTIRUN:
        return None
    sweep_dir = Path(hc.sweep.dir).resolve()
    id_file = sweep_dir / SWEEP_ID_FILE
    sweep_id = os.environ.get(SWEEP_ID_ENV) or (
        id_file.read_text().strip() if id_file.exists() else sweep_dir.name)
    return sweep_id, sweep_dir


def _job_num() -> str:
    try:
        return str(HydraConfig.get().job.num)
    except (ValueError, AttributeError):
        return ""


def sweep_tags() -> dict[str, str]:
    """The ``sweep_id`` and ``sweep_job`` (Hydra's job number) tags of a multirun job; empty
    for a single run. The job number finds a job's run again when the job fails."""
    sweep = current_sweep()
    return {"sweep_id": sweep[0], "sweep_job": _job_num()} if sweep else {}


def objective(cfg: DictConfig, metrics: Mapping[str, Any]) -> float | None:
    """The value a sweeper optimises: the best validation score of the monitored metric."""
    monitor = cfg.task.monitor
    value = metrics.get(f"best/{monitor}", metrics.get(monitor))
    return None if value is None else float(value)


def attach_to_parent(client: Any, run_id: str) -> str | None:
    """Tag ``run_id`` as a child of its sweep's parent run (created on first use)."""
    sweep = current_sweep()
    if sweep is None:
        return None
    sweep_id, sweep_dir = sweep
    experiment_id = client.get_run(run_id).info.experiment_id
    with file_lock(sweep_dir / ".mlflow_parent.lock"):
        found = client.search_runs(
            [experiment_id],
            filter_string=f"tags.sweep_id = '{sweep_id}' and tags.rnnlab_role = '{PARENT_ROLE}'")
        if found:
            parent = found[0].info.run_id
        else:
            parent = client.create_run(experiment_id, run_name=f"sweep {sweep_id}", tags={
                "sweep_id": sweep_id, "rnnlab_role": PARENT_ROLE,
                "sweep_dir": str(sweep_dir),
                NOTE_TAG: sweep_description(sweep_id, sweep_dir)}).info.run_id
    client.set_tag(run_id, "mlflow.parentRunId", parent)
    return parent


def sweep_description(sweep_id: str, sweep_dir: Path) -> str:
    """The parent run's description: the sweep's command (its overrides as Hydra saved
    them in ``multirun.yaml``) and folder, so a parent says what it grouped before its
    summary (counts, best job) is added at the end."""
    command = "python train.py --multirun"
    with suppress(Exception):  # a sweeper that saves no multirun.yaml: the folder says it
        saved = OmegaConf.load(sweep_dir / "multirun.yaml")
        command += "".join(f" {o}" for o in OmegaConf.select(saved, "hydra.overrides.task",
                                                              default=[]))
    return redact(f"Sweep {sweep_id}: the jobs of `{command}` in this experiment are its "
                  f"child runs (folder {sweep_dir}).")[:2000]


def open_store(uri: str) -> Any:
    """An MLflow client whose store's schema exists, created once even by concurrent sweeps.

    Jobs of one sweep start after the sweep opened the store, so they never race to
    create an SQLite schema; two sweeps started together on one fresh ``mlflow.db`` (two
    workers of one Optuna study) would, so an SQLite store is opened under a lock file.
    """
    from mlflow.tracking import MlflowClient  # heavy (about a second): opening a store only

    # http://user:password@host: the credentials go to MLflow's environment variables, so
    # the parent run's "View run ... at:" line and the URI it exports carry none
    uri = credentials_to_env(uri)
    if not uri.startswith("sqlite:///"):
        return MlflowClient(uri)
    db = Path(uri[len("sqlite:///"):].split("?", 1)[0])
    with file_lock(db.with_name(db.name + ".lock")):
        client = MlflowClient(uri)
        client.search_experiments(max_results=1)  # creates the schema
    return client


def check_launcher(config: DictConfig) -> None:
    """Refuse a submitit launch whose resource counts cannot work, before anything starts.

    conf/hydra/launcher/slurm*.yaml tie GPUs and tasks per node to ``trainer.devices``;
    ``-1`` or ``auto`` (all GPUs) means nothing to SLURM, and submitit would only fail
    once the array is queued (or, locally, hide every GPU from the job).
    """
    launcher = config.hydra.get("launcher") or {}
    target = str(launcher.get("_target_", ""))
    if not target.startswith("hydra_plugins.hydra_submitit_launcher"):
        return
    if target.endswith("SlurmLauncher") and shutil.which("srun") is None:
        raise ConfigError("hydra/launcher=slurm needs SLURM's srun and sbatch, which this "
                          "machine lacks; launch from a login node of the cluster, or try "
                          "the sweep here with hydra/launcher=slurm_local.")
    for key in ("tasks_per_node", "gpus_per_node", "nodes"):
        value = launcher.get(key)
        if value is None and key == "gpus_per_node":
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < (
                0 if key == "gpus_per_node" else 1):
            raise ConfigError(
                f"hydra.launcher.{key}={value} cannot size a submitit job (conf/hydra/launcher "
                f"ties it to trainer.devices / trainer.num_nodes); set trainer.devices=N (GPUs, "
                f"or CPU processes, per node) or hydra.launcher.{key}=N.")


def _direction(run: Any) -> tuple[str, bool]:
    monitor = run.data.params.get("task.monitor", "val/loss")
    return monitor, run.data.params.get("task.mode", "min") == "max"


def summarise_parent(client: Any, parent: Any, sweep_dir: Path,
                     stopped: str | None = None) -> dict[str, Any]:
    """Log the sweep's summary on its parent run and close it: FAILED when a job failed or
    the sweep was ``stopped`` before its end (KILLED when a job was), else FINISHED; the
    counts go into the parent's description."""
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'", max_results=5000)
    finished = [c for c in children if c.info.status == "FINISHED"]
    failed = [c for c in children if c.info.status in ("FAILED", "KILLED")]
    summary: dict[str, Any] = {"n_jobs": len(children), "n_finished": len(finished),
                               "n_failed": len(failed)}
    metrics = {"sweep/n_jobs": len(children), "sweep/n_finished": len(finished),
               "sweep/n_failed": len(failed)}
    lines = ["| run | model | best val | test |", "|---|---|---|---|"]
    scored = []
    for c in finished:
        monitor, maximise = _direction(c)
        value = c.data.metrics.get(f"best/{monitor}", c.data.metrics.get(monitor))
        if value is not None:
            scored.append((value if maximise else -value, c, monitor, value))
    scored.sort(key=lambda t: t[0], reverse=True)
    for _, c, monitor, value in scored:
        test = c.data.metrics.get(monitor.replace("val/", "test/", 1))
        lines.append(f"| {c.info.run_name} | {c.data.tags.get('model')} | {value:.4f} | "
                     f"{'' if test is None else f'{test:.4f}'} |")
    if scored:
        _, best, monitor, value = scored[0]
        metrics[f"sweep/best_{monitor.replace('/', '_')}"] = value
        client.set_tag(parent.info.run_id, "best_run_id", best.info.run_id)
        client.set_tag(parent.info.run_id, "best_model", best.data.tags.get("model", ""))
        summary["best_run_id"] = best.info.run_id
    for key, value in metrics.items():
        client.log_metric(parent.info.run_id, key, value)
    client.log_text(parent.info.run_id, "\n".join(lines) + "\n", "sweep/summary.md")
    optuna_file = sweep_dir / "optimization_results.yaml"
    if optuna_file.exists():
        # written by the rnnlab_optuna sweeper; the best trial is the study's best, which
        # may come from another worker or an earlier command on the same stored study
        results = OmegaConf.to_container(OmegaConf.load(optuna_file))
        for key, value in (results.get("best_params") or {}).items():
            client.log_param(parent.info.run_id, f"best.{key}", value)
        for key in ("study_name", "storage"):
            if results.get(key):
                client.set_tag(parent.info.run_id, f"optuna_{key}", str(results[key]))
        for key in ("n_trials_study", "n_complete_study", "n_trials_added", "best_value"):
            if isinstance(results.get(key), (int, float)):
                client.log_metric(parent.info.run_id, f"sweep/optuna_{key}", results[key])
        summary["optuna"] = results
        client.log_artifact(parent.info.run_id, str(optuna_file), "sweep")
    note = f"{len(finished)} of {len(children)} jobs finished, {len(failed)} failed"
    if failed:
        note += ": " + "; ".join(f"{c.info.run_name} (job {c.data.tags.get('sweep_job', '?')}): "
                                 f"{c.data.tags.get(FAILURE_TAG, c.info.status)[:300]}"
                                 for c in failed[:10])
    if stopped:
        note = f"the sweep stopped before its end ({stopped}); {note}"
    sweep_id = parent.data.tags.get("sweep_id", sweep_dir.name)
    note = f"{note}\n\n{sweep_description(sweep_id, sweep_dir)}"
    client.set_tag(parent.info.run_id, NOTE_TAG, redact(note)[:5000])
    status = "FINISHED"
    if failed or stopped:
        status = "KILLED" if any(c.info.status == "KILLED" for c in failed) else "FAILED"
    client.set_terminated(parent.info.run_id, status)
    summary["status"] = status
    return summary


def _first_line(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    if isinstance(err, UserError):
        return text
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def failed_jobs(sweep_dir: Path) -> list[str]:
    """The lines every launcher's jobs wrote for their failures (see :meth:`on_job_end`)."""
    path = sweep_dir / FAILED_JOBS_FILE
    return path.read_text().splitlines() if path.exists() else []



class SweepParentRuns(Callback):
    """Hydra callback (see conf/hydra/default.yaml) around every multirun."""

    def __init__(self) -> None:
        self._running: DictConfig | None = None  # a multirun begun and not yet summarised

    def _client(self, config: DictConfig) -> Any:
        mlflow_cfg = (config.get("logger") or {}).get("mlflow")
        if mlflow_cfg is None:
            return None
        return open_store(resolve_tracking_uri(mlflow_cfg.get("tracking_uri"),
                                               config.paths.root_dir))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_launcher(config)
        except ConfigError as err:  # Hydra turns a callback's exception into a warning
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        sweep_dir = Path(config.hydra.sweep.dir).resolve()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        sweep_id = f"{sweep_dir.name}-{uuid.uuid4().hex[:6]}"
        (sweep_dir / SWEEP_ID_FILE).write_text(sweep_id + "\n")
        self._client(config)  # the store's schema exists before any job starts
        log.info("sweep id %s", sweep_id)
        # a sweep that stops before its end (a signal, a sweeper that gives up, a launcher
        # error) still closes its parent runs, at exit
        self._running = config
        atexit.register(self._close_stopped)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """A failed job (an exception, or the NaN objective of a diverged run) is recorded
        and handed back to the launcher as a :class:`FailedJob`, so the sweep goes on.

        Runs in the process of the job (joblib worker, submitit job): the failure goes to
        the store and to a line in the sweep folder, where :meth:`on_multirun_end` counts it."""
        sweep = current_sweep()
        value = job_return._return_value
        raised = job_return.status == JobStatus.FAILED and isinstance(value, BaseException)
        diverged = isinstance(value, float) and math.isnan(value)
        if sweep is None or not (raised or diverged):
            return
        job = _job_num()
        overrides = redact(" ".join(str(o) for o in job_return.overrides or []))
        if raised:
            if not isinstance(value, UserError):  # a crash: its traceback, as Hydra shows it
                traceback.print_exception(value)
            reason = redact(_first_line(value))
        else:
            reason = "training diverged (the objective is NaN)"
        reason = self._record(config, sweep[0], job, reason, create=raised)
        with file_lock(sweep[1] / (FAILED_JOBS_FILE + ".lock")), \
                open(sweep[1] / FAILED_JOBS_FILE, "a") as f:
            f.write(f"job {job} ({overrides}): {' '.join(reason.split())}\n")
        print(f"failed: job {job} ({overrides}); its run is FAILED and the sweep goes on",
              file=sys.stderr)
        if raised:
            job_return.status = JobStatus.COMPLETED
            job_return.return_value = FailedJob(reason)

    def _record(self, config: DictConfig, sweep_id: str, job: str, reason: str,
                create: bool) -> str:
        """The job's run FAILED with ``reason``: its own run when it has one (already ended
        by the run's record), else a new child run of the sweep's parent. Returns the
        reason the store keeps."""
        name = OmegaConf.select(config, "logger.mlflow.experiment_name")
        if name is None:
            return reason
        try:
            client = self._client(config)
            uri = resolve_tracking_uri(OmegaConf.select(config, "logger.mlflow.tracking_uri"),
                                       config.paths.root_dir)
            experiment = ensure_experiment(client, str(name),
                                           local_artifact_root(uri, config.paths.root_dir))
            runs = client.search_runs([experiment], filter_string=(
                f"tags.sweep_id = '{sweep_id}' and tags.sweep_job = '{job}'"))
            if runs:
                run = runs[0]
                if run.info.status == "RUNNING":  # a job that ended without its record
                    client.set_tag(run.info.run_id, FAILURE_TAG, reason[:5000])
                    client.set_terminated(run.info.run_id, "FAILED")
                return run.data.tags.get(FAILURE_TAG) or reason
            if not create:
                return reason
            model = OmegaConf.select(config, "model.name", default="model")
            seed = OmegaConf.select(config, "seed", default="")
            run_id = client.create_run(experiment, run_name=f"{model}-s{seed}", tags={
                "sweep_id": sweep_id, "sweep_job": job, FAILURE_TAG: reason[:5000],
                "task": str(OmegaConf.select(config, "task.name", default="")),
                "model": str(model), "seed": str(seed),
                NOTE_TAG: redact(" ".join(["python train.py",
                                           *config.hydra.overrides.task]))}).info.run_id
            attach_to_parent(client, run_id)
            client.set_terminated(run_id, "FAILED")
        except Exception as err:  # the store is unusable: the sweep folder still counts it
            print(f"warning: could not record the failure of job {job} in MLflow "
                  f"({redact(_first_line(err))[:200]})", file=sys.stderr)
        return reason

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Close every parent run of the sweep; exit 1 when any job failed."""
        self._running = None
        sweep_dir = Path(config.hydra.sweep.dir).resolve()
        self._summarise(config, sweep_dir)
        failures = failed_jobs(sweep_dir)
        if failures:
            print(f"error: {len(failures)} job(s) of the sweep failed (their runs are FAILED, "
                  f"and so are the sweep's parent runs):\n  " + "\n  ".join(failures),
                  file=sys.stderr)
            sys.exit(1)

    def _summarise(self, config: DictConfig, sweep_dir: Path, stopped: str | None = None
                   ) -> None:
        id_file = sweep_dir / SWEEP_ID_FILE
        client = self._client(config)
        if client is None or not id_file.exists():
            return
        sweep_id = id_file.read_text().strip()
        experiments = [e.experiment_id for e in client.search_experiments()]
        parents = client.search_runs(
            experiments,
            filter_string=f"tags.sweep_id = '{sweep_id}' and tags.rnnlab_role = '{PARENT_ROLE}'")
        for parent in parents:
            if stopped and parent.info.status != "RUNNING":
                continue
            summary = summarise_parent(client, parent, sweep_dir, stopped)
            print(f"sweep {sweep_id}: {parent.data.tags.get('mlflow.runName')} in experiment "
                  f"{parent.info.experiment_id}: {summary['n_finished']}/{summary['n_jobs']} "
                  f"jobs finished, {summary['n_failed']} failed; parent run "
                  f"{parent.info.run_id} {summary['status']}")

    def _close_stopped(self) -> None:
        """At exit: the parents of a multirun that never reached its end are closed."""
        config, self._running = self._running, None
        if config is None:
            return
        try:
            self._summarise(config, Path(config.hydra.sweep.dir).resolve(),
                            stopped="it was interrupted or a job stopped it")
        except Exception as err:  # exiting anyway: say so, never a traceback at exit
            print(f"warning: could not close the sweep's parent runs "
                  f"({redact(_first_line(err))[:200]})", file=sys.stderr)
