"""Where runs go and what they carry.

Default store: ``sqlite:///<project root>/mlflow.db`` with artifacts under
``<project root>/mlartifacts``, both absolute so Hydra's per-run folders never move them.
``MLFLOW_TRACKING_URI`` or ``logger.mlflow.tracking_uri`` point elsewhere (an ``http://``
server, PostgreSQL); then the server decides where artifacts live.
"""

from __future__ import annotations

import logging
import math
import os
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities import rank_zero_only

from rnnlab.core.errors import ConfigError

MAX_PARAM_LENGTH = 6000  # MLflow's limit for one param value
FLOAT32_MAX = float(np.finfo(np.float32).max)
_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


def redact(text: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://***@host/db``, anywhere in text.

    Every message, param and file the lab writes passes URIs through this; pass secrets
    to MLflow as MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD instead."""
    return _CREDENTIALS.sub(r"\g<scheme>***@", text)


def default_tracking_uri(root_dir: str | Path) -> str:
    return f"sqlite:///{Path(root_dir).resolve() / 'mlflow.db'}"


def redact_config(value: Any) -> Any:
    """A plain config (dicts, lists, scalars) with every string passed through :func:`redact`:
    what checkpoints and files keep of a config, so no password travels with a model."""
    if isinstance(value, Mapping):
        return {k: redact_config(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_config(v) for v in value]
    return redact(value) if isinstance(value, str) else value


CREDENTIAL_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def credentials_to_env(uri: str) -> str:
    """``http(s)://user:password@host`` -> ``http(s)://host``, the user and password moved to
    MLflow's own MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (which child processes,
    DDP workers included, inherit). MLflow prints and exports the URI it is given (its
    "View run ... at:" lines, MLFLOW_TRACKING_URI); a bare one carries no secret there.
    Other schemes keep theirs: a database URI needs them in place."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("http", "https") or parts.password is None:
        return uri
    os.environ[CREDENTIAL_ENV[0]] = urllib.parse.unquote(parts.username or "")
    os.environ[CREDENTIAL_ENV[1]] = urllib.parse.unquote(parts.password)
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=host))


def resolve_tracking_uri(configured: str | None, root_dir: str | Path) -> str:
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(root_dir)


