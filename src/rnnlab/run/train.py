"""``python train.py model=gru task=ner``: one run, read top-down.

compose (Hydra, :func:`hydra_main`) -> preflight (everything checkable from the config,
before anything is recorded) -> build (data, then the model from the data's spec, its
callbacks and trainer) -> fit (early stopping on the task's monitored metric) -> test (the
best checkpoint) -> publish (the servable model). :mod:`rnnlab.tracking.run` records it
all in the task's MLflow experiment. Non-neural baselines take the same path minus the
Trainer. :func:`hydra_main` returns the monitored value, which sweepers optimise.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from types import SimpleNamespace
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint
from rich.console import Console
from rich.table import Table

from rnnlab.build import (
    IncompatiblePair,
    build_baseline,
    build_callbacks,
    build_datamodule,
    build_module,
    check_pair,
    is_baseline,
)
from rnnlab.build.schema import check_command_line, register_configs
from rnnlab.core.dist import is_rank_zero
from rnnlab.core.errors import ConfigError, UserError
from rnnlab.core.paths import config_dir, register_resolvers
from rnnlab.run.preflight import preflight, redact_hydra_files
from rnnlab.run.resume import CheckpointPlan, checkpoint_folder_lock, plan_checkpoint
from rnnlab.serving.publish import log_baseline_model, log_servable_model
from rnnlab.tracking.callbacks import SignalCheckpoint, lab_callbacks
from rnnlab.tracking.mlflow import redact
from rnnlab.tracking.record import Diverged, RunInterrupted, RunRecord, SignalHandlers
from rnnlab.tracking.run import TrackedRun, run_scope
from rnnlab.tracking.sweep import current_sweep, objective

register_resolvers()
# keep the console for what matters: no advertising tip, no third-party deprecation noise
logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(
    lambda record: "litlogger" not in record.getMessage())
warnings.filterwarnings("ignore", message=".*treespec, LeafSpec.*")
# under DDP, train/* and perf/* are rank zero's own figures by design (every val/test metric
# is reduced across ranks by the tasks themselves): no per-key advice to sync them
warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\('(train|perf)/")


def run(cfg: DictConfig, extra_callbacks: Sequence[pl.Callback] = ()) -> dict[str, Any]:
    """Train (or fit a baseline) and test as ``cfg`` says; returns the final metrics.

    ``extra_callbacks`` join a network's trainer beside the configured ones, so that a
    bench can watch a run as a user runs it (baselines have no trainer and ignore them)."""
    with run_scope() as handlers:
        redact_hydra_files()
        check_pair(cfg)
        preflight(cfg)
        pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
        dm = build_datamodule(cfg)
        with RunRecord.guard_worker():  # a DDP worker's crash marks rank zero's run FAILED
            dm.prepare_data()
            dm.setup("fit")
            metrics = train_baseline(cfg, dm, handlers) if is_baseline(cfg) \
                else train_network(cfg, dm, handlers, extra_callbacks)
    if is_rank_zero():
        _print_summary(f"{cfg.task.name} / {cfg.model.name} (seed {cfg.seed})",
                       {k: v for k, v in metrics.items() if isinstance(v, float)})
    return metrics


def train_network(cfg: DictConfig, dm: Any, handlers: SignalHandlers,
                  extra_callbacks: Sequence[pl.Callback] = ()) -> dict[str, Any]:
    """Build -> fit -> test -> publish. The MLflow run starts only once the model, the
    callbacks, the checkpoint plan and the trainer have all accepted the config."""
    module = build_module(cfg, dm.spec)
    callbacks = build_callbacks(cfg)
    plan = plan_checkpoint(cfg, dm, module)
    plan.continue_in_place(callbacks)  # a resume keeps its best score, top-k, early stopping
    stop = SignalCheckpoint.beside(handlers, callbacks, f"{cfg.paths.output_dir}/checkpoints")
    trainer = make_trainer(cfg, [*callbacks, *lab_callbacks(cfg, dm, stop, _interactive()),
                                 *extra_callbacks])
    training = bool(cfg.get("train", True))
    # one process at a time trains into a checkpoint folder (and so continues a run)
    with checkpoint_folder_lock(stop.path.parent, resuming=bool(plan.path)) if training \
            else nullcontext():
        tracked = TrackedRun.start(cfg, dm, handlers, resume_run_id=plan.resume_run_id,
                                   tags=plan.tags(), evaluates=bool(plan.evaluates))
        trainer.loggers = tracked.loggers
        handlers.trainer = trainer
        with tracked.recording(stopped=lambda signum: stop.interruption(signum, trainer)):
            tracked.log_start(module.num_parameters())
            metrics = fit(cfg, trainer, module, dm, plan)
            best = best_checkpoint(cfg, trainer, metrics)
            metrics.update(evaluate(cfg, trainer, module, dm, best))
            if best:
                tracked.log_checkpoint(best, metrics)
                tracked.publish(lambda logger: log_servable_model(logger, cfg, best))
    metrics["ckpt_path"] = best  # type: ignore[assignment]
    return metrics


def train_baseline(cfg: DictConfig, dm: Any, handlers: SignalHandlers) -> dict[str, Any]:
    """The same story without a Trainer: the baseline fits, chooses its settings on val,
    scores val and test, and plots through a trainer-like view of the run's loggers."""
    baseline = build_baseline(cfg)
    tracked = TrackedRun.start(cfg, dm, handlers)
    with tracked.recording():
        tracked.log_start()
        start = time.perf_counter()
        run_view = SimpleNamespace(loggers=tracked.loggers, global_rank=0,
                                   log_dir=cfg.paths.output_dir)
        metrics = baseline.fit_evaluate(dm, run_view)
        metrics["perf/fit_seconds"] = time.perf_counter() - start
        # a baseline's size comes from its data (vocabulary, features): known once fitted
        tracked.log_params({"model.num_parameters": baseline.num_parameters()})
        tracked.log_metrics(metrics)
        tracked.publish(lambda logger: log_baseline_model(logger, cfg, baseline, dm, metrics))
    return metrics


