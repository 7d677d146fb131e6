"""Adding and copy problems: generators against their definitions, data streams, errors,
and a short training run of each through the real configs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import FAST, metric_history

from rnnlab.core.errors import ConfigError
from rnnlab.data.synthetic import (
    AddingDataModule,
    CopyDataModule,
    adding_baseline,
    adding_problem,
    copy_baseline,
    copy_problem,
)
from rnnlab.run.train import run


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("seq_len", [2, 3, 7, 50])
def test_adding_targets_by_hand(seq_len: int) -> None:
    batch = adding_problem(16, seq_len, _gen(3))
    x, y = batch["x"], batch["y"]
    assert x.shape == (16, seq_len, 2) and y.shape == (16,)
    assert batch["lengths"].tolist() == [seq_len] * 16
    half = seq_len // 2
    for i in range(16):
        values, markers = x[i, :, 0].tolist(), x[i, :, 1].tolist()
        marked = [t for t, m in enumerate(markers) if m == 1.0]
        assert len(marked) == 2 and sum(markers) == 2.0
        assert marked[0] < half <= marked[1]  # one mark in each half
        assert all(0.0 <= v < 1.0 for v in values)
        assert y[i].item() == pytest.approx(values[marked[0]] + values[marked[1]], abs=1e-6)


def test_adding_is_reproducible_and_baseline_is_one_sixth() -> None:
    a, b = adding_problem(8, 10, _gen(1)), adding_problem(8, 10, _gen(1))
    assert torch.equal(a["x"], b["x"]) and torch.equal(a["y"], b["y"])
    big = adding_problem(40000, 10, _gen(2))
    empirical = F.mse_loss(torch.ones_like(big["y"]), big["y"]).item()  # answer the mean, 1.0
    assert adding_baseline() == pytest.approx(1 / 6)
    assert empirical == pytest.approx(adding_baseline(), abs=0.006)


@pytest.mark.parametrize("delay", [1, 5, 30])
def test_copy_layout_by_hand(delay: int) -> None:
    batch = copy_problem(6, delay, _gen(4), n_symbols=10, alphabet=8)
    x, y = batch["x"], batch["y"]
    assert x.shape == y.shape == (6, delay + 20)
    for i in range(6):
        row, target = x[i].tolist(), y[i].tolist()
        symbols = row[:10]
        assert all(1 <= s <= 8 for s in symbols)
        assert row[10: 10 + delay - 1] == [0] * (delay - 1)  # T - 1 blanks
        assert row[10 + delay - 1] == 9  # the delimiter
        assert row[10 + delay:] == [0] * 10
        assert target[: delay + 10] == [0] * (delay + 10)
        assert target[delay + 10:] == symbols


def test_copy_baseline_is_memoryless_cross_entropy() -> None:
    delay = 12
    batch = copy_problem(50, delay, _gen(5))
    length = delay + 20
    logits = torch.full((50, length, 9), -1e9)
    logits[:, : delay + 10, 0] = 0.0  # blank until the recall
    logits[:, delay + 10:, 1:] = 0.0  # then uniform over the 8 symbols
    loss = F.cross_entropy(logits.reshape(-1, 9), batch["y"].reshape(-1)).item()
    assert loss == pytest.approx(10 * math.log(8) / (delay + 20), rel=1e-5)
    assert copy_baseline(delay) == pytest.approx(loss, rel=1e-5)


def test_train_stream_is_fresh_each_epoch_and_val_test_fixed() -> None:
    dm = AddingDataModule(seq_len=8, n_train=32, n_val=16, n_test=16, batch_size=8, seed=7)
    dm.setup()
    epoch0 = [b["x"] for b in dm.train_dataloader()]
    epoch1 = [b["x"] for b in dm.train_dataloader()]
    assert len(epoch0) == 4 and not torch.equal(epoch0[0], epoch1[0])
    again = AddingDataModule(seq_len=8, n_train=32, n_val=16, n_test=16, batch_size=8, seed=7)
    again.setup()
    assert torch.equal(next(iter(again.train_dataloader()))["x"], epoch0[0])  # same seed, same data
    val = [b["x"] for b in dm.val_dataloader()]
    assert all(torch.equal(a, b["x"]) for a, b in zip(val, dm.val_dataloader(), strict=True))
    assert not torch.equal(val[0], next(iter(dm.test_dataloader()))["x"])
    other_seed = AddingDataModule(seq_len=8, n_train=32, n_val=16, n_test=16, batch_size=8, seed=8)
    other_seed.setup()  # the training seed does not move the evaluation sets
    assert torch.equal(next(iter(other_seed.val_dataloader()))["x"], val[0])
    copy = CopyDataModule(delay=3, n_val=4, n_test=4, batch_size=2)
    copy.setup()
    assert copy.spec.vocab_size == 11 and copy.spec.num_classes == 9
    assert copy.spec.padding_idx == 10  # no real token is treated as padding


@pytest.mark.parametrize(("overrides", "message"), [
    (["task=adding", "task.seq_len=1"], "task.seq_len must be an integer of at least 2"),
    (["task=copy", "task.delay=0"], "task.delay must be an integer of at least 1"),
    (["task=adding", "task.datamodule.n_train=0"], "task.datamodule.n_train must be an integer of at least 1"),
])
def test_bad_settings_give_one_sentence(make_config, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        run(make_config(*overrides))
    assert str(err.value).count(". ") == 0 and str(err.value).endswith(".")


@pytest.mark.parametrize(("task", "extra"), [
    ("adding", ["task.seq_len=6", "task.optimizer.lr=0.01"]),
    ("copy", ["task.delay=3", "task.optimizer.lr=0.01"]),
])
def test_short_training_run(make_config, lab_root: Path, task: str, extra: list[str]) -> None:
    metrics = run(make_config(f"task={task}", *FAST["synthetic"], *extra))
    losses = metric_history(lab_root, task, "train/loss_epoch")
    assert len(losses) == 3 and losses[-1] < losses[0]
    # the ratio is the test loss over the memoryless baseline's (predict the mean sum; the
    # marginal symbol distribution); measured after 3 epochs 1.02-1.07, with lr 0 2.6-6.8:
    # the network has at least learned what needs no memory
    assert metrics["test/loss_ratio"] == pytest.approx(
        metrics["test/loss"] / metrics["test/baseline_loss"], rel=1e-4)
    assert metrics["test/loss_ratio"] < 1.25, metrics
    assert metrics["test/solved"] == float(metrics["test/loss_ratio"] < 0.1) == 0.0
    baseline = metric_history(lab_root, task, "val/baseline_loss")
    assert len(baseline) == 3 and baseline[0] == pytest.approx(baseline[-1])  # fixed data
