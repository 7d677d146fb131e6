"""One run's MLflow lifecycle, in the order it happens.

:func:`run_scope` (signal handlers; the process left as it was found) ->
:meth:`TrackedRun.start` (the loggers; on global rank zero the MLflow run is created, or
reopened when resuming, tagged, and exported for DDP workers) -> :meth:`TrackedRun.recording`
(a multirun job joins its sweep's parent run; the run ends FINISHED, or FAILED / KILLED
with the reason) -> :meth:`~TrackedRun.log_start` (params, datasets, config: before fitting,
for networks and baselines alike) -> metrics -> :meth:`~TrackedRun.log_checkpoint` and
:meth:`~TrackedRun.publish` (the servable model, ``logger.mlflow.log_model``).

A run's page says what was run, not where: the run's own folders (``paths.output_dir``,
``paths.log_dir`` and every value inside the output folder: the checkpoint folders, the
trainer's root) are tags ``rnnlab.local.<key>``, not params, so compare-runs' diff and
plots start from settings; params plus those tags are the whole flattened config
(:func:`logged_config`). A run keeps one copy of its best weights in the store: the
servable model's slim checkpoint when the model is logged, else ``checkpoints/best.ckpt``;
``last.ckpt`` stays local unless ``logger.mlflow.upload_last``.

Only global rank zero writes to MLflow, and every check of that lives here: callers never
ask which rank they are on. Other ranks get loggers that write nothing and touch rank
zero's run only to mark it FAILED when they crash (``RNNLAB_RUN_ID``, see
:mod:`rnnlab.tracking.record`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger, MLFlowLogger

from rnnlab.core.dist import is_rank_zero
from rnnlab.tracking.config_hash import config_tags
from rnnlab.tracking.datasets import log_datasets
from rnnlab.tracking.mlflow import (
    CREDENTIAL_ENV,
    flatten,
    git_commit,
    log_params,
    make_mlflow_logger,
    redact,
    system_metrics,
)
from rnnlab.tracking.record import RunInterrupted, RunRecord, SignalHandlers, recorded
from rnnlab.tracking.sweep import attach_to_parent, sweep_tags

T = TypeVar("T")
LOCAL_TAG = "rnnlab.local."  # + a config key: a run-local path, kept as a tag


@contextmanager
def run_scope() -> Iterator[SignalHandlers]:
    """SIGTERM / SIGINT handled for the block; afterwards the process is as before: the old
    handlers, no exported run id, MLflow's tracking URI and its credential variables.
    MLflow exports the URI it last used into the environment; a later run in the same
    process (a sweep job, a test) must resolve its own store, not inherit that one."""
    uri_before = os.environ.get("MLFLOW_TRACKING_URI")
    # a server's credentials, moved from its URI into MLflow's variables for the run
    credentials_before = {name: os.environ.get(name) for name in CREDENTIAL_ENV}
    handlers = SignalHandlers()
    handlers.install()
    try:
        yield handlers
    finally:
        handlers.restore()
        RunRecord.unexport()
        for name, value in credentials_before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if os.environ.get("MLFLOW_TRACKING_URI") != uri_before:
            import mlflow  # heavy (about a second); only needed when a run moved the URI

            mlflow.set_tracking_uri(uri_before)


@dataclass
class TrackedRun:
    """The loggers of one run and, on global rank zero, its MLflow run and record."""

    cfg: DictConfig
    dm: Any
    handlers: SignalHandlers
    loggers: list[Logger]
    mlflow: MLFlowLogger | None  # rank zero's MLflow logger; None on other ranks or without
    record: RunRecord | None     # ends rank zero's MLflow run with the status that is true
    rank_zero: bool
    resumed: bool
    best: str | None = None  # the best checkpoint, once log_checkpoint has it

    @classmethod
    def start(cls, cfg: DictConfig, dm: Any, handlers: SignalHandlers,
              resume_run_id: str | None = None, tags: Mapping[str, str] | None = None,
              evaluates: bool = False) -> TrackedRun:
        """Build the configured loggers. On rank zero the MLflow run is created (or, with
        ``resume_run_id``, reopened) here, with the run tags plus ``tags``, and its id is
        exported so that DDP workers started from here know it. ``evaluates``: a test-only
        run of a checkpoint (its name ends in ``-test``)."""
        rank_zero = is_rank_zero()
        loggers: list[Logger] = []
        mlflow_logger = None
        for name, conf in (cfg.get("logger") or {}).items():
            if conf is None:
                continue
            if name != "mlflow":
                loggers.append(instantiate(conf))
                continue
            kwargs = OmegaConf.to_container(conf, resolve=True)
            kwargs.pop("_target_", None)
            kwargs.pop("log_model", None)  # read by publish()
            kwargs.pop("upload_last", None)  # read by log_checkpoint()
            kwargs["run_name"] = kwargs.get("run_name") or (
                f"{cfg.model.name}-s{cfg.seed}" + ("-test" if evaluates else ""))
            logger = make_mlflow_logger(
                **kwargs, root_dir=cfg.paths.root_dir, run_id=resume_run_id,
                tags={**run_tags(cfg, dm), **(tags or {})} if rank_zero else None,
                description=redact(" ".join(["python train.py", *_overrides()])),
                rank_zero=rank_zero)
            loggers.append(logger)
            mlflow_logger = logger if rank_zero else None
        record = None
        if mlflow_logger is not None:
            record = RunRecord(mlflow_logger.experiment, mlflow_logger.run_id)
            record.export(mlflow_logger._tracking_uri)
        return cls(cfg, dm, handlers, loggers, mlflow_logger, record, rank_zero,
                   resumed=resume_run_id is not None)

    @contextmanager
    def recording(self, stopped: Callable[[int], RunInterrupted] | None = None
                  ) -> Iterator[TrackedRun]:
        """The run's span. A new run of a multirun job first becomes a child of its sweep's
        parent run. An exception ends the run FAILED, a signal KILLED (``stopped`` turns the
        signal into the sentence saying where training stopped and how to continue); a
        block that completes finalizes the other loggers and ends the run FINISHED."""
        sampled = any(getattr(lg, "log_system_metrics", False) for lg in self.loggers)
        with recorded(self.record, self.handlers), system_metrics(self.loggers, sampled):
            try:
                if self.mlflow is not None and not self.resumed:
                    attach_to_parent(self.mlflow.experiment, self.mlflow.run_id)
                yield self
                for lg in self._others():
                    lg.finalize("success")
            except (SystemExit, KeyboardInterrupt, RunInterrupted) as err:
                signum = err.signum if isinstance(err, RunInterrupted) else self.handlers.received
                if stopped is None or signum is None:
                    raise
                raise stopped(signum) from err
        if self.record is not None:
            self.record.end("FINISHED")

    def log_start(self, n_params: int | None = None) -> None:
        """Params, datasets and the config, once per run and before fitting; a resumed run
        keeps its original config and gets the resuming command beside it. ``n_params``
        None: the model's size is only known once fitted (baselines), logged then with
        :meth:`log_params`."""
        if not self.rank_zero:
            return
        params = {**flatten(OmegaConf.to_container(self.cfg, resolve=True)),
                  **{f"data.{k}": v for k, v in self.dm.describe().items()}}
        if n_params is not None:
            params["model.num_parameters"] = n_params
        overrides = redact("\n".join(_overrides()) + "\n")
        if self.mlflow is not None and self.resumed:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            self.mlflow.experiment.log_text(self.mlflow.run_id, overrides,
                                            f"config/resumed-{stamp}.txt")
            for lg in self._others():
                lg.log_hyperparams(params)
            return
        self.log_params(params)
        if self.mlflow is None:
            return
        client, run_id = self.mlflow.experiment, self.mlflow.run_id
        log_datasets(client, run_id, self.dm, str(self.cfg.task.name))
        # word vectors trained for this run (task.embeddings.train): the exact vectors its
        # model started from
        artifact = getattr(self.dm, "embeddings_artifact", None)
        if artifact is not None:
            client.log_artifact(run_id, str(artifact), "embeddings")
        client.log_text(run_id, redact(OmegaConf.to_yaml(self.cfg, resolve=True)),
                        "config/config.yaml")
        client.log_text(run_id, overrides, "config/overrides.txt")

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Params to every logger (MLflow's untruncated, without the run-local paths that
        :func:`run_tags` made tags), from rank zero."""
        if not self.rank_zero:
            return
        if self.mlflow is not None:
            local = local_paths(params, self.cfg)
            log_params(self.mlflow, {k: v for k, v in params.items() if k not in local})
        for lg in self._others():
            lg.log_hyperparams(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Final metrics of a run without a Trainer (which would log its own)."""
        for lg in self.loggers:
            lg.log_metrics(dict(metrics), step=step)
            lg.save()

    def log_checkpoint(self, path: str, metrics: Mapping[str, float]) -> None:
        """The best checkpoint's monitored score as ``best/<monitor>``, and its file as the
        artifact ``checkpoints/best.ckpt`` only when no servable model will carry its
        weights (:meth:`publish` uploads it after all if logging the model fails): one
        copy of the best weights per run. ``logger.mlflow.upload_last`` (default off)
        also uploads ``last.ckpt``, which otherwise stays in the run's folder for
        ``ckpt_path=auto``."""
        if self.mlflow is None:
            return
        self.best = path
        client, run_id = self.mlflow.experiment, self.mlflow.run_id
        if not self._logs_model():
            client.log_artifact(run_id, path, "checkpoints")
        last = Path(path).with_name("last.ckpt")
        if OmegaConf.select(self.cfg, "logger.mlflow.upload_last", default=False) \
                and last.is_file():
            client.log_artifact(run_id, str(last), "checkpoints")
        key = f"best/{self.cfg.task.monitor}"
        if key in metrics:
            self.mlflow.log_metrics({key: metrics[key]})

    def publish(self, log_model: Callable[[MLFlowLogger], T]) -> T | None:
        """``log_model(logger)`` on rank zero when ``logger.mlflow.log_model`` (default on)
        asks for a servable model; what it raises ends the run FAILED in :meth:`recording`."""
        if self.mlflow is None or not self._logs_model():
            return None
        try:
            return log_model(self.mlflow)
        except BaseException:
            # the best weights were left to the model: keep them in the store after all
            if self.best is not None:
                with suppress(Exception):  # the model's own error is the one to see
                    self.mlflow.experiment.log_artifact(self.mlflow.run_id, self.best,
                                                        "checkpoints")
            raise

    def _logs_model(self) -> bool:
        return bool(OmegaConf.select(self.cfg, "logger.mlflow.log_model", default=True))

    def _others(self) -> list[Logger]:
        return [lg for lg in self.loggers if not isinstance(lg, MLFlowLogger)]


def run_tags(cfg: DictConfig, dm: Any) -> dict[str, str]:
    """The tags every run starts with: what ran (task, model, cell, seed, family), on which
    code and data, where its files are (``rnnlab.output_dir`` and the run-local paths of
    its config as ``rnnlab.local.<key>``), and its configuration's hash (of the whole
    config, as before the paths became tags)."""
    params = flatten(OmegaConf.to_container(cfg, resolve=True))
    local = {f"{LOCAL_TAG}{k}": v for k, v in local_paths(params, cfg).items()}
    return {**sweep_tags(), "task": str(cfg.task.name), "model": str(cfg.model.name),
            "cell": str(cfg.model.get("cell", cfg.model.name)), "seed": str(cfg.seed),
            "family": str(cfg.task.get("family")), "git_commit": git_commit(cfg.paths.root_dir),
            "data_fingerprint": dm.fingerprint, "rnnlab.output_dir": str(cfg.paths.output_dir),
            **local, **config_tags(params, dm.fingerprint)}


def local_paths(params: Mapping[str, Any], cfg: DictConfig) -> dict[str, str]:
    """The entries of flattened ``params`` that say where this run writes, not what it
    runs: ``paths.output_dir``, ``paths.log_dir`` and every value inside the run's output
    folder (checkpoint folders, the trainer's root, a CSV logger's folder). Paths to data
    or to other runs' checkpoints (an ensemble's members) are settings and stay params."""
    out_dir = str(OmegaConf.select(cfg, "paths.output_dir", default="") or "").rstrip("/")
    local = {}
    for key, value in params.items():
        text = str(value)
        inside = bool(out_dir) and (text == out_dir or text.startswith(out_dir + "/"))
        if key in ("paths.output_dir", "paths.log_dir") or inside:
            local[key] = text
    return local


def logged_config(params: Mapping[str, str], tags: Mapping[str, str]) -> dict[str, str]:
    """A run's flattened config as logged: its params and its ``rnnlab.local.*`` tags."""
    return {**params, **{k.removeprefix(LOCAL_TAG): v for k, v in tags.items()
                         if k.startswith(LOCAL_TAG)}}


def _overrides() -> list[str]:
    """The command line's overrides (none when composed outside ``@hydra.main``: tests)."""
    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:
        return []
