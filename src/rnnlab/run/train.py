"""``python train.py model=gru task=ner``: compose, build, train, test, track.

The flow is the same for every task: prepare data -> build the model from the data's
spec -> fit with early stopping on the task's monitored metric -> test the best
checkpoint -> log it all to the task's MLflow experiment. Non-neural baselines take the
same path minus the Trainer. Returns the monitored value (for Optuna sweeps).
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, OmegaConf

from rnnlab.core.errors import ConfigError, UserError
from rnnlab.core.paths import config_dir, register_resolvers
from rnnlab.run.resume import CheckpointPlan, plan_checkpoint
from rnnlab.tracking.record import RunInterrupted

if TYPE_CHECKING:
    from rnnlab.tracking.record import RunRecord, SignalHandlers

register_resolvers()
log = logging.getLogger("rnnlab")
# keep the console for what matters: no advertising tip, no third-party deprecation noise
logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(
    lambda record: "litlogger" not in record.getMessage())
warnings.filterwarnings("ignore", message=".*treespec, LeafSpec.*")
# under DDP, train/* and perf/* are rank zero's own figures by design (every val/test metric
# is reduced across ranks by the tasks themselves): no per-key advice to sync them
warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\('(train|perf)/")


def _interactive() -> bool:
    return sys.stdout.isatty() and not os.environ.get("CI")


def _run_tags(cfg: DictConfig, dm: Any) -> dict[str, str]:
    from rnnlab.tracking.config_hash import config_tags
    from rnnlab.tracking.mlflow import git_commit
    from rnnlab.tracking.sweep import sweep_tags

    return {**sweep_tags(), "task": str(cfg.task.name), "model": str(cfg.model.name),
            "cell": str(cfg.model.get("cell", cfg.model.name)), "seed": str(cfg.seed),
            "family": str(cfg.task.get("family")), "git_commit": git_commit(cfg.paths.root_dir),
            "data_fingerprint": dm.fingerprint, "rnnlab.output_dir": str(cfg.paths.output_dir),
            **config_tags(cfg, dm.fingerprint)}


def _loggers(cfg: DictConfig, dm: Any, plan: CheckpointPlan) -> list:
    """The configured loggers. On global rank zero the MLflow run is created (or, when
    resuming, reopened) here; other DDP ranks get loggers that write nothing."""
    from hydra.utils import instantiate

    from rnnlab.core.dist import is_rank_zero
    from rnnlab.tracking.mlflow import make_mlflow_logger, redact

    rank_zero = is_rank_zero()
    out = []
    for name, conf in (cfg.get("logger") or {}).items():
        if conf is None:
            continue
        if name == "mlflow":
            kwargs = OmegaConf.to_container(conf, resolve=True)
            kwargs.pop("_target_", None)
            kwargs.pop("log_model", None)  # read where the model is logged
            kwargs["run_name"] = kwargs.get("run_name") or (
                f"{cfg.model.name}-s{cfg.seed}" + ("-test" if plan.evaluates else ""))
            tags = {**_run_tags(cfg, dm), **plan.tags()} if rank_zero else None
            logger = make_mlflow_logger(
                **kwargs, root_dir=cfg.paths.root_dir, tags=tags, run_id=plan.resume_run_id,
                description=redact(" ".join(["python train.py", *_hydra_overrides()])),
                rank_zero=rank_zero)
            out.append(logger)
        else:
            out.append(instantiate(conf))
    return out


def _log_run_start(loggers: list, cfg: DictConfig, dm: Any, n_params: int,
                   resumed: bool = False) -> None:
    """Params and the config, once per run: a resumed run keeps its original config and
    gets the resuming command beside it."""
    from pytorch_lightning.loggers import MLFlowLogger

    from rnnlab.core.dist import is_rank_zero
    from rnnlab.tracking.datasets import log_datasets
    from rnnlab.tracking.mlflow import flatten, log_params, redact

    if not is_rank_zero():
        return
    resolved = OmegaConf.to_container(cfg, resolve=True)
    params = {**flatten(resolved), **{f"data.{k}": v for k, v in dm.describe().items()},
              "model.num_parameters": n_params}
    overrides = redact("\n".join(_hydra_overrides()) + "\n")
    for lg in loggers:
        if isinstance(lg, MLFlowLogger):
            if resumed:
                stamp = time.strftime("%Y%m%d-%H%M%S")
                lg.experiment.log_text(lg.run_id, overrides, f"config/resumed-{stamp}.txt")
                continue
            log_params(lg, params)
            log_datasets(lg.experiment, lg.run_id, dm, str(cfg.task.name))
            _log_embeddings(lg, dm)
            lg.experiment.log_text(lg.run_id, redact(OmegaConf.to_yaml(cfg, resolve=True)),
                                   "config/config.yaml")
            lg.experiment.log_text(lg.run_id, overrides, "config/overrides.txt")
        else:
            lg.log_hyperparams(params)


def _log_embeddings(logger: Any, dm: Any) -> None:
    """Word vectors trained for this run (``task.embeddings.train``) become the artifact
    ``embeddings/vectors.txt``: the run then holds the exact vectors its model started from."""
    artifact = getattr(dm, "embeddings_artifact", None)
    if artifact is not None:
        logger.experiment.log_artifact(logger.run_id, str(artifact), "embeddings")


def _hydra_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:  # composed outside @hydra.main (tests)
        return []


def _record_for(loggers: list) -> RunRecord | None:
    """Rank zero's MLflow run, which it alone ends (other ranks: see RunRecord.guard_worker),
    exported so that DDP workers started from here know it."""
    from pytorch_lightning.loggers import MLFlowLogger

    from rnnlab.core.dist import is_rank_zero
    from rnnlab.tracking.record import RunRecord

    if not is_rank_zero():
        return None
    for lg in loggers:
        if isinstance(lg, MLFlowLogger):
            record = RunRecord(lg.experiment, lg.run_id)
            record.export(lg._tracking_uri)
            return record
    return None


def _logs_model(cfg: DictConfig) -> bool:
    """``logger.mlflow.log_model``: a servable MLflow model per finished run (default on)."""
    return bool(OmegaConf.select(cfg, "logger.mlflow.log_model", default=True))


def _system_metrics_on(loggers: list) -> bool:
    return any(getattr(lg, "log_system_metrics", False) for lg in loggers)


def _attach_to_sweep(loggers: list, plan: CheckpointPlan) -> None:
    """A new run of a multirun job becomes a child of its sweep's parent run."""
    from pytorch_lightning.loggers import MLFlowLogger

    from rnnlab.core.dist import is_rank_zero
    from rnnlab.tracking.sweep import attach_to_parent

    if plan.resume_run_id is not None or not is_rank_zero():
        return
    for lg in loggers:
        if isinstance(lg, MLFlowLogger):
            attach_to_parent(lg.experiment, lg.run_id)


