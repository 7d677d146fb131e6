"""The budget-annealed learning rate: its shape, and that a run ends with the lr near zero."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from mlflow.tracking import MlflowClient
from pytorch_lightning.callbacks import Timer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from rnnlab.core.errors import ConfigError
from rnnlab.run.train import run
from rnnlab.schedules import BudgetAnneal, budget_factor


def test_factor_shapes() -> None:
    assert budget_factor(0.0, 0.0, "linear", 0.0) == 1.0
    assert budget_factor(0.5, 0.0, "linear", 0.0) == pytest.approx(0.5)
    assert budget_factor(1.0, 0.0, "linear", 0.1) == pytest.approx(0.1)
    assert budget_factor(2.0, 0.0, "linear", 0.0) == 0.0  # past the budget: stays at the end
    assert budget_factor(0.5, 0.0, "cosine", 0.0) == pytest.approx(0.5)
    assert budget_factor(0.25, 0.0, "cosine", 0.0) == pytest.approx(0.8535534)
    # warm-up: rises linearly over the first share, then decays from 1
    assert budget_factor(0.05, 0.1, "linear", 0.0) == pytest.approx(0.5)
    assert budget_factor(0.1, 0.1, "linear", 0.0) == pytest.approx(1.0)
    assert budget_factor(0.55, 0.1, "linear", 0.0) == pytest.approx(0.5)


def test_bad_values_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"callbacks.budget_anneal.shape='step'"):
        BudgetAnneal(shape="step")
    with pytest.raises(ConfigError, match=r"warmup=1.5 must be in \[0, 1\)"):
        BudgetAnneal(warmup=1.5)


class _Regression(pl.LightningModule):
    def __init__(self, scheduler: bool = False) -> None:
        super().__init__()
        self.net = nn.Linear(3, 1)
        self.scheduler = scheduler
        self.lrs: list[float] = []

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        self.lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.1)
        if not self.scheduler:
            return opt
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, 1)}


def _fit(module: pl.LightningModule, **trainer_kwargs) -> None:
    data = TensorDataset(torch.randn(40, 3), torch.randn(40, 1))
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[BudgetAnneal()],
                         **trainer_kwargs)
    trainer.fit(module, DataLoader(data, batch_size=4))


def test_step_budget_decays_linearly_to_zero() -> None:
    module = _Regression()
    _fit(module, max_steps=20, max_epochs=100)
    assert len(module.lrs) == 20
    assert module.lrs[0] == pytest.approx(0.1)
    assert module.lrs[10] == pytest.approx(0.05)
    assert module.lrs[-1] == pytest.approx(0.005)
    assert all(a > b for a, b in zip(module.lrs, module.lrs[1:], strict=False))


def test_epoch_budget_counts_batches_within_the_epoch() -> None:
    module = _Regression()
    _fit(module, max_epochs=2)  # 10 batches per epoch
    assert module.lrs[5] == pytest.approx(0.1 * (1 - 5 / 20))
    assert module.lrs[15] == pytest.approx(0.1 * (1 - 15 / 20))


def test_refuses_a_second_scheduler() -> None:
    with pytest.raises(ConfigError, match="both set the learning rate"):
        _fit(_Regression(scheduler=True), max_steps=3)


def test_time_budget_run_logs_the_factor(make_config, lab_root: Path) -> None:
    """Composed as on the command line: the factor is logged to MLflow every step and decays."""
    run(make_config("experiment=charlm_tiny", "model=gru", "model.hidden_size=16",
                    "callbacks=budget_anneal", "trainer.max_time=00:00:00:20",
                    "trainer.limit_train_batches=30", "trainer.log_every_n_steps=1"))
    client = MlflowClient(f"sqlite:///{lab_root}/mlflow.db")
    exp = client.get_experiment_by_name("charlm")
    (latest,) = client.search_runs([exp.experiment_id], max_results=1)
    history = [m.value for m in client.get_metric_history(latest.info.run_id,
                                                          "train/lr_factor")]
    assert len(history) == 30
    assert history[0] == pytest.approx(1.0, abs=0.05)
    assert 0.0 < history[-1] < history[0]
    assert all(a >= b for a, b in zip(history, history[1:], strict=False))


def test_progress_is_the_largest_budget_share() -> None:
    """A wall-clock cap counts as much as a step cap: whichever is nearer its end wins."""

    class _Clock(Timer):
        def time_elapsed(self, stage: str = "train") -> float:
            return 150.0

    clock = _Clock(duration="00:00:10:00")  # 600 s
    trainer = SimpleNamespace(callbacks=[clock], max_steps=-1, max_epochs=None, global_step=7)
    assert BudgetAnneal().progress(trainer) == pytest.approx(0.25)
    trainer.max_steps = 10
    assert BudgetAnneal().progress(trainer) == pytest.approx(0.7)