def local_artifact_root(uri: str, root_dir: str | Path) -> str | None:
    """Artifacts beside a local store; a server (http/https/databricks) picks its own."""
    if uri.startswith(("sqlite:", "file:", "/")) or "://" not in uri:
        return (Path(root_dir).resolve() / "mlartifacts").as_uri()
    return None


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast on a dead tracking server (MLflow's own client retries for minutes)."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        # the health page needs no login, and urllib cannot parse user:password@ anyway
        bare = _CREDENTIALS.sub(r"\g<scheme>", uri)
        urllib.request.urlopen(bare.rstrip("/") + "/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # something answers; the MLflow client reports anything else precisely
    except (OSError, ValueError) as err:
        reason = redact(str(getattr(err, "reason", err)))
        raise ConfigError(f"cannot reach the MLflow tracking server {redact(uri)} ({reason}); "
                          f"start it (make server), "
                          f"fix logger.mlflow.tracking_uri / MLFLOW_TRACKING_URI, or choose "
                          f"logger=csv.") from err


# MLflow's UI opens an experiment in its GenAI view or its classic model-training view by
# this experiment tag (read by the UI itself; there is no documented API for the choice)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"


def ensure_experiment(client, name: str, artifact_root: str | None) -> str:
    """Get or create ``name`` (safe when parallel sweep jobs race to create it), marked as
    a model-training experiment so the UI opens on runs, metrics and charts."""
    exp = client.get_experiment_by_name(name)
    if exp is None:
        location = f"{artifact_root}/{name}" if artifact_root else None
        with suppress(Exception):  # another job may create it first: found below
            client.create_experiment(name, artifact_location=location,
                                     tags={EXPERIMENT_KIND_TAG: TRAINING_KIND})
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise ConfigError(f"the MLflow experiment {name!r} could not be created in the "
                              f"tracking store; check that the store is writable.")
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    if EXPERIMENT_KIND_TAG not in exp.tags:  # experiments made before the lab set it
        client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)
    return exp.experiment_id


@contextmanager
def system_metrics(loggers: list, enabled: bool, interval_s: float = 10.0) -> Iterator[None]:
    """MLflow's CPU / memory / disk / network (and GPU, with nvidia-ml-py) sampling into the
    run as ``system/*`` metrics while the block runs (``logger.mlflow.log_system_metrics``)."""
    monitors = []
    if enabled:
        # mlflow itself is imported where it is used in this module: it costs about a
        # second, and most importers (the CLIs, the loaders) never open a store
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        for lg in loggers:
            if isinstance(lg, MLFlowLogger) and lg.run_id:
                monitor = SystemMetricsMonitor(lg.run_id, sampling_interval=interval_s,
                                               tracking_uri=lg._tracking_uri)
                monitor.start()
                monitors.append(monitor)
    try:
        yield
    finally:
        for monitor in monitors:
            monitor.finish()


def exact_float(value: Any) -> float:
    """A metric as the number it stands for. Lightning reduces logged values, and
    torchmetrics computes its scores, in float32, so an accuracy of 92/160 = 0.575 reaches
    the logger as 0.574999988079071; such a value (one that a float32 holds exactly)
    becomes the shortest decimal that reads back as the same float32 (0.575). A float64
    value (an exact mean, a count) is not a float32 number unless it is short already
    (0.5, 12.0), so it is kept as it is."""
    number = float(value)
    if not math.isfinite(number) or abs(number) > FLOAT32_MAX:
        return number
    single = np.float32(number)
    return float(str(single)) if float(single) == number else number


class RecordLogger(MLFlowLogger):
    """Lightning's MLflow logger, with at most one value per metric and step, each an
    exact float (:func:`exact_float`: no float32 digits of noise on the run page).

    Lightning logs some keys (``epoch``) again with every group of metrics of one step,
    and a resumed run restarts from its checkpoint's step although the store may already
    hold later steps (the process died between checkpoints). Neither is logged twice:
    ``logged_through`` maps each metric to the last step the store has, starting from what
    a resumed run already holds."""

    def __init__(self, *args: Any, logged_through: dict[str, int] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logged_through = dict(logged_through or {})

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        at = step or 0
        fresh = {k: v if isinstance(v, str) else exact_float(v)  # Lightning skips strings
                 for k, v in metrics.items() if at > self.logged_through.get(k, -1)}
        if fresh:
            super().log_metrics(fresh, step)
            self.logged_through.update(dict.fromkeys(fresh, at))

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        """Leaves the status alone: Lightning calls this after fit and again after test,
        while the lab ends the run itself once everything (test, artifacts) is done, with
        the status that is true (``tracking.record.RunRecord``)."""


def logged_through(client: Any, run_id: str) -> dict[str, int]:
    """The last logged step of every metric of a run."""
    out = {}
    for key in client.get_run(run_id).data.metrics:
        history = client.get_metric_history(run_id, key)
        out[key] = max((m.step for m in history), default=-1)
    return out


def make_mlflow_logger(experiment_name: str, root_dir: str, tracking_uri: str | None = None,
                       run_name: str | None = None, tags: dict[str, str] | None = None,
                       run_id: str | None = None, synchronous: bool | None = None,
                       description: str | None = None, rank_zero: bool = True,
                       log_system_metrics: bool = False) -> MLFlowLogger:
    """An MLflow logger on the resolved store; on rank zero its run is created (or, with
    ``run_id``, reopened) here, so its name can carry the run id and a failure before
    training still has a run to mark. Other ranks get a logger that touches nothing."""
    resolved = resolve_tracking_uri(tracking_uri, root_dir)
    # the run's clients, loggers, exported URIs and MLflow's own console lines ("View run
    # ... at:") see no password: it travels in MLflow's variables
    uri = credentials_to_env(resolved)
    if not rank_zero:
        return RecordLogger(experiment_name=experiment_name, tracking_uri=uri,
                            synchronous=synchronous, log_model=False)
    # mlflow: about a second to import, a new run only
    from mlflow.tracking import MlflowClient  # heavy: see system_metrics
    from mlflow.tracking.context.registry import resolve_tags

    check_reachable(resolved)
    try:
        client = MlflowClient(uri)
        experiment_id = ensure_experiment(client, experiment_name, local_artifact_root(uri, root_dir))
        done: dict[str, int] = {}
        if run_id is None:
            all_tags = dict(tags or {})
            if description:
                all_tags["mlflow.note.content"] = redact(description)
            run = client.create_run(experiment_id, tags=resolve_tags(all_tags))
            run_id = run.info.run_id
            client.update_run(run_id, name=f"{run_name}-{run_id[:6]}" if run_name else None)
        else:
            done = logged_through(client, run_id)
            client.update_run(run_id, status="RUNNING")
            client.set_tag(run_id, "rnnlab.resumed", "true")
            if "rnnlab.failure" in client.get_run(run_id).data.tags:  # the old end is over
                client.delete_tag(run_id, "rnnlab.failure")
    except Exception as err:  # unreachable server, bad URI, unknown run
        msg = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise ConfigError(f"cannot use the MLflow tracking store {redact(resolved)} ({redact(msg)}); "
                          f"fix logger.mlflow.tracking_uri / MLFLOW_TRACKING_URI or choose "
                          f"logger=csv.") from err
    logger = RecordLogger(experiment_name=experiment_name, tracking_uri=uri, run_id=run_id,
                          synchronous=synchronous, log_model=False, logged_through=done)
    logger.log_system_metrics = log_system_metrics
    return logger


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> ``{"model.hidden_size": "256", ...}`` (lists kept as one value)."""
    out: dict[str, str] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = "null" if value is None else redact(str(value))
    return out


def log_params(logger: MLFlowLogger, params: Mapping[str, Any]) -> None:
    """Log params untruncated (Lightning's own logger cuts values at 250 characters)."""
    # mlflow: about a second to import, a new run only
    from mlflow.entities import Param  # heavy: see system_metrics

    client, run_id = logger.experiment, logger.run_id
    existing = client.get_run(run_id).data.params
    items = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in params.items()
             if k not in existing]  # a resumed run already has them
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i: i + 100])


def git_commit(root_dir: str | Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root_dir,
                             capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root_dir, capture_output=True, text=True, timeout=5)
        if out.returncode == 0:
            return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


@contextmanager
def using_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's model logging reads the global tracking URI; point it at the run's store
    for the call and put back what was there (the environment variable included)."""
    # mlflow: about a second to import, a new run only
    import mlflow  # heavy: see system_metrics

    before_env = os.environ.get("MLFLOW_TRACKING_URI")
    before = mlflow.get_tracking_uri() if before_env else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)
        if before_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)


@contextmanager
def quiet_mlflow() -> Iterator[None]:
    """No progress bars and INFO notes from MLflow while the block runs (they would fill
    a run's log and the CLIs' stderr); warnings still show."""
    quiet = logging.getLogger("mlflow")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    progress = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        yield
    finally:
        quiet.setLevel(level)
        if progress is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = progress
