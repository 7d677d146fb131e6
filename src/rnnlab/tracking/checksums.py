"""A sha256 beside every checkpoint the lab writes, and in the run.

A checkpoint copied half-way, truncated by a full disk or damaged on the way loads
silently when its damage falls inside tensor bytes: the model is simply wrong. Every
checkpoint a run saves (best, last, the signal checkpoint) gets ``<file>.sha256`` beside
it, in ``sha256sum``'s format, written by the strategy's checkpoint I/O right after the
file itself (so no save path can miss it, and a checkpoint Lightning deletes takes its
digest along); the best checkpoint's digest is also the run's ``rnnlab.best_ckpt_sha256``
tag. :func:`rnnlab.build.checkpoint.read_checkpoint` checks the digest when it is there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.plugins import CheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import MLFlowLogger

from rnnlab.data.sources import sha256_of

SUFFIX = ".sha256"
BEST_TAG = "rnnlab.best_ckpt_sha256"


def checksum_path(path: str | Path) -> Path:
    return Path(f"{path}{SUFFIX}")


def write_checksum(path: str | Path) -> str:
    """Write ``<path>.sha256`` (``sha256sum -c`` reads it) and return the digest."""
    digest = sha256_of(Path(path))
    checksum_path(path).write_text(f"{digest}  {Path(path).name}\n")
    return digest


def recorded_checksum(path: str | Path) -> str | None:
    """The digest written beside ``path``, or None when there is none (older checkpoints)."""
    sidecar = checksum_path(path)
    if not sidecar.is_file():
        return None
    fields = sidecar.read_text().split()
    return fields[0].lower() if fields else ""


class ChecksumIO(CheckpointIO):
    """The strategy's checkpoint I/O, plus the digest beside each file it saves."""

    def __init__(self, inner: CheckpointIO) -> None:
        self.inner = inner

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        self.inner.save_checkpoint(checkpoint, path, storage_options=storage_options)
        if Path(path).is_file():  # a local file (a remote URL is the store's business)
            write_checksum(path)

    def load_checkpoint(self, path: Any, map_location: Any | None = None,
                        **kwargs: Any) -> dict[str, Any]:
        return self.inner.load_checkpoint(path, map_location=map_location, **kwargs)

    def remove_checkpoint(self, path: Any) -> None:
        self.inner.remove_checkpoint(path)
        checksum_path(path).unlink(missing_ok=True)

    def teardown(self) -> None:
        self.inner.teardown()


class Checksums(pl.Callback):
    """Puts :class:`ChecksumIO` under the trainer's strategy; at the end of fitting, tags
    the run with the best checkpoint's digest."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        strategy = trainer.strategy
        if not isinstance(strategy.checkpoint_io, ChecksumIO):
            strategy.checkpoint_io = ChecksumIO(strategy.checkpoint_io)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_rank != 0:
            return
        best = next((c.best_model_path for c in trainer.checkpoint_callbacks
                     if isinstance(c, ModelCheckpoint) and c.monitor and c.best_model_path),
                    None)
        digest = recorded_checksum(best) if best else None
        if not digest:
            return
        for logger in trainer.loggers:
            if isinstance(logger, MLFlowLogger) and logger.run_id:
                logger.experiment.set_tag(logger.run_id, BEST_TAG, digest)
