"""Callbacks that keep runs comparable and honest: throughput, plain epoch lines, checkpoint
metadata, and the guards that stop a diverged or signalled run with a true record."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint, RichProgressBar
from pytorch_lightning.loggers import MLFlowLogger

from rnnlab.data.spec import DataSpec
from rnnlab.tracking.checksums import Checksums
from rnnlab.tracking.mlflow import redact, redact_config
from rnnlab.tracking.record import Diverged, RunInterrupted, SignalHandlers, signal_name


def lab_callbacks(cfg: DictConfig, dm: Any, stop: SignalCheckpoint, interactive: bool
                  ) -> list[pl.Callback]:
    """What every network run gets beside its configured callbacks: throughput, the
    divergence guard, the signal checkpoint, the metadata that makes its checkpoints
    loadable, and a progress bar (``interactive``) or one plain line per epoch."""
    return [ThroughputMonitor(), DivergenceGuard(cfg.task.monitor), stop, Checksums(),
            RunMetadata(OmegaConf.to_container(cfg, resolve=True), dm.spec,
                        dm.checkpoint_state(), dm.fingerprint),
            RichProgressBar() if interactive else EpochPrinter()]


class ThroughputMonitor(pl.Callback):
    """Logs ``perf/train_items_per_sec`` (tokens or frames when the batch has ``lengths``,
    else examples) and ``perf/epoch_seconds`` each training epoch."""

    def __init__(self) -> None:
        self._items = 0
        self._start = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._items = 0
        self._start = time.perf_counter()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a run resumed mid-epoch starts here, without on_train_epoch_start
        self.on_train_epoch_start(trainer, pl_module)

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
    inference commands need neither the config nor the data. Credentials in the config (a
    tracking server's ``user:password@``) are left out: a checkpoint travels further than
    the run (MLflow artifacts, the logged model)."""

    def __init__(self, config: dict, spec: DataSpec, data_state: dict,
                 data_fingerprint: str = "") -> None:
        self.config = redact_config(config)
        # plain values (to_dict leaves out the word vectors a run started from: they are
        # in the weights already, a second copy would add vocabulary x dim floats)
        self.spec = spec.to_dict()
        self.data_state = data_state
        self.data_fingerprint = data_fingerprint

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        run_id = tracking_uri = None
        for logger in trainer.loggers:
            if isinstance(logger, MLFlowLogger):
                run_id, tracking_uri = logger.run_id, redact(logger._tracking_uri)
        checkpoint["rnnlab"] = {"config": self.config, "spec": self.spec,
                                "data_state": self.data_state, "mlflow_run_id": run_id,
                                "tracking_uri": tracking_uri,
                                "data_fingerprint": self.data_fingerprint}


class SignalCheckpoint(pl.Callback):
    """Writes ``last.ckpt`` when a signal stops training, so the run can be resumed.

    It writes the state between two training batches, or at the end of a validation: a
    signal during validation lets that validation finish (:class:`SignalHandlers` waits
    for it, a second signal does not), so the checkpoint carries its scores into the
    monitor's history, as Lightning's own checkpoints after validation do. During the
    sanity check nothing has been trained and nothing is written; during the test stage
    training has ended and the ``last.ckpt`` of its final validation stands."""

    def __init__(self, handlers: SignalHandlers, dirpath: str | Path) -> None:
        self.handlers = handlers
        self.path = Path(dirpath) / "last.ckpt"
        self.saved: Path | None = None
        self._sanity_checking = False

    @classmethod
    def beside(cls, handlers: SignalHandlers, callbacks: list[pl.Callback],
               default_dir: str | Path) -> SignalCheckpoint:
        """Writing into the configured ModelCheckpoint's folder (else ``default_dir``), where
        ``last.ckpt`` is kept anyway and ``ckpt_path=auto`` looks for it."""
        dirpath = next((c.dirpath for c in callbacks
                        if isinstance(c, ModelCheckpoint) and c.dirpath), default_dir)
        return cls(handlers, dirpath)

    def on_sanity_check_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._sanity_checking = True

    def on_sanity_check_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._sanity_checking = False

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a signal that came during this validation: stop now that its scores are in
        if not trainer.sanity_checking:
            self._stop_if_signalled(trainer)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        self._stop_if_signalled(trainer)  # one that came in the last instant of a validation

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop_if_signalled(trainer)

    def _stop_if_signalled(self, trainer: pl.Trainer) -> None:
        if self.handlers.received is not None:
            trainer._signal_connector.received_sigterm = True

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     exception: BaseException) -> None:
        # a second signal (RunInterrupted) may land mid-step: no checkpoint of that state
        if (self.handlers.received is None or isinstance(exception, RunInterrupted)
                or trainer.state.fn is None or trainer.state.fn.value != "fit"
                or self._sanity_checking):
            return
        trainer.save_checkpoint(self.path)
        self.saved = self.path

    def interruption(self, signum: int, trainer: pl.Trainer) -> RunInterrupted:
        """The KILLED run's sentence: where it stopped and how to continue it."""
        where = f"at step {trainer.global_step} (epoch {trainer.current_epoch})"
        kept = self.path if self.path.is_file() else None
        if self.saved is not None:
            how = (f"; checkpoint {self.saved}; continue with the same command plus "
                   f"ckpt_path={self.saved} (or ckpt_path=auto)")
        elif kept is not None:  # stopped outside training: the last validation's stands
            how = (f"; its last checkpoint {kept} stands; continue with the same command "
                   f"plus ckpt_path={kept} (or ckpt_path=auto)")
        elif trainer.global_step == 0:
            how = "; no checkpoint was written (training had not started)"
        else:
            how = ("; no checkpoint was written (these callbacks keep no last.ckpt, or a "
                   "second signal stopped it at once)")
        return RunInterrupted(signum, f"interrupted by {signal_name(signum)} {where}{how}.")


class DivergenceGuard(pl.Callback):
    """Stops training at the first non-finite loss or gradient norm, before the update.

    The gradient check runs after DDP's all-reduce, so every rank sees the same verdict
    and none is left waiting in a collective. Under fp16 mixed precision an inf gradient
    is the loss scaler's business (it skips the step), so only the loss is checked."""

    def __init__(self, monitor: str | None = None) -> None:
        self.monitor = monitor

    @staticmethod
    def _fail(trainer: pl.Trainer, what: str) -> None:
        raise Diverged(f"training diverged at step {trainer.global_step} (epoch "
                       f"{trainer.current_epoch}): {what}; the update was not applied and the "
                       f"last checkpoint before it is kept (lower task.optimizer.lr or set "
                       f"trainer.gradient_clip_val).")

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           loss: torch.Tensor) -> None:
        if trainer.world_size == 1 and not torch.isfinite(loss.detach()).all():
            self._fail(trainer, f"the training loss is {float(loss.detach().float().mean())}")

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: Any) -> None:
        if str(trainer.precision).startswith("16"):
            return
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        if grads:
            norm = torch.nn.utils.get_total_norm(grads)
            if not torch.isfinite(norm):
                self._fail(trainer, f"the gradient norm is {float(norm)}")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not self.monitor:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None and not math.isfinite(float(value)):
            self._fail(trainer, f"{self.monitor} is {float(value)}")

