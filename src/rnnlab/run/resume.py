"""What a ``ckpt_path=`` may do to the record, decided before any run is touched.

- Training from a checkpoint (resume) continues the checkpoint's own MLflow run, and only
  when the task, the model and the data fingerprint are the ones it was trained with and
  that run is in this store. Anything else stops with one sentence saying what differs,
  so a mistyped path can never turn another run FAILED or rewrite its config.
- Testing a checkpoint (``train=false``) is a run of its own, tagged
  ``rnnlab.evaluates=<run id>``; the run it evaluates is never written to.
- ``ckpt_path=auto`` continues the newest ``last.ckpt`` of the same task, model and seed
  under the outputs folder when its run is unfinished (KILLED, FAILED, or RUNNING after a
  SIGKILL), or starts afresh when there is none or that run FINISHED: the same command can
  be resubmitted after a pre-emption.
- A resumed run goes on writing checkpoints in its own checkpoint folder, so its best
  score, top-k and early-stopping state carry over (Lightning restores them only there).
- One process at a time trains into a checkpoint folder (:func:`checkpoint_folder_lock`):
  a second resume of the same run is refused in one sentence.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from rnnlab.build.checkpoint import (
    AUTO,
    config_differences,
    experiment_identity,
    load_state,
    read_checkpoint,
)
from rnnlab.core.dist import is_rank_zero
from rnnlab.core.errors import ConfigError
from rnnlab.tracking.mlflow import redact, redact_config, resolve_tracking_uri

RESOLVED_ENV = "RNNLAB_RESOLVED_CKPT"  # rank zero's choice for ckpt_path=auto, for DDP workers


@dataclass
class CheckpointPlan:
    path: str | None = None            # what trainer.fit resumes from
    resume_run_id: str | None = None   # the MLflow run to continue
    evaluates: str | None = None       # the run a test-only run evaluates
    extra_tags: dict[str, str] = field(default_factory=dict)
    # the checkpoint callbacks' folders in the checkpoint, by callback state key
    folders: dict[str, str] = field(default_factory=dict)

    def tags(self) -> dict[str, str]:
        tags = dict(self.extra_tags)
        if self.evaluates:
            tags["rnnlab.evaluates"] = self.evaluates
        return tags

    def continue_in_place(self, callbacks: list[pl.Callback]) -> None:
        """Point each ModelCheckpoint at the folder it wrote before the resume, where
        Lightning restores its best score, best path and top-k (in a new folder it keeps
        only the best path, and the first validation after the resume would count as the
        best). A folder that is gone leaves the callback where it was."""
        moved, kept = set(), set()
        for callback in callbacks:
            if not isinstance(callback, ModelCheckpoint):
                continue
            folder = self.folders.get(callback.state_key)
            if folder and folder != callback.dirpath and Path(folder).is_dir():
                callback.dirpath = folder
                moved.add(folder)
            elif folder == callback.dirpath:
                kept.add(folder)
        for folder in sorted(moved | kept):
            # expected here: the folder holds the run's earlier checkpoints
            warnings.filterwarnings("ignore", message=re.escape(
                f"Checkpoint directory {folder} exists and is not empty"))
        for folder in sorted(moved):
            print(f"ckpt_path: the run's checkpoints continue in its own folder {folder}")


def find_auto_checkpoint(cfg: DictConfig) -> Path | None:
    """The newest ``last.ckpt`` under the outputs folder written by this configuration."""
    if not is_rank_zero():  # workers follow rank zero's choice
        chosen = os.environ.get(RESOLVED_ENV)
        return Path(chosen) if chosen else None
    current = experiment_identity(redact_config(OmegaConf.to_container(cfg, resolve=True)))
    # a requeued sweep job runs again in its own folder (which may lie outside the outputs
    # folder): look there first, then at every run under the outputs folder
    own = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    others = sorted(Path(cfg.paths.log_dir).glob("**/checkpoints/last.ckpt"),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    candidates = [own, *others] if own.is_file() else others
    for path in candidates:
        try:
            meta = read_checkpoint(path, "ckpt_path=auto")["rnnlab"]
        except Exception:  # a foreign or half-written file is simply not a candidate
            continue
        if experiment_identity(meta.get("config") or {}) == current:
            finished = _finished_run(cfg, meta.get("mlflow_run_id"))
            if finished:
                print(f"ckpt_path=auto: the newest checkpoint of this task, model and seed "
                      f"({path}) belongs to MLflow run {finished}, which FINISHED; starting a "
                      f"new run.")
                break
            os.environ[RESOLVED_ENV] = str(path)
            return path
    os.environ[RESOLVED_ENV] = ""
    return None


def _finished_run(cfg: DictConfig, run_id: str | None) -> str | None:
    """``run_id`` when that run of this store ended FINISHED: nothing left to continue."""
    from mlflow.tracking import MlflowClient  # heavy (about a second): ckpt_path=auto only

    if not run_id or not _uses_mlflow(cfg) or not bool(cfg.get("train", True)):
        return None
    uri = resolve_tracking_uri(cfg.logger.mlflow.get("tracking_uri"), cfg.paths.root_dir)
    try:
        status = MlflowClient(uri).get_run(run_id).info.status
    except Exception:  # not in this store: plan_checkpoint says so in one sentence
        return None
    return run_id if status == "FINISHED" else None


def _compare(cfg: DictConfig, meta: dict[str, Any], dm: Any, path: str) -> list[str]:
    current = redact_config(OmegaConf.to_container(cfg, resolve=True))
    stored = meta.get("config") or {}
    diffs = []
    if (stored.get("task") or {}).get("name") != current["task"]["name"]:
        diffs.append(f"task: {(stored.get('task') or {}).get('name')!r} in the checkpoint, "
                     f"{current['task']['name']!r} now")
    diffs += config_differences(stored, current, keys=("model",))
    fingerprint = meta.get("data_fingerprint")
    if fingerprint and fingerprint != dm.fingerprint:
        diffs.append(f"data fingerprint: {fingerprint} in the checkpoint, {dm.fingerprint} now")
    return diffs


def plan_checkpoint(cfg: DictConfig, dm: Any, module: Any) -> CheckpointPlan:
    """Check ``ckpt_path`` against this config and store; load its weights for a test-only
    run. Raises :class:`ConfigError` before any run is created or changed."""
    raw = cfg.get("ckpt_path")
    if not raw:
        return CheckpointPlan()
    training = bool(cfg.get("train", True))
    key = "ckpt_path"
    if str(raw) == AUTO:
        found = find_auto_checkpoint(cfg)
        if found is None:
            print("ckpt_path=auto: no checkpoint of this task, model and seed yet; starting "
                  "a new run.")
            return CheckpointPlan()
        print(f"ckpt_path=auto: continuing from {found}")
        path = str(found)
    else:
        path = str(raw)
    ckpt = read_checkpoint(path, key)
    meta = ckpt["rnnlab"]
    diffs = _compare(cfg, meta, dm, path)
    if diffs:
        shown = "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
        what = "continue" if training else "be tested with"
        raise ConfigError(f"{key}={path} cannot {what} this configuration ({shown}); use the "
                          f"settings it was trained with, or drop ckpt_path to start a new run.")
    load_state(module, ckpt["state_dict"], f"{key}={path}")
    run_id = meta.get("mlflow_run_id")
    if not training:
        return CheckpointPlan(path=path, evaluates=run_id or "",
                              extra_tags={"rnnlab.build.checkpoint": path})
    if run_id and _uses_mlflow(cfg):
        _check_run_in_store(cfg, run_id, path, dm)
    folders = {key: state["dirpath"] for key, state in (ckpt.get("callbacks") or {}).items()
               if isinstance(state, dict) and isinstance(state.get("dirpath"), str)}
    return CheckpointPlan(path=path, resume_run_id=run_id if _uses_mlflow(cfg) else None,
                          folders=folders)


def _uses_mlflow(cfg: DictConfig) -> bool:
    return bool((cfg.get("logger") or {}).get("mlflow"))


def _check_run_in_store(cfg: DictConfig, run_id: str, path: str, dm: Any) -> None:
    from mlflow.tracking import MlflowClient  # heavy (about a second): resuming only

    if not is_rank_zero():
        return
    uri = resolve_tracking_uri(cfg.logger.mlflow.get("tracking_uri"), cfg.paths.root_dir)
    try:
        run = MlflowClient(uri).get_run(run_id)
    except Exception:
        run = None
    if run is None or run.info.lifecycle_stage != "active":
        raise ConfigError(f"ckpt_path={path} belongs to MLflow run {run_id}, which is not an "
                          f"active run in the store {redact(uri)}; point "
                          f"MLFLOW_TRACKING_URI / logger.mlflow.tracking_uri at the store it "
                          f"was logged to (or restore the run).")
    tags = run.data.tags
    expected = {"task": str(cfg.task.name), "model": str(cfg.model.name),
                "data_fingerprint": dm.fingerprint}
    wrong = [f"{k}: {tags.get(k)!r} in the run, {v!r} now" for k, v in expected.items()
             if tags.get(k) is not None and tags.get(k) != v]
    if wrong:
        raise ConfigError(f"ckpt_path={path} names MLflow run {run_id}, which records another "
                          f"experiment ({'; '.join(wrong)}); resume it with its own settings.")


@contextmanager
def checkpoint_folder_lock(folder: str | Path, resuming: bool) -> Iterator[None]:
    """Hold ``<folder>/run.lock`` while this process trains into ``folder``, so a second
    process (a second resume of the same run, or a resume of a run still alive) is refused
    in one sentence instead of logging the same steps twice. An OS lock (``flock``): the
    system drops it however the holder ends, SIGKILL included; the file keeps the holder's
    process id, host and start time, for the refusal and for the line said when a dead
    process's record is taken over. Released (and emptied) on every exit path; global rank
    zero only (the other DDP ranks are its children)."""
    if not is_rank_zero():
        yield
        return
    try:
        import fcntl  # POSIX only
    except ImportError:  # pragma: no cover - elsewhere: best effort, no lock
        yield
        return
    path = Path(folder) / "run.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            what = "this run is being resumed" if resuming else "this folder is being trained into"
            raise ConfigError(f"{what} by {holder} (lock {path}); wait for that process to end "
                              f"(or stop it) and run the command again.") from None
        handle.seek(0)
        previous = handle.read().strip()
        if previous:  # a holder that ended without releasing: SIGKILL, a lost node
            print(f"taking over {path} from {previous}, which is no longer running",
                  file=sys.stderr)
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()} since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        if not [p for p in path.parent.iterdir() if p.name != path.name]:
            # the lock is the folder's only file: Lightning's "not empty" warning would be
            # about it alone (Lightning prints the folder's real path)
            warnings.filterwarnings("ignore", message=re.escape(
                f"Checkpoint directory {os.path.realpath(path.parent)} exists and is not empty"))
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)
