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
from rnnlab.metrics.distributed import WeightedMean
from rnnlab.metrics.forecast import score_period
from rnnlab.tasks.base import OptimizerFactory, RnnlabTask
from rnnlab.tracking.artifacts import log_figure
from rnnlab.tracking.predictions import DEFAULT_MAX_ROWS, PredictionRows

# how the test window loss follows from predictions/test.parquet (rnnlab.report.stats): each test
# window's mean squared error over its steps and columns (model space)
PREDICTION_METRICS = {"test/loss": {"kind": "mean", "column": "score"}}


class ForecastTask(RnnlabTask):
    """Backbone over a window -> last state -> the next ``steps`` x ``features`` values."""

    def __init__(self, backbone: nn.Module, spec: ForecastSpec, optimizer: OptimizerFactory,
                 scheduler: Any = None, monitor: str = "val/loss", dropout: float = 0.0,
                 max_predictions: int = DEFAULT_MAX_ROWS) -> None:
        super().__init__(backbone, optimizer, scheduler, monitor)
        self.steps = int(spec.steps)
        self.features = int(spec.num_features)
        self.window = int(spec.window)
        # the evaluation periods the datamodule declares ({split: points}); each is
        # forecast whole from its start, as a statistical model is asked to
        self.periods = {str(k): int(v) for k, v in spec.periods.items()}
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.output_size, self.steps * self.features)
        self.losses = nn.ModuleDict({"val": WeightedMean(), "test": WeightedMean()})
        self.predictions = PredictionRows(max_predictions)

    def forward(self, x: Tensor) -> Tensor:
        """(B, window, F) -> (B, steps, F)."""
        enc = self.backbone(x)
        return self.head(self.dropout(enc.last)).view(-1, self.steps, self.features)

    def _loss(self, batch: dict) -> Tensor:
        return F.mse_loss(self(batch["x"]), batch["y"])

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss = self._loss(batch)
        return self.log_train_loss(loss, len(batch["x"]))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        if not self.skip(batch):
            self.losses["val"].update(self._loss(batch), len(batch["x"]))

    def test_step(self, batch: dict, batch_idx: int) -> None:
        if not self.skip(batch):
            self.losses["test"].update(self._loss(batch), len(batch["x"]))
            self._collect_predictions(batch, batch_idx)

    @torch.no_grad()
    def _collect_predictions(self, batch: dict, batch_idx: int) -> None:
        """One row per test window: the next ``steps`` values (model space, every column)
        and the model's, and their mean squared error."""
        if not self.predictions.enabled:
            return
        pred, y = self(batch["x"]).float(), batch["y"].float()
        errors = ((pred - y) ** 2).mean(dim=(1, 2)).tolist()
        ids = self.predictions.example_ids(self, batch_idx, len(errors))
        for i, err in enumerate(errors):
            row = {"input": f"window of {batch['x'].shape[1]} steps",
                   "gold": " ".join(f"{v:.5g}" for v in y[i].flatten().tolist()),
                   "prediction": " ".join(f"{v:.5g}" for v in pred[i].flatten().tolist()),
                   "score": err}
            if ids is not None:
                row["example"] = ids[i]
            self.predictions.add(self, batch_idx, i, row)

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

    def _period_metrics(self, split: str, plot: bool) -> None:
        """The window loss (example-weighted over every rank) and the period forecast's
        errors. Every rank forecasts the whole period from the same weights, so those
        are equal on all ranks; rank 0 draws the plot."""
        values = {f"{split}/loss": self.losses[split].compute()}
        self.losses[split].reset()
        dm = self.trainer.datamodule  # None when Lightning was given bare loaders
        if dm is not None and split in self.periods and not self.trainer.sanity_checking:
            title = self.backbone.cell or type(self.backbone).__name__
            scores, figure = score_period(dm, split, self.forecast(dm, split), title,
                                          plot and self.global_rank == 0)
            values.update(scores)
            if figure is not None:
                log_figure(self.trainer, figure, f"plots/forecast_{split}.png")
        self.log_reduced(values, prog_bar=values if split == "val" else ())

    def on_validation_epoch_end(self) -> None:
        self._period_metrics("val", plot=False)

    def on_test_epoch_end(self) -> None:
        self._period_metrics("test", plot=True)
        self.predictions.write(self, PREDICTION_METRICS)
