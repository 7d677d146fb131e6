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
from types import SimpleNamespace
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from rnnlab.config import config_dir, register_resolvers
from rnnlab.errors import UserError

register_resolvers()
log = logging.getLogger("rnnlab")
# keep the console for what matters: no advertising tip, no third-party deprecation noise
logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(
    lambda record: "litlogger" not in record.getMessage())
warnings.filterwarnings("ignore", message=".*treespec, LeafSpec.*")


def _interactive() -> bool:
    return sys.stdout.isatty() and not os.environ.get("CI")


def _run_tags(cfg: DictConfig, dm: Any) -> dict[str, str]:
    from rnnlab.tracking.mlflow import git_commit
    from rnnlab.tracking.sweep import sweep_tags

    return {**sweep_tags(), "task": str(cfg.task.name), "model": str(cfg.model.name),
            "cell": str(cfg.model.get("cell", cfg.model.name)), "seed": str(cfg.seed),
            "family": str(cfg.task.get("family")), "git_commit": git_commit(cfg.paths.root_dir),
            "data_fingerprint": dm.fingerprint}


def _loggers(cfg: DictConfig, dm: Any, run_id: str | None) -> list:
    from hydra.utils import instantiate

    from rnnlab.tracking.mlflow import make_mlflow_logger
    from rnnlab.tracking.sweep import attach_to_parent

    out = []
    for name, conf in (cfg.get("logger") or {}).items():
        if conf is None:
            continue
        if name == "mlflow":
            kwargs = OmegaConf.to_container(conf, resolve=True)
            kwargs.pop("_target_", None)
            kwargs["run_name"] = kwargs.get("run_name") or f"{cfg.model.name}-s{cfg.seed}"
            logger = make_mlflow_logger(**kwargs, root_dir=cfg.paths.root_dir,
                                        tags=_run_tags(cfg, dm), run_id=run_id)
            if run_id is None:
                attach_to_parent(logger.experiment, logger.run_id)
            out.append(logger)
        else:
            out.append(instantiate(conf))
    return out


def _resume_run_id(ckpt_path: str | None) -> str | None:
    if not ckpt_path:
        return None
    import torch

    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise UserError(f"ckpt_path={ckpt_path} is not a readable checkpoint ({err}); give a "
                        f".ckpt file written by this lab.") from err
    return (ckpt.get("rnnlab") or {}).get("mlflow_run_id")


def _log_run_start(loggers: list, cfg: DictConfig, dm: Any, n_params: int) -> None:
    from pytorch_lightning.loggers import MLFlowLogger

    from rnnlab.tracking.mlflow import flatten, log_params

    resolved = OmegaConf.to_container(cfg, resolve=True)
    params = {**flatten(resolved), **{f"data.{k}": v for k, v in dm.describe().items()},
              "model.num_parameters": n_params}
    for lg in loggers:
        if isinstance(lg, MLFlowLogger):
            log_params(lg, params)
            lg.experiment.log_text(lg.run_id, OmegaConf.to_yaml(cfg, resolve=True),
                                   "config/config.yaml")
            overrides = _hydra_overrides()
            lg.experiment.log_text(lg.run_id, "\n".join(overrides) + "\n", "config/overrides.txt")
        else:
            lg.log_hyperparams(params)


def _hydra_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:  # composed outside @hydra.main (tests)
        return []


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


def run_baseline(cfg: DictConfig, dm: Any) -> dict[str, float]:
    from pytorch_lightning.loggers import MLFlowLogger

    from rnnlab.build import build_baseline

    baseline = build_baseline(cfg)
    loggers = _loggers(cfg, dm, run_id=None)
    shim = SimpleNamespace(loggers=loggers, global_rank=0, log_dir=cfg.paths.output_dir)
    start = time.perf_counter()
    try:
        metrics = baseline.fit_evaluate(dm, shim)
        metrics["perf/fit_seconds"] = time.perf_counter() - start
        _log_run_start(loggers, cfg, dm, baseline.num_parameters())
        for lg in loggers:
            lg.log_metrics(metrics, step=0)
    except BaseException:
        for lg in loggers:
            lg.finalize("failed")
        raise
    for lg in loggers:
        if isinstance(lg, MLFlowLogger):
            lg.finalize("success")
        else:
            lg.save()
    return metrics


def run_network(cfg: DictConfig, dm: Any) -> dict[str, float]:
    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import ModelCheckpoint, RichProgressBar
    from pytorch_lightning.loggers import MLFlowLogger

    from rnnlab.build import build_callbacks, build_module
    from rnnlab.tracking.callbacks import EpochPrinter, RunMetadata, ThroughputMonitor

    module = build_module(cfg, dm.spec)
    callbacks = build_callbacks(cfg)  # before the loggers: a refused config records nothing
    # an ensemble's test is a run of its own: it must not overwrite the first member's figures
    ensemble = (cfg.task.get("module") or {}).get("ensemble")
    resume = None if ensemble else _resume_run_id(cfg.get("ckpt_path"))
    loggers = _loggers(cfg, dm, run_id=resume)
    callbacks += [ThroughputMonitor(),
                  RunMetadata(OmegaConf.to_container(cfg, resolve=True), dm.spec,
                              dm.checkpoint_state())]
    interactive = _interactive()
    callbacks.append(RichProgressBar() if interactive else EpochPrinter())
    trainer = instantiate(cfg.trainer, _partial_=True)(
        callbacks=callbacks, logger=loggers or False, enable_progress_bar=interactive)
    _log_run_start(loggers, cfg, dm, module.num_parameters())
    metrics: dict[str, float] = {}
    if cfg.get("train", True):
        trainer.fit(module, datamodule=dm, ckpt_path=cfg.get("ckpt_path"))
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    ckpt = next((c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)), None)
    best = ckpt.best_model_path if ckpt is not None and ckpt.best_model_path else None
    if best and ckpt.best_model_score is not None:
        metrics[f"best/{cfg.task.monitor}"] = float(ckpt.best_model_score)
    if cfg.get("test", True):
        test_ckpt = best if cfg.get("train", True) else cfg.get("ckpt_path")
        results = trainer.test(module, datamodule=dm, ckpt_path=test_ckpt, verbose=False)
        metrics.update({k: float(v) for k, v in (results[0] if results else {}).items()})
    for lg in loggers:
        if isinstance(lg, MLFlowLogger) and best:
            lg.experiment.log_artifact(lg.run_id, best, "checkpoints")
            if f"best/{cfg.task.monitor}" in metrics:
                lg.log_metrics({f"best/{cfg.task.monitor}": metrics[f"best/{cfg.task.monitor}"]})
        lg.finalize("success")
    metrics["ckpt_path"] = best  # type: ignore[assignment]
    return metrics


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train (or fit a baseline) and test as ``cfg`` says; returns the final metrics."""
    import pytorch_lightning as pl

    from rnnlab.build import build_datamodule, check_pair, is_baseline

    # MLflow exports the URI it last used into the environment; a later run in the same
    # process (a sweep job, a test) must resolve its own store, not inherit that one
    uri_before = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        check_pair(cfg)
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        dm = build_datamodule(cfg)
        dm.prepare_data()
        dm.setup("fit")
        metrics = run_baseline(cfg, dm) if is_baseline(cfg) else run_network(cfg, dm)
    finally:
        if os.environ.get("MLFLOW_TRACKING_URI") != uri_before:
            import mlflow

            mlflow.set_tracking_uri(uri_before)
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
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    """Console-script entry (``rnnlab-train``); Hydra reads the command line."""
    hydra_main()


if __name__ == "__main__":
    main()
