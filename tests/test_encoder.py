"""The recurrent backbone: shapes, variable lengths, bidirectional last state, init schemes."""

from __future__ import annotations

import re

import pytest
import torch
from helpers import token_batch

from rnnlab.core.errors import ConfigError
from rnnlab.models import CELLS, RecurrentEncoder, TransformerEncoder

_batch = token_batch


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_shapes(cell: str, bidirectional: bool) -> None:
    enc = RecurrentEncoder(cell, hidden_size=8, num_layers=2, bidirectional=bidirectional,
                           embedding_dim=6, vocab_size=20)
    x, lengths = _batch([5, 3, 1])
    out = enc(x, lengths)
    d = 16 if bidirectional else 8
    assert enc.output_size == d
    assert out.outputs.shape == (3, 5, d)
    assert out.last.shape == (3, d)
    assert out.outputs[1, 3:].abs().sum() == 0  # padded steps are zeroed


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_last_state_equals_per_sequence_reference(cell: str, bidirectional: bool) -> None:
    """Padding must not leak: each sequence alone (no padding) gives the same features."""
    enc = RecurrentEncoder(cell, hidden_size=7, num_layers=2, bidirectional=bidirectional,
                           embedding_dim=5, vocab_size=20).eval()
    x, lengths = _batch([6, 2, 4, 1])
    batched = enc(x, lengths)
    for i, n in enumerate(lengths.tolist()):
        alone = enc(x[i: i + 1, :n])
        torch.testing.assert_close(batched.last[i], alone.last[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(batched.outputs[i, :n], alone.outputs[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_need_state_gives_state_after_last_real_step(cell: str) -> None:
    enc = RecurrentEncoder(cell, hidden_size=4, embedding_dim=3, vocab_size=20).eval()
    x, lengths = _batch([5, 2])
    out = enc(x, lengths, need_state=True)
    alone = enc(x[1:2, :2], need_state=True)
    h_batched = out.hidden[0] if cell == "lstm" else out.hidden
    h_alone = alone.hidden[0] if cell == "lstm" else alone.hidden
    torch.testing.assert_close(h_batched[:, 1], h_alone[:, 0], atol=1e-5, rtol=1e-4)
    assert enc(x, lengths).hidden is None  # ragged, unpacked: no misleading state


def test_real_valued_inputs_and_stateful_continuation() -> None:
    enc = RecurrentEncoder("gru", hidden_size=6, input_size=3).eval()
    x = torch.randn(2, 8, 3)
    whole = enc(x)
    first = enc(x[:, :5])
    second = enc(x[:, 5:], hidden=first.hidden)
    torch.testing.assert_close(whole.outputs[:, 5:], second.outputs, atol=1e-5, rtol=1e-4)


def test_init_schemes() -> None:
    irnn = RecurrentEncoder("rnn_relu", hidden_size=5, vocab_size=10, init="identity")
    torch.testing.assert_close(irnn.rnn.weight_hh_l0.detach(), torch.eye(5))
    assert irnn.rnn.bias_hh_l0.abs().sum() == 0
    lstm = RecurrentEncoder("lstm", hidden_size=4, vocab_size=10, forget_bias=1.0)
    forget = lstm.rnn.bias_ih_l0[4:8] + lstm.rnn.bias_hh_l0[4:8]
    torch.testing.assert_close(forget.detach(), torch.ones(4))
    orth = RecurrentEncoder("gru", hidden_size=4, vocab_size=10, init="orthogonal")
    block = orth.rnn.weight_hh_l0[:4].detach()
    torch.testing.assert_close(block @ block.T, torch.eye(4), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("kwargs", "message"), [  # model.* ranges: test_schema.py
    ({"cell": "lstmm"}, "model.cell='lstmm' is unknown"),
    ({"bidirectional": True, "causal": True}, "bidirectional model cannot be used"),
])
def test_bad_settings_name_the_key(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        RecurrentEncoder(**{"vocab_size": 10, **kwargs})


def test_transformer_padding_and_causality() -> None:
    enc = TransformerEncoder(d_model=8, nhead=2, num_layers=1, dim_feedforward=16, dropout=0.0,
                             vocab_size=20).eval()
    x, lengths = _batch([5, 3])
    batched = enc(x, lengths)
    alone = enc(x[1:2, :3])
    torch.testing.assert_close(batched.last[1], alone.last[0], atol=1e-5, rtol=1e-4)
    causal = TransformerEncoder(d_model=8, nhead=2, num_layers=1, dim_feedforward=16,
                                dropout=0.0, vocab_size=20, causal=True).eval()
    full = causal(x[:1])
    prefix = causal(x[:1, :3])
    torch.testing.assert_close(full.outputs[0, :3], prefix.outputs[0], atol=1e-5, rtol=1e-4)
