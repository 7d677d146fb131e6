"""The shared LightningModule: optimizer wiring and the one evaluation loop every task uses.

Task modules own their loss, metrics and plots; they receive a ready backbone and the
datamodule's ``spec`` and never learn where the data came from. Metrics are logged as
``train/loss``, ``val/<name>``, ``test/<name>``.

The evaluation loop lives here, so under DDP (see ``rnnlab.metrics.distributed``) every
task reduces the same way: ``validation_step`` / ``test_step`` skip the empty batches that
even out the ranks' shards and only *update* state (the split's exact means, the task's
own torchmetrics states or per-example lists, the prediction rows); the epoch-end hooks,
which every rank runs, reduce that state over the ranks, log the result on every rank
(:meth:`RnnlabTask.log_reduced`) and, after the test, gather and write
``predictions/test.parquet`` once. So one process and N processes log the same numbers,
each example counted once.

A new task supplies, besides its model, ``training_step`` and anything it logs as
artifacts, these and nothing else:

* :meth:`RnnlabTask.evaluate` ``(batch, batch_idx, split) -> dict``: score one batch;
  the entries named in ``MEANS`` are ``(value, weight)`` updates of the split's means,
  any other entries are handed to ``prediction_rows``;
* ``MEANS``: the split's means by name and kind (default ``{"loss": WeightedMean}``);
* :meth:`RnnlabTask.epoch_values` ``(split) -> dict``: the values to log as
  ``<split>/<name>`` (default: every mean, read with :meth:`RnnlabTask.mean`);
* :meth:`RnnlabTask.prediction_rows` ``(batch, out, ids) -> list[dict]``: one
  ``predictions/test.parquet`` row per example of a test batch, and ``prediction_metrics``,
  how the test metrics follow from the rows' columns.

Two class attributes have defaults that suit most tasks: ``PROGRESS_BAR`` (the ``val/``
values shown while training; all of them) and ``WHOLE_BATCHES`` (test batches that every
rank steps through, keeping its own rows; off). Task state beyond the means is the task's
to reset, in ``epoch_values``; an extra test artifact goes in ``on_test_epoch_end`` after
``super().on_test_epoch_end()``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torchmetrics import Metric

from rnnlab.core.errors import ConfigError
from rnnlab.data.batching import global_batch_index, is_empty_batch
from rnnlab.data.spec import DataSpec
from rnnlab.metrics.distributed import WeightedMean
from rnnlab.tracking.predictions import DEFAULT_MAX_ROWS, PredictionRows

OptimizerFactory = Callable[..., Optimizer]
SPLITS = ("val", "test")


class RnnlabTask(pl.LightningModule):
    """Base class: a backbone, an optimizer factory (a Hydra ``_partial_``) and an optional
    scheduler factory. ``monitor`` is the metric a plateau scheduler watches;
    ``max_predictions`` bounds the rows of ``predictions/test.parquet`` (0: none)."""

    #: the exact means each evaluation split keeps, by name: a ``Metric`` class whose
    #: ``update`` takes the ``(value, weight)`` that ``evaluate`` returns under that name
    #: (``WeightedMean``: a batch mean and its example count; ``Ratio``: a batch sum and
    #: its count). Their states are not in the checkpoint.
    MEANS: ClassVar[Mapping[str, Callable[[], Metric]]] = MappingProxyType({"loss": WeightedMean})
    #: the ``val/`` values shown in the progress bar (short names; None: all of them)
    PROGRESS_BAR: ClassVar[Collection[str] | None] = None
    #: test batches come whole to every rank, each keeping its own rows
    #: (``rnnlab.data.batching.RowShard``), rather than a shard of the batches
    WHOLE_BATCHES: ClassVar[bool] = False
    #: how each logged test metric follows from predictions/test.parquet's columns
    #: (``{"test/acc": {"kind": "mean", "column": "score"}}``, see rnnlab.report.stats)
    prediction_metrics: Mapping[str, Mapping[str, Any]] = MappingProxyType({})

    # rebuilds another checkpoint of this lab (set by rnnlab.build.build_module, which
    # owns loading; a task that joins other models at test time calls it)
    checkpoint_loader: Callable[..., Any] | None = None

    def __init__(self, backbone: nn.Module, optimizer: OptimizerFactory,
                 scheduler: Callable[..., Any] | None = None, monitor: str = "val/loss",
                 max_predictions: int = DEFAULT_MAX_ROWS) -> None:
        super().__init__()
        self.backbone = backbone
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.monitor = monitor
        self.means = nn.ModuleDict({split: nn.ModuleDict({name: kind() for name, kind in
                                                          self.MEANS.items()})
                                    for split in SPLITS})
        self.predictions = PredictionRows(max_predictions, whole_batches=self.WHOLE_BATCHES)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": self.monitor,
                                 "interval": "epoch"}}

    def log_train_loss(self, loss: Tensor, batch_size: int) -> Tensor:
        """Log ``train/loss`` per step and per epoch (the one name every task shares)."""
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=batch_size)
        return loss

    # ---- what a task supplies ------------------------------------------------------------
    def evaluate(self, batch: dict, batch_idx: int, split: str) -> dict[str, Any]:
        """Score one (non-empty) batch of ``split`` (``val`` or ``test``): update the task's
        own state and return ``{mean name: (value, weight)}`` for the ``MEANS`` it
        updates, plus whatever else ``prediction_rows`` needs (test only)."""
        raise NotImplementedError(f"{type(self).__name__} does not evaluate")

    def epoch_values(self, split: str) -> dict[str, float | Tensor]:
        """The split's values, reduced over every rank, by short name (logged as
        ``<split>/<name>``); a task resets its own state here. Default: every mean."""
        return {name: self.mean(split, name) for name in self.MEANS}

    def prediction_rows(self, batch: dict, out: dict[str, Any],
                        ids: list[int] | None) -> list[dict[str, Any]]:
        """One row per example of a test batch (``out``: what ``evaluate`` returned;
        ``ids``: the examples' test-split indices when known, see
        :meth:`PredictionRows.inputs`). Default: no rows."""
        return []

    # ---- the loop --------------------------------------------------------------------------
    def mean(self, split: str, name: str) -> Tensor:
        """The split's mean ``name`` over every rank (a collective: every rank asks for the
        same means in the same order, which a deterministic ``epoch_values`` does)."""
        return self.means[split][name].compute()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate_batch(batch, batch_idx, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate_batch(batch, batch_idx, "test")

    def _evaluate_batch(self, batch: dict, batch_idx: int, split: str) -> None:
        if is_empty_batch(batch):  # a filler batch of this rank's shard: nothing to score
            return
        out = self.evaluate(batch, batch_idx, split)
        for name, mean in self.means[split].items():
            if name in out:
                mean.update(*out[name])
        if split == "test" and self.predictions.enabled:
            ids = self.predictions.batch_ids(self, batch, batch_idx)
            self.predictions.add_batch(self, batch_idx, self.prediction_rows(batch, out, ids),
                                       ids)

    def _end_epoch(self, split: str) -> None:
        values = {f"{split}/{name}": value for name, value in self.epoch_values(split).items()}
        for mean in self.means[split].values():
            mean.reset()
        shown: Collection[str] = ()
        if split == "val":
            shown = values if self.PROGRESS_BAR is None else \
                [f"val/{name}" for name in self.PROGRESS_BAR]
        self.log_reduced(values, prog_bar=shown)

    def on_validation_epoch_end(self) -> None:
        self._end_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._end_epoch("test")
        self.predictions.write(self, self.prediction_metrics)

    def eval_position(self, batch_idx: int) -> int:
        """Where this rank's evaluation batch ``batch_idx`` stands among all ranks' batches,
        i.e. its index in a single-process run: gathered per-example results are sorted
        by it so artifacts (examples, heat maps) do not depend on the process count."""
        trainer = getattr(self, "_trainer", None)
        world = trainer.world_size if trainer is not None else 1
        return global_batch_index(batch_idx, self.global_rank, world)

    def log_reduced(self, values: Mapping[str, float | Tensor],
                    prog_bar: Collection[str] = ()) -> None:
        """Log epoch values that are already reduced over all ranks (so equal on every
        rank, which checkpointing, early stopping and plateau schedulers need).

        They are "synced" with ``max``: exact for equal values and no PossibleUserWarning,
        where Lightning's mean sync would divide an integer count by the world size.
        """
        for name, value in values.items():
            self.log(name, torch.as_tensor(value, dtype=torch.float64, device=self.device).detach(),
                     prog_bar=name in prog_bar, sync_dist=True, reduce_fx="max")

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


class WordDropout(nn.Module):
    """Word dropout (Lample et al. 2016): in training, each rare word is replaced by
    ``<unk>`` with probability ``p``, so the ``<unk>`` embedding is trained on words like
    the unseen ones it will meet at test time, and the model learns not to lean on the
    identity of words it saw once.

    "Rare" is a training count in ``1..max_count`` (``spec.token_counts``, per id); the
    specials (count 0) are never touched. A no-op at ``p=0`` and whenever the module is in
    eval mode; callers apply it in ``training_step`` only, so evaluation never sees it.
    """

    def __init__(self, p: float, max_count: int, spec: DataSpec) -> None:
        super().__init__()  # p and max_count are checked by the config schema
        self.p = float(p)
        self.unk_id = -1
        rare = torch.zeros(0, dtype=torch.bool)
        if self.p > 0:
            counts, unk = spec.token_counts, spec.unk_id
            if not counts or unk is None:
                raise ConfigError("task.module.word_dropout > 0 needs word counts and an <unk> "
                                  "token from the data, which this datamodule does not give; "
                                  "set task.module.word_dropout=0.")
            self.unk_id = int(unk)
            counts_t = torch.as_tensor(list(counts), dtype=torch.long)
            rare = (counts_t >= 1) & (counts_t <= max_count)
        # rebuilt from the spec, so not part of the checkpoint's weights
        self.register_buffer("rare", rare, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` (token ids) with rare words replaced by ``<unk>`` (training only)."""
        if not self.training or self.p == 0 or x.is_floating_point():
            return x
        drop = self.rare[x] & (torch.rand(x.shape, device=x.device) < self.p)
        return x.masked_fill(drop, self.unk_id)