def _print_summary(title: str, metrics: dict[str, float]) -> None:
    rows = sorted((k, v) for k, v in metrics.items() if k.startswith(("test/", "val/")))
    if _interactive():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        table.add_column("metric")
        table.add_column("value", justify="right")
        for k, v in rows:
            table.add_row(k, f"{v:.4f}")
        Console().print(table)
    else:
        print(title)
        for k, v in rows:
            print(f"  {k:<24} {v:.4f}")


def run_baseline(cfg: DictConfig, dm: Any, handlers: SignalHandlers) -> dict[str, float]:
    from rnnlab.build import build_baseline
    from rnnlab.serving.publish import log_baseline_model
    from rnnlab.tracking.mlflow import system_metrics
    from rnnlab.tracking.record import recorded

    baseline = build_baseline(cfg)
    loggers = _loggers(cfg, dm, CheckpointPlan())
    record = _record_for(loggers)
    shim = SimpleNamespace(loggers=loggers, global_rank=0, log_dir=cfg.paths.output_dir)
    start = time.perf_counter()
    with recorded(record, handlers), system_metrics(loggers, _system_metrics_on(loggers)):
        _attach_to_sweep(loggers, CheckpointPlan())
        metrics = baseline.fit_evaluate(dm, shim)
        metrics["perf/fit_seconds"] = time.perf_counter() - start
        _log_run_start(loggers, cfg, dm, baseline.num_parameters())
        for lg in loggers:
            lg.log_metrics(metrics, step=0)
            lg.save()
        if _logs_model(cfg):
            log_baseline_model(loggers, cfg, baseline, dm, metrics)
    if record is not None:
        record.end("FINISHED")
    return metrics


