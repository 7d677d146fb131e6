"""Faults to inject into a training subprocess through the config (``+callbacks.x._target_``).

Put this folder on ``PYTHONPATH`` of the subprocess; DDP workers inherit it."""

from __future__ import annotations

import pytorch_lightning as pl


class CrashOnRank(pl.Callback):
    """Raises in the first training batch of one global rank only."""

    def __init__(self, rank: int = 1) -> None:
        self.rank = rank

    def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_rank == self.rank:
            raise RuntimeError(f"injected fault on rank {self.rank}")


class CrashIf(pl.Callback):
    """Raises in the first training batch when ``value`` equals ``equals``: one job of a
    sweep crashes, e.g. ``+callbacks.crash.value='${model.hidden_size}'``."""

    def __init__(self, value: object = None, equals: object = None) -> None:
        self.value, self.equals = value, equals

    def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
        if self.value == self.equals:
            raise RuntimeError(f"injected fault for {self.value}")


class BreakStore(pl.Callback):
    """From the first training batch on, every write to (and read of) the SQLite MLflow store
    fails as on a full disk."""

    def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
        import sqlite3

        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        def full(*args: object, **kwargs: object) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        for name in ("log_batch", "log_metric", "log_param", "set_tag", "update_run_info",
                     "get_run", "log_inputs", "log_outputs"):
            setattr(SqlAlchemyStore, name, full)
