"""Callbacks that keep runs comparable: throughput, plain epoch lines, checkpoint metadata."""

from __future__ import annotations

import sys
import time
from typing import Any

import pytorch_lightning as pl
import torch


class ThroughputMonitor(pl.Callback):
    """Logs ``perf/train_items_per_sec`` (tokens or frames when the batch has ``lengths``,
    else examples) and ``perf/epoch_seconds`` each training epoch."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._items = 0
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if isinstance(batch, dict) and isinstance(batch.get("lengths"), torch.Tensor):
            self._items += int(batch["lengths"].sum())
        elif isinstance(batch, dict) and "x" in batch:
            x = batch["x"]
            self._items += int(x.shape[0] * (x.shape[1] if x.dim() > 1 else 1))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        elapsed = time.perf_counter() - self._start
        pl_module.log_dict({"perf/train_items_per_sec": self._items / max(elapsed, 1e-9),
                            "perf/epoch_seconds": elapsed}, on_epoch=True, sync_dist=False)


class EpochPrinter(pl.Callback):
    """One plain line per validation epoch, for logs without a progress bar (CI, clusters).

    Printed in ``on_validation_end``: it runs after the module's own epoch-end hook, where
    some tasks compute their epoch metrics (entity F1, BLEU)."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.global_rank != 0:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
                   if k == "train/loss_epoch" or k.startswith("val/")}
        shown = "  ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
        print(f"epoch {trainer.current_epoch}: {shown}", file=sys.stderr, flush=True)


class RunMetadata(pl.Callback):
    """Stores what rebuilding the model needs (resolved config, data spec, vocabularies)
    and the MLflow run id in every checkpoint, so resuming continues the same run and
    inference commands need neither the config nor the data."""

    def __init__(self, config: dict, spec: dict, data_state: dict) -> None:
        self.config = config
        self.spec = spec
        self.data_state = data_state

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        from pytorch_lightning.loggers import MLFlowLogger

        run_id = tracking_uri = None
        for logger in trainer.loggers:
            if isinstance(logger, MLFlowLogger):
                run_id, tracking_uri = logger.run_id, logger._tracking_uri
        checkpoint["rnnlab"] = {"config": self.config, "spec": self.spec,
                                "data_state": self.data_state, "mlflow_run_id": run_id,
                                "tracking_uri": tracking_uri}