def make_trainer(cfg: DictConfig, callbacks: list) -> Any:
    """The Trainer, built before any run is recorded so that bad ``trainer.*`` values and
    a missing accelerator stop the command with one sentence and no run left behind."""
    import torch
    from hydra.utils import instantiate

    accelerator = str(cfg.trainer.get("accelerator") or "auto")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={accelerator} but this machine has no usable "
                          f"CUDA GPU; use trainer=cpu (or trainer.accelerator=auto), or run "
                          f"where a GPU is visible.")
    interactive = _interactive()
    try:
        return instantiate(cfg.trainer, _partial_=True)(
            callbacks=callbacks, logger=False, enable_progress_bar=interactive)
    except Exception as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"the trainer refused its settings ({reason}); fix the trainer.* "
                          f"value it names (see conf/trainer/).") from err


def run_network(cfg: DictConfig, dm: Any, handlers: SignalHandlers) -> dict[str, float]:
    from pytorch_lightning.callbacks import ModelCheckpoint, RichProgressBar

    from rnnlab.build import build_callbacks, build_module
    from rnnlab.tracking.callbacks import (
        DivergenceGuard,
        EpochPrinter,
        RunMetadata,
        SignalCheckpoint,
        ThroughputMonitor,
    )
    from rnnlab.tracking.mlflow import system_metrics
    from rnnlab.tracking.record import recorded

    module = build_module(cfg, dm.spec)
    callbacks = build_callbacks(cfg)  # before the loggers: a refused config records nothing
    plan = plan_checkpoint(cfg, dm, module)
    ckpt_dir = next((c.dirpath for c in callbacks if isinstance(c, ModelCheckpoint)
                     and c.dirpath), f"{cfg.paths.output_dir}/checkpoints")
    stop_checkpoint = SignalCheckpoint(handlers, ckpt_dir)
    callbacks += [ThroughputMonitor(), DivergenceGuard(cfg.task.monitor), stop_checkpoint,
                  RunMetadata(OmegaConf.to_container(cfg, resolve=True), dm.spec,
                              dm.checkpoint_state(), dm.fingerprint)]
    callbacks.append(RichProgressBar() if _interactive() else EpochPrinter())
    trainer = make_trainer(cfg, callbacks)
    loggers = _loggers(cfg, dm, plan)
    trainer.loggers = loggers
    record = _record_for(loggers)
    handlers.trainer = trainer
    with recorded(record, handlers), system_metrics(loggers, _system_metrics_on(loggers)):
        try:
            _attach_to_sweep(loggers, plan)
            _log_run_start(loggers, cfg, dm, module.num_parameters(),
                           resumed=plan.resume_run_id is not None)
            metrics, best = _fit_and_test(cfg, trainer, module, dm, plan)
            _log_run_end(loggers, cfg, metrics, best)
        except (SystemExit, KeyboardInterrupt, RunInterrupted) as err:
            signum = err.signum if isinstance(err, RunInterrupted) else handlers.received
            if signum is None:
                raise
            raise _interrupted(signum, trainer, stop_checkpoint.saved) from err
    if record is not None:
        record.end("FINISHED")
    metrics["ckpt_path"] = best  # type: ignore[assignment]
    return metrics


