"""Gradient flow: per-step ||dLoss/dh_t|| against a hand-written recurrence under autograd,
alignment by distance, side effects, and the callbacks inside a real run."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import latest_run, metric_history

from rnnlab.data.spec import ClassifySpec, RegressSpec, TagSpec
from rnnlab.data.synthetic import adding_problem
from rnnlab.models import RecurrentEncoder
from rnnlab.run.train import run
from rnnlab.tasks.classification import ClassificationTask
from rnnlab.tasks.regression import RegressionTask
from rnnlab.tracking.gradient_flow import gradient_norms, norms_by_distance, step_gradients


def _regression(cell: str, hidden: int = 4, layers: int = 1) -> RegressionTask:
    torch.manual_seed(0)
    backbone = RecurrentEncoder(cell, hidden_size=hidden, num_layers=layers, input_size=2)
    return RegressionTask(backbone, RegressSpec(output_size=1), partial(torch.optim.SGD, lr=0.1))


def _reference_norms(module: RegressionTask, batch: dict) -> torch.Tensor:
    """dL/dh_t by an explicit recurrence with retain_grad on every state (no fused kernel)."""
    rnn, cell = module.backbone.rnn, module.backbone.cell
    w_ih, w_hh = rnn.weight_ih_l0, rnn.weight_hh_l0
    b = rnn.bias_ih_l0 + rnn.bias_hh_l0
    x = batch["x"]
    h = torch.zeros(x.shape[0], rnn.hidden_size)
    c = torch.zeros_like(h)
    states = []
    for t in range(x.shape[1]):
        z = x[:, t] @ w_ih.T + h @ w_hh.T + b
        if cell == "rnn":
            h = torch.tanh(z)
        else:  # lstm: gates i, f, g, o
            i, f, g, o = z.chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        h.retain_grad()
        states.append(h)
    pred = module.head.linear(h).squeeze(-1)
    F.mse_loss(pred, batch["y"]).backward()
    return torch.stack([s.grad.norm() for s in reversed(states)])


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_norms_match_autograd_on_a_tiny_model(cell: str) -> None:
    module = _regression(cell)
    batch = adding_problem(5, 12, torch.Generator().manual_seed(1))
    expected = _reference_norms(module, batch)
    module.zero_grad(set_to_none=True)
    got = gradient_norms(module, batch)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-4)
    assert all(p.grad is None for p in module.parameters())  # training state untouched
    assert "forward" not in vars(module.backbone) and "log" not in vars(module)
    assert module.training


def test_multilayer_top_state_is_the_total_derivative() -> None:
    """The top layer's state at step t feeds the next step too: finite differences agree."""
    module = _regression("gru", hidden=3, layers=2).double()
    batch = {k: (v.double() if v.is_floating_point() else v) for k, v in
             adding_problem(2, 5, torch.Generator().manual_seed(2)).items()}
    grads = step_gradients(module, batch)
    assert grads.shape == (2, 5, 3)
    eps = 1e-6
    t = 1
    # perturb the top-layer state after step t by rerunning the rest of the sequence
    rnn = module.backbone.rnn
    with torch.no_grad():
        _, hidden = rnn(batch["x"][:, : t + 1])

        def loss_from(h: torch.Tensor) -> float:
            out, _ = rnn(batch["x"][:, t + 1:], h)
            pred = module.head.linear(out[:, -1]).squeeze(-1)
            return F.mse_loss(pred, batch["y"]).item()

        bumped = hidden.clone()
        bumped[-1, 0, 0] += eps
        lowered = hidden.clone()
        lowered[-1, 0, 0] -= eps
        numeric = (loss_from(bumped) - loss_from(lowered)) / (2 * eps)
    assert grads[0, t, 0].item() == pytest.approx(numeric, rel=1e-5, abs=1e-9)