def fit(cfg: DictConfig, trainer: Any, module: Any, dm: Any, plan: CheckpointPlan
        ) -> dict[str, float]:
    """Fit with early stopping (from ``plan.path`` when resuming); nothing when train=false."""
    if not cfg.get("train", True):
        return {}
    trainer.fit(module, datamodule=dm, ckpt_path=plan.path, weights_only=True)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def best_checkpoint(cfg: DictConfig, trainer: Any, metrics: dict[str, float]) -> str | None:
    """The file kept by the callback that watches the task's metric (the other one keeps
    last.ckpt); its score goes into ``metrics`` as ``best/<monitor>``."""
    ckpt = next((c for c in trainer.checkpoint_callbacks
                 if isinstance(c, ModelCheckpoint) and c.monitor is not None), None)
    best = ckpt.best_model_path if ckpt is not None and ckpt.best_model_path else None
    if best and ckpt.best_model_score is not None:
        metrics[f"best/{cfg.task.monitor}"] = float(ckpt.best_model_score)
    return best


def evaluate(cfg: DictConfig, trainer: Any, module: Any, dm: Any, best: str | None
             ) -> dict[str, float]:
    """The test stage: the best checkpoint, or, test-only, the weights plan_checkpoint has loaded."""
    if not cfg.get("test", True):
        return {}
    ckpt = best if cfg.get("train", True) else None
    results = trainer.test(module, datamodule=dm, ckpt_path=ckpt, verbose=False,
                           weights_only=True)
    return {k: float(v) for k, v in (results[0] if results else {}).items()}


def make_trainer(cfg: DictConfig, callbacks: list) -> Any:
    """The Trainer, built before any run is recorded so that bad ``trainer.*`` values and
    a missing accelerator stop the command with one sentence and no run left behind."""
    accelerator = str(cfg.trainer.get("accelerator") or "auto")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={accelerator} but this machine has no usable "
                          f"CUDA GPU; use trainer=cpu (or trainer.accelerator=auto), or run "
                          f"where a GPU is visible.")
    try:
        return instantiate(cfg.trainer, _partial_=True)(
            callbacks=callbacks, logger=False, enable_progress_bar=_interactive())
    except Exception as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"the trainer refused its settings ({reason}); fix the trainer.* "
                          f"value it names (see conf/trainer/).") from err


def _interactive() -> bool:
    return sys.stdout.isatty() and not os.environ.get("CI")


def _print_summary(title: str, metrics: dict[str, float]) -> None:
    rows = sorted((k, v) for k, v in metrics.items() if k.startswith(("test/", "val/")))
    if _interactive():
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


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
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
        if current_sweep() is not None:
            raise  # tracking.sweep records the job FAILED and the sweep goes on
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
    register_configs()
    try:
        check_command_line(sys.argv[1:])
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    hydra_main()


if __name__ == "__main__":
    main()
