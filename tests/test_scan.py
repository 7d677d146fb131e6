"""The element-wise scans and the residual blocks of the scanned cells.

The scans must be the recurrence itself (forward and gradients, both the compiled and the
PyTorch path), the cells must give the numbers of their step form whatever the padding and
direction, and ``model.block=residual`` must train on every task family like any cell.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import (
    FAST,
    metric_history,
    slow_except,
    tiny_task_overrides,
    token_batch,
    write_frames_npz,
)
from test_asr import SMALL as ASR_SMALL
from test_asr import write_manifest

import rnnlab.models.cells.scan as scan_module
from rnnlab.build.schema import validate
from rnnlab.core.errors import ConfigError
from rnnlab.models import RecurrentEncoder
from rnnlab.models.cells.gated import WIDTH, coefficients, gated_scan
from rnnlab.models.cells.scan import linear_scan, log_g, relu_scan, scan
from rnnlab.run.train import run

SCANNED = ["mingru", "minlstm", "indrnn"]


@pytest.fixture(params=["compiled", "torch"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each scan test runs on the compiled kernels and on the PyTorch fallback."""
    if request.param == "torch":
        monkeypatch.setattr(scan_module, "_compiled", lambda *tensors: None)
    return request.param


def step_linear(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    h, out = h0, []
    for t in range(a.shape[1]):
        h = a[:, t] * h + b[:, t]
        out.append(h)
    return torch.stack(out, 1)


def step_relu(x: torch.Tensor, u: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    h, out = h0, []
    for t in range(x.shape[1]):
        h = torch.relu(x[:, t] + u * h)
        out.append(h)
    return torch.stack(out, 1)


def leaves(*shapes: tuple[int, ...], dtype: torch.dtype = torch.float32,
           positive: int = -1) -> list[torch.Tensor]:
    out = [torch.randn(*s, dtype=dtype) for s in shapes]
    if positive >= 0:
        out[positive] = torch.rand(*shapes[positive], dtype=dtype)  # gates in (0, 1)
    return [t.requires_grad_() for t in out]


@pytest.mark.parametrize("kind", ["linear", "relu"])
def test_scan_equals_the_step_recurrence_forward_and_backward(kind: str, backend: str) -> None:
    torch.manual_seed(0)
    if kind == "linear":
        fast, slow, inputs = linear_scan, step_linear, leaves((4, 37, 6), (4, 37, 6), (4, 6),
                                                              positive=0)
    else:
        fast, slow, inputs = relu_scan, step_relu, leaves((4, 37, 6), (6,), (4, 6))
    weights = torch.randn(4, 37, 6)
    got, want = fast(*inputs), slow(*inputs)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    grads = torch.autograd.grad((got * weights).sum(), inputs)
    expected = torch.autograd.grad((want * weights).sum(), inputs)
    for g, e in zip(grads, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


def test_scans_pass_gradcheck_in_float64(backend: str) -> None:
    torch.manual_seed(0)
    a, b, h0 = leaves((2, 9, 3), (2, 9, 3), (2, 3), dtype=torch.float64, positive=0)
    assert torch.autograd.gradcheck(linear_scan, (a, b, h0))
    x, u, h0 = leaves((2, 9, 3), (3,), (2, 3), dtype=torch.float64)
    assert torch.autograd.gradcheck(relu_scan, (x, u, h0))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kind", ["mingru", "minlstm"])
def test_gated_scan_equals_the_cells_pytorch_form(kind: str, threads: int) -> None:
    """The one-pass kernels (gates inside the loop, rows split over threads when the
    call is large) give the states and gradients of coefficients() + the step scan."""
    torch.manual_seed(0)
    batch, steps, hidden = (8, 70, 128) if threads > 1 else (3, 29, 5)  # 2 threads: >= 2**16
    proj = (3 * torch.randn(batch, steps, WIDTH[kind] * hidden)).requires_grad_()
    h0 = torch.randn(batch, hidden, requires_grad=True)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = gated_scan(kind, proj, h0)
        weights = torch.randn_like(got)
        grads = torch.autograd.grad((got * weights).sum(), (proj, h0))
    finally:
        torch.set_num_threads(before)
    want = step_linear(*coefficients(kind, proj), h0)
    expected = torch.autograd.grad((want * weights).sum(), (proj, h0))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for g_, e in zip(grads, expected, strict=True):
        torch.testing.assert_close(g_, e, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["mingru", "minlstm"])
def test_gated_scan_passes_gradcheck_and_survives_saturated_gates(kind: str) -> None:
    torch.manual_seed(0)
    proj = torch.randn(2, 7, WIDTH[kind] * 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, h: gated_scan(kind, p, h), (proj, h0))
    huge = (torch.randn(2, 50, WIDTH[kind] * 3) * 30).requires_grad_()  # exp(|k|) > 1e30
    out = gated_scan(kind, huge)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(huge.grad).all()
    torch.testing.assert_close(out, step_linear(*coefficients(kind, huge.detach()),
                                                torch.zeros(2, 3)))


def test_linear_scan_stays_finite_and_exact_over_long_sequences() -> None:
    a = torch.full((1, 8192, 2), 0.5, requires_grad=True)
    b = torch.ones(1, 8192, 2, requires_grad=True)
    h = linear_scan(a, b)
    h.sum().backward()
    assert torch.isfinite(a.grad).all() and h[0, -1, 0].item() == pytest.approx(2.0)


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_the_weights_give_the_numbers_of_the_log_space_form(cell: str) -> None:
    """Checkpoints trained with the log-space scan mean the same model now."""
    torch.manual_seed(0)
    enc = RecurrentEncoder(cell, hidden_size=8, input_size=4).eval()
    x, h0 = torch.randn(3, 50, 4), torch.randn(1, 3, 8)
    pre = enc.rnn.layers[0].linear(x)
    if cell == "mingru":
        k, cand = pre.chunk(2, -1)
        log_a, log_b = -F.softplus(k), -F.softplus(-k) + log_g(cand)
    else:
        kf, ki, cand = pre.chunk(3, -1)
        log_f, log_i = -F.softplus(-kf), -F.softplus(-ki)
        norm = torch.logaddexp(log_f, log_i)
        log_a, log_b = log_f - norm, log_i - norm + log_g(cand)
    torch.testing.assert_close(enc(x, hidden=h0).outputs, scan(log_a, log_b, h0[0]),
                               rtol=1e-5, atol=1e-5)


def stepwise(enc: RecurrentEncoder, x: torch.Tensor) -> torch.Tensor:
    """(1, T) ids -> (1, T, D) outputs of the step form, one token at a time."""
    state, outs = None, []
    for t in range(x.shape[1]):
        out, state = enc.step(x[:, t], state)
        outs.append(out)
    return torch.stack(outs, 1)


@pytest.mark.parametrize("block", ["plain", "residual"])
@pytest.mark.parametrize("cell", SCANNED)
def test_a_padded_batch_gives_each_sequence_its_step_form(cell: str, block: str) -> None:
    torch.manual_seed(0)
    lengths = torch.randint(1, 12, (5,))
    x, lengths = token_batch(lengths.tolist())
    x[x == 0] = 7  # padding of any value must change nothing
    for bidirectional in (False, True):
        enc = RecurrentEncoder(cell, hidden_size=6, num_layers=2, embedding_dim=5,
                               vocab_size=20, bidirectional=bidirectional, block=block).eval()
        out = enc(x, lengths, need_state=True)
        for i, n in enumerate(lengths.tolist()):
            alone = enc(x[i: i + 1, :n], need_state=True)
            torch.testing.assert_close(out.outputs[i, :n], alone.outputs[0], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(out.hidden[:, i], alone.hidden[:, 0], rtol=1e-5, atol=1e-5)
            assert out.outputs[i, n:].abs().sum() == 0
            if not bidirectional:
                torch.testing.assert_close(alone.outputs, stepwise(enc, x[i: i + 1, :n]),
                                           rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", SCANNED)
def test_the_backward_direction_scans_each_sequence_from_its_last_real_step(cell: str) -> None:
    torch.manual_seed(0)
    enc = RecurrentEncoder(cell, hidden_size=6, embedding_dim=5, vocab_size=20,
                           bidirectional=True).eval()
    x, lengths = token_batch([7, 3, 5])
    out = enc(x, lengths)
    for i, n in enumerate(lengths.tolist()):
        emb = enc.input(x[i: i + 1, :n])
        forward, backward = (stepwise_layer(enc.rnn.layers[d], e) for d, e in
                             ((0, emb), (1, emb.flip(1))))
        torch.testing.assert_close(out.outputs[i, :n, :6], forward[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out.outputs[i, :n, 6:], backward[0].flip(0),
                                   rtol=1e-5, atol=1e-5)


def stepwise_layer(layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One layer of one direction, one step at a time (each step a length-1 scan)."""
    h, outs = None, []
    for t in range(x.shape[1]):
        h = layer(x[:, t: t + 1], h)[:, 0]
        outs.append(h)
    return torch.stack(outs, 1)


@pytest.mark.parametrize("cell", SCANNED)
def test_residual_blocks_carry_state_and_unroll_like_one_pass(cell: str) -> None:
    torch.manual_seed(0)
    enc = RecurrentEncoder(cell, hidden_size=6, num_layers=2, input_size=3, block="residual").eval()
    x = torch.randn(2, 9, 3)
    whole = enc(x)
    first = enc(x[:, :4])
    second = enc(x[:, 4:], hidden=first.hidden)
    torch.testing.assert_close(second.outputs, whole.outputs[:, 4:], rtol=1e-5, atol=1e-5)
    states: list[torch.Tensor] = []
    unrolled = enc.forward_steps(x, None, states)  # the gradient-flow probe's path
    torch.testing.assert_close(unrolled.outputs, whole.outputs, rtol=1e-5, atol=1e-5)
    weights = torch.randn(2, 6)  # (a plain sum of a LayerNorm's output is constant)
    grads = torch.autograd.grad((unrolled.outputs[:, -1] * weights).sum(), states)
    assert grads[-1].abs().sum() > 0  # the output reads the probed state itself


def test_residual_blocks_only_for_the_element_wise_cells(make_config) -> None:
    with pytest.raises(ConfigError, match="^model.block=residual does not apply to "
                                          "model.cell=lstm; use plain.$"):
        validate(make_config("task=adding", "model=lstm", "model.block=residual"))
    with pytest.raises(ConfigError, match="^model.block='stacked' is unknown"):
        validate(make_config("task=adding", "model=mingru", "model.block=stacked"))
    with pytest.raises(ConfigError, match="^model.block=residual does not apply"):
        RecurrentEncoder("gru", hidden_size=4, input_size=2, block="residual")


# ---- every task family trains with model.block=residual --------------------------------------
def _families(tmp_path: Path) -> dict[str, tuple[str, list[str]]]:
    """task family -> (MLflow experiment, overrides), each with a residual scanned cell."""
    def tiny(task: str, cell: str, *more: str) -> list[str]:
        kept = [o for o in tiny_task_overrides(task, tmp_path) if not o.startswith("model=")]
        return [*kept, f"model={cell}", "model.block=residual", "model.hidden_size=16",
                "model.embedding_dim=16", "trainer.max_epochs=2", *more]

    frames = write_frames_npz(tmp_path / "frames.npz", n=90)
    texts = ["0", "1", "01", "10", "001", "110", "0101", "1", "0", "011", "100", "10"] * 2
    manifest = write_manifest(tmp_path, [(f"u{i}.wav", t) for i, t in enumerate(texts)])
    return {
        "charlm": ("charlm", tiny("charlm", "mingru")),
        "g2p": ("g2p", tiny("g2p", "minlstm", "model.bidirectional=true")),
        "sentiment": ("sentiment", tiny("sentiment", "indrnn", "model.bidirectional=true")),
        "ner": ("ner", tiny("ner", "mingru", "model.bidirectional=true", "task.crf=false")),
        "copy": ("copy", tiny("copy", "minlstm")),
        "forecast": ("forecast", tiny("forecast", "indrnn", "callbacks=none")),
        "translate": ("translate", tiny("translate", "mingru")),
        "speech": ("speech", ["task=speech", f"task.data.train={frames}", "model=minlstm",
                              "model.block=residual", *FAST["speech"],
                              "model.bidirectional=true", "trainer.log_every_n_steps=2"]),
        "names": ("names", ["task=names", "model=indrnn", "model.block=residual",
                            *FAST["names"]]),
        "asr": ("asr", ["task=asr", f"task.data.train={manifest}", "task.alphabet=01",
                        "task.datamodule.split=[0.66,0.17,0.17]",
                        *(o for o in ASR_SMALL if not o.startswith("model=")),
                        "model=mingru", "model.block=residual", "model.bidirectional=true",
                        "trainer.max_epochs=3"]),
    }


FAST_FAMILIES = ("charlm", "g2p", "sentiment")


@pytest.mark.parametrize("family", slow_except(
    ["charlm", "g2p", "sentiment", "ner", "copy", "forecast", "translate", "speech", "names",
     "asr"],
    *FAST_FAMILIES))
def test_residual_blocks_train_on_every_task_family(family: str, make_config,
                                                    lab_root: Path, tmp_path: Path,
                                                    request: pytest.FixtureRequest) -> None:
    if family == "names":
        request.getfixturevalue("fake_faker")
    experiment, overrides = _families(tmp_path)[family]
    run(make_config(*overrides))
    losses = metric_history(lab_root, experiment, "train/loss_epoch")
    assert len(losses) >= 2 and losses[-1] < losses[0]

