"""Learning-rate annealing over the training budget, whichever way the budget is set.

A fixed-budget comparison (ten minutes on this CPU, N steps, E epochs) is scored where the
budget ends, and a learning rate that has decayed to near zero by then gives a clearly lower
final loss than a constant one. Step-based schedulers need the step count up front, which a
wall-clock budget (``trainer.max_time``) does not give; this callback measures progress as
the largest of the fractions used of ``max_steps``, ``max_time`` and ``max_epochs``, so the
same overlay anneals correctly on a slow laptop and a fast GPU.
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Timer

from rnnlab.core.errors import ConfigError

SHAPES = ("linear", "cosine")


def budget_factor(progress: float, warmup: float, shape: str, final_ratio: float) -> float:
    """The learning-rate multiplier at ``progress`` (0..1) through the budget.

    Linear warm-up over the first ``warmup`` share, then a linear or cosine decay from 1 to
    ``final_ratio`` at the end of the budget (and it stays there past the end).
    """
    progress = min(max(progress, 0.0), 1.0)
    if warmup > 0 and progress < warmup:
        return max(progress / warmup, 1e-3)
    rest = (progress - warmup) / (1.0 - warmup) if warmup < 1 else 1.0
    decay = 0.5 * (1.0 + math.cos(math.pi * rest)) if shape == "cosine" else 1.0 - rest
    return final_ratio + (1.0 - final_ratio) * decay


class BudgetAnneal(pl.Callback):
    """Scales every parameter group's learning rate by :func:`budget_factor` each step.

    Args:
        warmup: share of the budget spent warming up linearly (0 = none).
        shape: ``linear`` or ``cosine`` decay after the warm-up.
        final_ratio: learning rate at the end of the budget, as a share of the initial one.
    """

    def __init__(self, warmup: float = 0.0, shape: str = "linear",
                 final_ratio: float = 0.0) -> None:
        if shape not in SHAPES:
            raise ConfigError(f"callbacks.budget_anneal.shape={shape!r} is not one of "
                              f"{', '.join(SHAPES)}; pick one of those.")
        if not 0.0 <= warmup < 1.0:
            raise ConfigError(f"callbacks.budget_anneal.warmup={warmup} must be in [0, 1); "
                              "it is the share of the budget spent warming up.")
        if not 0.0 <= final_ratio <= 1.0:
            raise ConfigError(f"callbacks.budget_anneal.final_ratio={final_ratio} must be in "
                              "[0, 1]; it is the final share of the initial learning rate.")
        self.warmup = float(warmup)
        self.shape = shape
        self.final_ratio = float(final_ratio)
        self.base_lrs: list[float] | None = None
        self.factor = 1.0

    def progress(self, trainer: pl.Trainer, batch_idx: int = 0) -> float:
        """The largest share used of the step, time and epoch budgets."""
        shares = []
        if trainer.max_steps is not None and trainer.max_steps > 0:
            shares.append(trainer.global_step / trainer.max_steps)
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        if timer is not None and timer._duration:
            shares.append(timer.time_elapsed("train") / timer._duration)
        if trainer.max_epochs is not None and trainer.max_epochs > 0:
            per_epoch = trainer.num_training_batches
            within = batch_idx / per_epoch if per_epoch and math.isfinite(per_epoch) else 0.0
            shares.append((trainer.current_epoch + within) / trainer.max_epochs)
        return max(shares) if shares else 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.lr_scheduler_configs:
            raise ConfigError("callbacks.budget_anneal and task.scheduler both set the learning "
                              "rate; drop one (task.scheduler=null or ~callbacks.budget_anneal).")
        if self.base_lrs is None:  # not restored from a checkpoint
            self.base_lrs = [g["lr"] for opt in trainer.optimizers for g in opt.param_groups]

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        self.factor = budget_factor(self.progress(trainer, batch_idx), self.warmup, self.shape,
                                    self.final_ratio)
        groups = [g for opt in trainer.optimizers for g in opt.param_groups]
        for group, base in zip(groups, self.base_lrs or [], strict=True):
            group["lr"] = base * self.factor

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        pl_module.log("train/lr_factor", self.factor, on_step=True, on_epoch=False)

    def state_dict(self) -> dict[str, Any]:
        return {"base_lrs": self.base_lrs}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base_lrs = state_dict.get("base_lrs")