def test_alignment_by_distance_with_variable_lengths() -> None:
    grads = torch.zeros(2, 4, 1)
    grads[0, :, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0])  # length 4
    grads[1, :, 0] = torch.tensor([5.0, 6.0, 7.0, 0.0])  # length 3: last real step is 2
    norms = norms_by_distance(grads, torch.tensor([4, 3]))
    expected = torch.tensor([(16 + 49) ** 0.5, (9 + 36) ** 0.5, (4 + 25) ** 0.5, 1.0])
    torch.testing.assert_close(norms, expected)


def test_classification_task_and_vanishing_tanh() -> None:
    """Works through ClassificationTask's own training_step; tanh decays faster than LSTM."""
    torch.manual_seed(0)
    x = torch.randn(8, 40, 3)
    batch = {"x": x, "lengths": torch.full((8,), 40), "y": torch.randint(0, 2, (8,))}
    decay = {}
    for cell in ("rnn", "lstm"):
        torch.manual_seed(0)
        module = ClassificationTask(RecurrentEncoder(cell, hidden_size=16, input_size=3),
                                    ClassifySpec(num_classes=2), partial(torch.optim.SGD, lr=0.1))
        norms = gradient_norms(module, batch)
        assert norms.shape == (40,) and bool((norms > 0).all())
        decay[cell] = float(norms[-1] / norms[0])
    assert decay["rnn"] < 1e-3 and decay["rnn"] < decay["lstm"]


def test_callbacks_in_a_run(make_config, lab_root: Path) -> None:
    run(make_config("task=adding", "callbacks=gradient_flow", "model=rnn",
                    "model.hidden_size=8", "task.seq_len=8", "task.datamodule.n_train=128",
                    "task.datamodule.n_val=32", "task.datamodule.n_test=32",
                    "trainer.max_epochs=2", "callbacks.gradient_flow.every_n_epochs=1",
                    "trainer.log_every_n_steps=1"))
    client, latest = latest_run(lab_root, "adding")
    # the training norm of every step (2 epochs of 2 batches), finite and non-zero
    steps = metric_history(lab_root, "adding", "train/grad_norm")
    assert len(steps) == 4 and all(0 < n < float("inf") for n in steps), steps
    near = metric_history(lab_root, "adding", "grad_flow/norm_d0")
    far = metric_history(lab_root, "adding", "grad_flow/norm_far")
    ratio = metric_history(lab_root, "adding", "grad_flow/log10_far_over_near")
    assert len(near) == len(far) == len(ratio) == 3  # before training, after each epoch
    for n, f, r in zip(near, far, ratio, strict=True):
        assert r == pytest.approx(math.log10(f / n), abs=1e-4)
        # a tanh RNN's gradient vanishes over the 8 steps (measured 10^-2.6 here); a
        # callback that measured nothing, or one norm for every distance, gives 0 or 1
        assert 0 < f < 0.1 * n, (n, f)
    assert "plots/gradient_flow.png" in [a.path for a in client.list_artifacts(
        latest.info.run_id, "plots")]
    assert latest.data.tags["model"] == "rnn"


def test_tagger_with_input_features() -> None:
    """A tagger whose backbone reads bigram features: the unrolled pass gets them too."""
    from rnnlab.tasks.tagging import TaggingTask

    torch.manual_seed(0)
    spec = TagSpec(tag_names=["O", "B-PER", "I-PER"], char_level=True, bigram_vocab_size=12,
                   bigrams_per_token=1)
    module = TaggingTask(RecurrentEncoder("lstm", hidden_size=8, vocab_size=10, embedding_dim=6),
                         spec, partial(torch.optim.SGD, lr=0.1), bigram_features=True,
                         feature_position="input")
    steps = 7
    batch = {"x": torch.randint(1, 10, (3, steps)), "lengths": torch.full((3,), steps),
             "y": torch.randint(0, 3, (3, steps)), "bigrams": torch.randint(1, 12, (3, steps))}
    norms = gradient_norms(module, batch)
    assert norms.shape == (steps,) and bool((norms > 0).all())
