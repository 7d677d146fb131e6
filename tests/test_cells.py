"""Cells of the registry: the log-space scan, padding, lengths, steps and state.

Every test here runs for every registered cell, so a cell added to
``rnnlab.models.cells`` is checked without editing this file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import (
    FAST,
    metric_history,
    slow_except,
    token_batch,
    write_cmudict,
    write_frames_npz,
    write_pairs,
    write_text,
)

from rnnlab.cli.generate import main as generate_main
from rnnlab.core.errors import ConfigError
from rnnlab.models import CELLS, RecurrentEncoder
from rnnlab.models.cells import get_cell
from rnnlab.models.cells.scan import reverse_within, scan, scan_sequential
from rnnlab.run.train import run


def test_parallel_scan_equals_the_recurrence_with_a_signed_start() -> None:
    torch.manual_seed(0)
    log_a = -torch.rand(3, 50, 4) * 2
    log_b = torch.randn(3, 50, 4)
    h0 = torch.randn(3, 4)  # a decoder bridge gives tanh: negative starts must work
    torch.testing.assert_close(scan(log_a, log_b, h0), scan_sequential(log_a, log_b, h0),
                               atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(scan(log_a, log_b), scan_sequential(log_a, log_b),
                               atol=1e-5, rtol=1e-4)


def test_scan_stays_finite_over_long_sequences() -> None:
    log_a = torch.full((1, 4096, 2), -0.7, requires_grad=True)
    log_b = torch.zeros(1, 4096, 2, requires_grad=True)
    h = scan(log_a, log_b)
    h.sum().backward()
    assert torch.isfinite(h).all() and torch.isfinite(log_a.grad).all()
    # the fixed point of h = a h + b with a = exp(-0.7), b = 1
    assert h[0, -1, 0].item() == pytest.approx(1 / (1 - torch.exp(torch.tensor(-0.7)).item()),
                                               rel=1e-3)


def test_reverse_within_keeps_padding_in_place() -> None:
    x = torch.arange(10.0).view(2, 5, 1)
    out = reverse_within(x, torch.tensor([5, 3]))
    assert out[0, :, 0].tolist() == [4, 3, 2, 1, 0]
    assert out[1, :, 0].tolist() == [7, 6, 5, 8, 9]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_need_state_is_the_state_after_the_last_real_step(cell: str, bidirectional: bool) -> None:
    torch.manual_seed(0)
    enc = RecurrentEncoder(cell, hidden_size=5, num_layers=2, bidirectional=bidirectional,
                           embedding_dim=4, vocab_size=20).eval()
    x, lengths = token_batch([6, 2, 4])
    out = enc(x, lengths, need_state=True)
    for i, n in enumerate(lengths.tolist()):
        alone = enc(x[i: i + 1, :n], need_state=True)
        h, h_alone = (out.hidden, alone.hidden)
        if isinstance(h, tuple):
            h, h_alone = h[0], h_alone[0]
        torch.testing.assert_close(h[:, i], h_alone[:, 0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("cell", CELLS)
def test_padding_values_change_nothing(cell: str) -> None:
    torch.manual_seed(0)
    enc = RecurrentEncoder(cell, hidden_size=5, bidirectional=True, embedding_dim=4,
                           vocab_size=20).eval()
    x, lengths = token_batch([6, 3])
    noisy = x.clone()
    noisy[1, 3:] = 7  # garbage where the padding was
    a, b = enc(x, lengths, need_state=True), enc(noisy, lengths, need_state=True)
    torch.testing.assert_close(a.outputs, b.outputs)
    torch.testing.assert_close(a.last, b.last)


@pytest.mark.parametrize("cell", CELLS)
def test_stateful_continuation_equals_one_pass(cell: str) -> None:
    """Two chunks with the carried state give the numbers of one pass (charlm streams)."""
    torch.manual_seed(0)
    enc = RecurrentEncoder(cell, hidden_size=6, num_layers=2, input_size=3).eval()
    x = torch.randn(2, 9, 3)
    whole = enc(x)
    first = enc(x[:, :4])
    second = enc(x[:, 4:], hidden=first.hidden)
    torch.testing.assert_close(second.outputs, whole.outputs[:, 4:], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("cell", CELLS)
def test_a_step_of_training_changes_every_layer(cell: str) -> None:
    torch.manual_seed(0)
    enc = RecurrentEncoder(cell, hidden_size=6, num_layers=2, bidirectional=True,
                           embedding_dim=4, vocab_size=20)
    x, lengths = token_batch([5, 3])
    enc(x, lengths).last.pow(2).sum().backward()
    for name, p in enc.rnn.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_mingru_step_is_its_formula() -> None:
    """h_t = (1 - z) h_{t-1} + z g(h~), z and h~ from the input only (Feng et al. 2024)."""
    torch.manual_seed(0)
    enc = RecurrentEncoder("mingru", hidden_size=3, input_size=2).eval()
    x, h0 = torch.randn(4, 2), torch.randn(1, 4, 3)
    k, cand = enc.rnn.layers[0].linear(x).chunk(2, -1)
    z = torch.sigmoid(k)
    g = torch.where(cand >= 0, cand + 0.5, torch.sigmoid(cand))
    out, state = enc.step(x, h0)
    torch.testing.assert_close(out, (1 - z) * h0[0] + z * g)
    torch.testing.assert_close(state[0], out)


def test_minlstm_step_is_its_formula_and_honours_the_forget_bias() -> None:
    """h_t = f' h_{t-1} + i' g(h~), f' + i' = 1, gates from the input only."""
    torch.manual_seed(0)
    enc = RecurrentEncoder("minlstm", hidden_size=3, input_size=2, forget_bias=2.0).eval()
    layer = enc.rnn.layers[0]
    assert layer.linear.bias[:3].tolist() == [2.0, 2.0, 2.0]
    x, h0 = torch.randn(4, 2), torch.randn(1, 4, 3)
    kf, ki, cand = layer.linear(x).chunk(3, -1)
    f, i = torch.sigmoid(kf), torch.sigmoid(ki)
    g = torch.where(cand >= 0, cand + 0.5, torch.sigmoid(cand))
    out, _ = enc.step(x, h0)
    torch.testing.assert_close(out, f / (f + i) * h0[0] + i / (f + i) * g)


def test_indrnn_is_element_wise_and_its_recurrent_weight_is_bounded() -> None:
    torch.manual_seed(0)
    enc = RecurrentEncoder("indrnn", hidden_size=3, input_size=2,
                           cell_options={"recurrent_max": 0.5}).eval()
    layer = enc.rnn.layers[0]
    with torch.no_grad():
        layer.recurrent.copy_(torch.tensor([3.0, -3.0, 0.2]))  # as if an update overshot
    x, h0 = torch.randn(4, 2), torch.rand(1, 4, 3)
    out, _ = enc.step(x, h0)
    u = torch.tensor([0.5, -0.5, 0.2])
    torch.testing.assert_close(out, torch.relu(layer.linear(x) + u * h0[0]))
    with pytest.raises(ConfigError, match="recurrent_max must be greater than 0"):
        RecurrentEncoder("indrnn", hidden_size=3, input_size=2, cell_options={"recurrent_max": 0})


# ---- the cells beyond PyTorch's fused ones, end to end ------------------------------------
# (the fused cells have these runs in test_charlm, test_g2p and test_gradient_flow). The
# default suite runs each path with one scanned cell, a different one each; every cell trains
# sentiment in test_sentiment. The rest of this grid is in the slow suite.
SCANNED = [c for c in CELLS if not get_cell(c).packable]


@pytest.mark.parametrize("cell", slow_except(SCANNED, "mingru"))
def test_stateful_charlm_checkpoint_and_generate(cell: str, make_config, tmp_path: Path,
                                                 lab_root: Path, capsys) -> None:
    text = write_text(tmp_path / "plays.txt")
    metrics = run(make_config(f"model={cell}", "task=charlm", f"task.data.path={text}",
                              *FAST["charlm"], "task.stateful=true", "task.datamodule.batch_size=8"))
    history = metric_history(lab_root, "charlm", "train/loss_epoch")
    assert len(history) == 2 and history[-1] < history[0]
    # the checkpoint loads as data only, and the one-step generator is deterministic
    ckpt = metrics["ckpt_path"]
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    capsys.readouterr()
    args = [ckpt, "--prompt", "ROMEO:", "--length", "40", "--seed", "3"]
    assert generate_main(args) == 0
    first = capsys.readouterr().out
    assert generate_main(args) == 0
    assert capsys.readouterr().out == first and first.startswith("ROMEO:") and len(first) == 47


@pytest.mark.parametrize("cell", slow_except(SCANNED, "minlstm"))
def test_seq2seq_encoder_and_decoder_with_attention_and_beam(cell: str, make_config,
                                                              tmp_path: Path,
                                                              lab_root: Path) -> None:
    data = write_cmudict(tmp_path / "tiny.dict")
    metrics = run(make_config("task=g2p", f"model={cell}", "model.bidirectional=true",
                              f"task.data.path={data}", "task.attention=bahdanau", *FAST["g2p"]))
    history = metric_history(lab_root, "g2p", "train/loss_epoch")
    assert len(history) == 3 and history[-1] < history[0] * 0.8
    assert metrics["test/per"] < 0.9  # a model that learned nothing sits near 1


@pytest.mark.parametrize("cell", slow_except(SCANNED, "indrnn"))
def test_gradient_flow_callback_unrolls_the_cell(cell: str, make_config, lab_root: Path) -> None:
    run(make_config("task=adding", "callbacks=gradient_flow", f"model={cell}",
                    "model.hidden_size=8", "task.seq_len=8", "task.datamodule.n_train=128",
                    "task.datamodule.n_val=32", "task.datamodule.n_test=32",
                    "trainer.max_epochs=2", "callbacks.gradient_flow.every_n_epochs=1"))
    norms = metric_history(lab_root, "adding", "grad_flow/norm_d0")
    assert len(norms) == 3 and all(n > 0 for n in norms)
    far = metric_history(lab_root, "adding", "grad_flow/norm_far")
    assert len(far) == 3 and all(n > 0 for n in far)  # the gradient reaches the first step


def _headline_overrides(task: str, tmp_path: Path) -> list[str]:
    """The tiny settings of each headline task whose end-to-end test runs one cell only."""
    if task == "translate":
        return ["task=translate", f"task.data.path={write_pairs(tmp_path / 'pairs.tsv')}",
                *FAST["translate"]]
    if task == "speech":
        return ["task=speech", f"task.data.train={write_frames_npz(tmp_path / 'f.npz', n=90)}",
                *FAST["speech"]]
    extra = ["task.seq_len=6"] if task == "adding" else ["task.delay=3"]
    return [f"task={task}", *[o for o in FAST["synthetic"] if not o.startswith("model=")],
            "task.optimizer.lr=0.01", *extra]


@pytest.mark.slow  # each of these tasks trains with one cell in its own module
@pytest.mark.parametrize("task", ["translate", "speech", "adding", "copy"])
@pytest.mark.parametrize("cell", SCANNED)
def test_the_rest_of_the_headline_grid_trains(cell: str, task: str, make_config, tmp_path: Path,
                                              lab_root: Path) -> None:
    run(make_config(f"model={cell}", *_headline_overrides(task, tmp_path)))
    losses = metric_history(lab_root, task, "train/loss_epoch")
    assert len(losses) == 3 and losses[-1] < losses[0]
