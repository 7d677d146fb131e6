"""``train/grad_norm``: the global gradient norm of every optimizer step.

Logged in ``on_before_optimizer_step``, which Lightning calls after backward and before
it clips, so the value is the raw norm: spikes show exploding gradients (and how often
``trainer.gradient_clip_val`` bites), a norm stuck near zero shows a model that stopped
learning. Use it with ``callbacks=grad_norm`` (keeps checkpointing / early stopping).
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch


def global_grad_norm(parameters: Any, norm_type: float = 2.0) -> torch.Tensor:
    """The norm of all gradients taken together (as clip_grad_norm_ measures it)."""
    grads = [p.grad.detach() for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    return torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g, norm_type) for g in grads]), norm_type)


class GradNormMonitor(pl.Callback):
    """Logs the pre-clipping global gradient norm as ``train/grad_norm`` every step."""

    def __init__(self, norm_type: float = 2.0) -> None:
        self.norm_type = norm_type

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: Any) -> None:
        norm = global_grad_norm(pl_module.parameters(), self.norm_type)
        pl_module.log("train/grad_norm", norm, on_step=True, on_epoch=False)
