"""Where runs go and what they carry.

Default store: ``sqlite:///<project root>/mlflow.db`` with artifacts under
``<project root>/mlartifacts``, both absolute so Hydra's per-run folders never move them.
``MLFLOW_TRACKING_URI`` or ``logger.mlflow.tracking_uri`` point elsewhere (an ``http://``
server, PostgreSQL); then the server decides where artifacts live.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import MLFlowLogger

from rnnlab.errors import ConfigError

MAX_PARAM_LENGTH = 6000  # MLflow's limit for one param value


def default_tracking_uri(root_dir: str | Path) -> str:
    return f"sqlite:///{Path(root_dir).resolve() / 'mlflow.db'}"


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
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # something answers; the MLflow client reports anything else precisely
    except (OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise ConfigError(f"cannot reach the MLflow tracking server {uri} ({reason}); start it, "
                          f"fix logger.mlflow.tracking_uri / MLFLOW_TRACKING_URI, or choose "
                          f"logger=csv.") from err


def ensure_experiment(client, name: str, artifact_root: str | None) -> str:
    """Get or create ``name``; safe when parallel sweep jobs race to create it."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    location = f"{artifact_root}/{name}" if artifact_root else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # another job created it first
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def make_mlflow_logger(experiment_name: str, root_dir: str, tracking_uri: str | None = None,
                       run_name: str | None = None, tags: dict[str, str] | None = None,
                       run_id: str | None = None, synchronous: bool | None = None) -> MLFlowLogger:
    """An MLFlowLogger on the resolved store, its experiment created up front."""
    from mlflow.tracking import MlflowClient

    uri = resolve_tracking_uri(tracking_uri, root_dir)
    check_reachable(uri)
    try:
        client = MlflowClient(uri)
        ensure_experiment(client, experiment_name, local_artifact_root(uri, root_dir))
        if run_id is not None:
            client.get_run(run_id)
            client.update_run(run_id, status="RUNNING")
    except Exception as err:  # unreachable server, bad URI, unknown run
        msg = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise ConfigError(f"cannot use the MLflow tracking store {uri} ({msg}); fix "
                          f"logger.mlflow.tracking_uri / MLFLOW_TRACKING_URI or choose "
                          f"logger=csv.") from err
    return MLFlowLogger(experiment_name=experiment_name, run_name=run_name, tracking_uri=uri,
                        tags=tags, run_id=run_id, synchronous=synchronous, log_model=False)


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> ``{"model.hidden_size": "256", ...}`` (lists kept as one value)."""
    out: dict[str, str] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = "null" if value is None else str(value)
    return out


def log_params(logger: MLFlowLogger, params: Mapping[str, Any]) -> None:
    """Log params untruncated (Lightning's own logger cuts values at 250 characters)."""
    from mlflow.entities import Param

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
