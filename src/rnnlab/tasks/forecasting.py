"""Forecasting over windows (regression): the network predicts the next steps of a series.

Training minimises the MSE of the next ``steps`` values (every input column, in the
transformed and scaled space) after each window. Validation and test periods are then
forecast the way a statistical model is asked to: once, from the start of the period,
repeating the network's block of ``steps`` predictions (``horizon`` for ``direct``, one
for ``recursive``) and feeding it back until the period is covered. Those forecasts go
back to the original scale before MAE / RMSE / MAPE / sMAPE / MASE are computed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.data.spec import ForecastSpec
from rnnlab.metrics.forecast import score_period
from rnnlab.tasks.base import OptimizerFactory, RnnlabTask
from rnnlab.tracking.artifacts import log_figure
from rnnlab.tracking.predictions import DEFAULT_MAX_ROWS

# how the test window loss follows from predictions/test.parquet (rnnlab.report.stats): each test
# window's mean squared error over its steps and columns (model space)
PREDICTION_METRICS = {"test/loss": {"kind": "mean", "column": "score"}}


class ForecastTask(RnnlabTask):
    """Backbone over a window -> last state -> the next ``steps`` x ``features`` values."""

    prediction_metrics = PREDICTION_METRICS

    def __init__(self, backbone: nn.Module, spec: ForecastSpec, optimizer: OptimizerFactory,
                 scheduler: Any = None, monitor: str = "val/loss", dropout: float = 0.0,
                 max_predictions: int = DEFAULT_MAX_ROWS) -> None:
        super().__init__(backbone, optimizer, scheduler, monitor, max_predictions)
        self.steps = int(spec.steps)
        self.features = int(spec.num_features)
        self.window = int(spec.window)
        # the evaluation periods the datamodule declares ({split: points}); each is
        # forecast whole from its start, as a statistical model is asked to
        self.periods = {str(k): int(v) for k, v in spec.periods.items()}
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.output_size, self.steps * self.features)

    def forward(self, x: Tensor) -> Tensor:
        """(B, window, F) -> (B, steps, F)."""
        enc = self.backbone(x)
        return self.head(self.dropout(enc.last)).view(-1, self.steps, self.features)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss = F.mse_loss(self(batch["x"]), batch["y"])
        return self.log_train_loss(loss, len(batch["x"]))

    def evaluate(self, batch: dict, batch_idx: int, split: str) -> dict[str, Any]:
        pred = self(batch["x"])
        return {"loss": (F.mse_loss(pred, batch["y"]), len(batch["x"])), "pred": pred}

    def prediction_rows(self, batch: dict, out: dict[str, Any],
                        ids: list[int] | None) -> list[dict[str, Any]]:
        """One row per test window: the next ``steps`` values (model space, every column)
        and the model's, and their mean squared error."""
        pred, y = out["pred"].float(), batch["y"].float()
        errors = ((pred - y) ** 2).mean(dim=(1, 2)).tolist()
        return [{"input": f"window of {batch['x'].shape[1]} steps",
                 "gold": " ".join(f"{v:.5g}" for v in y[i].flatten().tolist()),
                 "prediction": " ".join(f"{v:.5g}" for v in pred[i].flatten().tolist()),
                 "score": err} for i, err in enumerate(errors)]

    @torch.no_grad()
    def rollout(self, history: Tensor, horizon: int) -> Tensor:
        """Forecast ``horizon`` steps after ``history`` (T, F), model space, feeding back."""
        context = history[-self.window:].to(self.device).unsqueeze(0)
        out: list[Tensor] = []
        done = 0
        while done < horizon:  # a loop over forecast blocks; each block is one fused pass
            block = self(context)[0]
            out.append(block)
            context = torch.cat([context[:, block.shape[0]:], block.unsqueeze(0)], dim=1)
            done += block.shape[0]
        return torch.cat(out)[:horizon]

    def forecast(self, dm: Any, split: str) -> np.ndarray:
        """Original-scale forecast of the targets over ``split``'s period."""
        was_training = self.training
        self.eval()
        z = self.rollout(dm.model_history(split), self.periods[split])
        self.train(was_training)
        return dm.to_original(split, z.float().cpu().numpy())

    def epoch_values(self, split: str) -> dict[str, Any]:
        """The window loss (example-weighted over every rank) and the period forecast's
        errors. Every rank forecasts the whole period from the same weights, so those
        are equal on all ranks; rank 0 draws the test plot."""
        values = {"loss": self.mean(split, "loss")}
        dm = self.trainer.datamodule  # None when Lightning was given bare loaders
        if dm is not None and split in self.periods and not self.trainer.sanity_checking:
            title = self.backbone.cell or type(self.backbone).__name__
            scores, figure = score_period(dm, split, self.forecast(dm, split), title,
                                          split == "test" and self.global_rank == 0)
            values.update({name.removeprefix(f"{split}/"): v for name, v in scores.items()})
            if figure is not None:
                log_figure(self.trainer, figure, f"plots/forecast_{split}.png")
        return values