def _fit_and_test(cfg: DictConfig, trainer: Any, module: Any, dm: Any, plan: CheckpointPlan
                  ) -> tuple[dict[str, float], str | None]:
    """Fit with early stopping, then test the best checkpoint (or, test-only, the given
    weights, which plan_checkpoint has loaded and checked)."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    metrics: dict[str, float] = {}
    if cfg.get("train", True):
        trainer.fit(module, datamodule=dm, ckpt_path=plan.path, weights_only=True)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    # the callback that watches the task's metric (the other one keeps last.ckpt)
    ckpt = next((c for c in trainer.checkpoint_callbacks
                 if isinstance(c, ModelCheckpoint) and c.monitor is not None), None)
    best = ckpt.best_model_path if ckpt is not None and ckpt.best_model_path else None
    if best and ckpt.best_model_score is not None:
        metrics[f"best/{cfg.task.monitor}"] = float(ckpt.best_model_score)
    if cfg.get("test", True):
        test_ckpt = best if cfg.get("train", True) else None
        results = trainer.test(module, datamodule=dm, ckpt_path=test_ckpt, verbose=False,
                               weights_only=True)
        metrics.update({k: float(v) for k, v in (results[0] if results else {}).items()})
    return metrics, best


def _log_run_end(loggers: list, cfg: DictConfig, metrics: dict[str, float],
                 best: str | None) -> None:
    from pytorch_lightning.loggers import MLFlowLogger

    from rnnlab.core.dist import is_rank_zero
    from rnnlab.serving.publish import log_servable_model

    for lg in loggers:
        if isinstance(lg, MLFlowLogger) and best and is_rank_zero():
            lg.experiment.log_artifact(lg.run_id, best, "checkpoints")
            if f"best/{cfg.task.monitor}" in metrics:
                lg.log_metrics({f"best/{cfg.task.monitor}": metrics[f"best/{cfg.task.monitor}"]})
            if _logs_model(cfg):  # raises into recorded(): the run ends FAILED
                log_servable_model(lg, cfg, best)
        if not isinstance(lg, MLFlowLogger):
            lg.finalize("success")


def _interrupted(signum: int, trainer: Any, saved: Path | None) -> RunInterrupted:
    """The KILLED run's sentence: where it stopped and how to continue it."""
    from rnnlab.tracking.record import signal_name

    where = f"at step {trainer.global_step} (epoch {trainer.current_epoch})"
    if saved is not None:
        how = (f"; checkpoint {saved}; continue with the same command plus "
               f"ckpt_path={saved} (or ckpt_path=auto)")
    else:
        how = "; no checkpoint was written (training had not started or had ended)"
    return RunInterrupted(signum, f"interrupted by {signal_name(signum)} {where}{how}.")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train (or fit a baseline) and test as ``cfg`` says; returns the final metrics."""
    import pytorch_lightning as pl

    from rnnlab.build import build_datamodule, check_pair, is_baseline
    from rnnlab.core.dist import is_rank_zero
    from rnnlab.run.preflight import preflight, redact_hydra_files
    from rnnlab.tracking.record import RunRecord, SignalHandlers

    # MLflow exports the URI it last used into the environment; a later run in the same
    # process (a sweep job, a test) must resolve its own store, not inherit that one
    uri_before = os.environ.get("MLFLOW_TRACKING_URI")
    handlers = SignalHandlers()
    handlers.install()
    try:
        redact_hydra_files()
        check_pair(cfg)
        preflight(cfg)
        pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
        dm = build_datamodule(cfg)
        with RunRecord.guard_worker():
            dm.prepare_data()
            dm.setup("fit")
            metrics = (run_baseline(cfg, dm, handlers) if is_baseline(cfg)
                       else run_network(cfg, dm, handlers))
    finally:
        handlers.restore()
        RunRecord.unexport()
        if os.environ.get("MLFLOW_TRACKING_URI") != uri_before:
            import mlflow

            mlflow.set_tracking_uri(uri_before)
    if is_rank_zero():
        _print_summary(f"{cfg.task.name} / {cfg.model.name} (seed {cfg.seed})",
                       {k: v for k, v in metrics.items() if isinstance(v, float)})
    return metrics


def objective(cfg: DictConfig, metrics: dict[str, Any]) -> float | None:
    """The value a sweeper optimises: the best validation score of the monitored metric."""
    monitor = cfg.task.monitor
    value = metrics.get(f"best/{monitor}", metrics.get(monitor))
    return None if value is None else float(value)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    from rnnlab.build import IncompatiblePair
    from rnnlab.tracking.mlflow import redact
    from rnnlab.tracking.record import Diverged
    from rnnlab.tracking.sweep import current_sweep

    try:
        return objective(cfg, run(cfg))
    except IncompatiblePair as err:
        if current_sweep() is None:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        print(f"skipped: {err}", file=sys.stderr)  # a grid may hold pairs that cannot work
        return None
    except UserError as err:
        print(f"error: {redact(str(err))}", file=sys.stderr)
        sys.exit(2)
    except Diverged as err:
        if current_sweep() is None:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)
        print(f"failed: {err}", file=sys.stderr)  # one bad trial does not end a search
        return float("nan")
    except RunInterrupted as err:
        print(f"killed: {err}", file=sys.stderr)
        sys.exit(err.exit_code)


def main() -> None:
    """Console-script entry (``rnnlab-train``); Hydra reads the command line.

    The command line's config is composed and checked against the schemas first, so a
    wrong type, unknown key or value outside its choices is one sentence and exit 2,
    before Hydra makes a run folder."""
    from rnnlab.build.schema import check_command_line, register_configs

    register_configs()
    try:
        check_command_line(sys.argv[1:])
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    hydra_main()


if __name__ == "__main__":
    main()
