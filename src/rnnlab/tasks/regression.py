"""Sequence regression (N->1 real target): the adding problem, any sequence -> number.

A long-memory problem only means something next to what a model without memory scores,
so when the data's ``spec`` carries a ``baseline_loss`` it is logged beside the model's loss
(``val/baseline_loss``, ``val/loss_ratio``) and the test ends with ``test/solved``: 1.0
when the test loss is below ``solved_fraction`` (10%) of the baseline, else 0.0.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.data.spec import RegressSpec
from rnnlab.models.heads import ClassifierHead
from rnnlab.tasks.base import OptimizerFactory, RnnlabTask
from rnnlab.tracking.predictions import DEFAULT_MAX_ROWS

# how the test loss follows from predictions/test.parquet: each example's squared error
PREDICTION_METRICS = {"test/loss": {"kind": "mean", "column": "score"}}


def against_baseline(stage: str, loss: float, baseline: float | None,
                     solved_fraction: float) -> dict[str, float]:
    """``baseline_loss``, ``loss_ratio`` and (test) ``solved`` (nothing without a
    baseline): ``stage``'s values beside the model's loss."""
    if baseline is None:
        return {}
    ratio = loss / baseline
    values = {"baseline_loss": baseline, "loss_ratio": ratio}
    if stage == "test":
        values["solved"] = float(ratio < solved_fraction)
    return values


class RegressionTask(RnnlabTask):
    """Backbone -> pooled features -> ``output_size`` numbers, trained with MSE.

    The head is the N->1 head (pooling, dropout, linear) with real outputs instead of
    logits. ``solved_fraction``: how far below the memoryless baseline counts as solved.
    """

    PROGRESS_BAR = ("loss",)
    WHOLE_BATCHES = True
    prediction_metrics = PREDICTION_METRICS

    def __init__(self, backbone: nn.Module, spec: RegressSpec, optimizer: OptimizerFactory,
                 scheduler: Any = None, monitor: str = "val/loss", pooling: str = "last",
                 dropout: float = 0.0, solved_fraction: float = 0.1,
                 max_predictions: int = DEFAULT_MAX_ROWS) -> None:
        super().__init__(backbone, optimizer, scheduler, monitor, max_predictions)
        self.output_size = int(spec.output_size)
        self.head = ClassifierHead(backbone.output_size, self.output_size, pooling, dropout)
        self.baseline = spec.baseline_loss
        self.solved_fraction = solved_fraction

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        enc = self.backbone(x, lengths)
        out = self.head(enc.outputs, enc.last, lengths)
        return out.squeeze(-1) if self.output_size == 1 else out

    def _loss(self, batch: dict) -> tuple[Tensor, Tensor]:
        pred = self(batch["x"], batch.get("lengths"))
        return F.mse_loss(pred, batch["y"].to(pred.dtype)), pred

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss, _ = self._loss(batch)
        return self.log_train_loss(loss, len(batch["y"]))

    def evaluate(self, batch: dict, batch_idx: int, split: str) -> dict[str, Any]:
        loss, pred = self._loss(batch)
        return {"loss": (loss, len(batch["y"])), "pred": pred}

    def prediction_rows(self, batch: dict, out: dict[str, Any],
                        ids: list[int] | None) -> list[dict[str, Any]]:
        """One row per test sequence: target, prediction, squared error."""
        pred = out["pred"].float()
        y = batch["y"].to(pred.dtype)
        err = (pred - y) ** 2
        err = err.reshape(len(err), -1).mean(1).tolist()
        steps = batch["lengths"].tolist() if "lengths" in batch else [batch["x"].shape[1]] * len(err)
        return [{"input": f"{steps[i]} steps", "gold": _numbers(y[i]),
                 "prediction": _numbers(pred[i]), "score": e} for i, e in enumerate(err)]

    def epoch_values(self, split: str) -> dict[str, Any]:
        """The example-weighted MSE over every rank (also logged as ``mse``: ``loss`` is
        what schedulers and checkpoints watch) and how it compares with the baseline."""
        loss = float(self.mean(split, "loss"))
        return {"loss": loss, "mse": loss,
                **against_baseline(split, loss, self.baseline, self.solved_fraction)}


def _numbers(t: Tensor) -> str:
    return " ".join(f"{v:.5g}" for v in t.reshape(-1).tolist())
