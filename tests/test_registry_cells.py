"""The cell registry and the backbone interface that tasks use instead of internals."""

from __future__ import annotations

import pytest
import torch

from rnnlab.core.errors import ConfigError
from rnnlab.models import CELLS, RecurrentEncoder, TransformerEncoder
from rnnlab.models.cells import cell_names, get_cell
from rnnlab.models.seq2seq import Seq2Seq


def test_the_fused_cells_are_registered_first_with_their_states() -> None:
    assert cell_names()[:4] == ("rnn", "rnn_relu", "lstm", "gru")
    assert cell_names() == CELLS
    assert get_cell("lstm").state == ("h", "c")
    assert get_cell("gru").state == ("h",)


def test_unknown_cells_are_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"model.cell='lstmm' is unknown; use one of rnn, "):
        RecurrentEncoder("lstmm", hidden_size=4, vocab_size=5)
    enc = RecurrentEncoder("gru", hidden_size=4, vocab_size=5)
    with pytest.raises(ConfigError, match=r"task.module.decoder_cell='grux' is unknown"):
        Seq2Seq(enc, 7, 1, 2, decoder_cell="grux")


def test_cell_options_the_cell_does_not_take_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"model.cell_options has wobble, which model.cell=gru"):
        RecurrentEncoder("gru", hidden_size=4, vocab_size=5, cell_options={"wobble": 1})


@pytest.mark.parametrize("cell", CELLS)
def test_interface_of_recurrent_backbones(cell: str) -> None:
    enc = RecurrentEncoder(cell, hidden_size=6, num_layers=2, vocab_size=9, embedding_dim=5)
    assert enc.is_recurrent and enc.cell == cell and enc.state_layers == 2
    assert enc.embedding is enc.input.layer and enc.input_size is None
    state = enc.init_state(3)
    parts = state if isinstance(state, tuple) else (state,)
    assert len(parts) == len(enc.state_names) and parts[0].shape == (2, 3, 6)
    # one step through the interface equals the same step of a full pass
    x = torch.randint(1, 9, (3, 4))
    full = enc.eval()(x)
    out, state = enc.step(x[:, 0])
    for t in range(1, 4):
        out, state = enc.step(x[:, t], state)
    torch.testing.assert_close(out, full.outputs[:, -1], atol=1e-5, rtol=1e-4)


def test_interface_of_the_transformer() -> None:
    tr = TransformerEncoder(d_model=8, nhead=2, num_layers=3, input_size=5)
    assert not tr.is_recurrent and tr.cell is None and tr.state_names == ()
    assert tr.init_state(2) is None and tr.embedding is None and tr.input_size == 5
    # a decoder after it starts from one bridged layer, whatever its depth
    assert tr.state_layers == 1


def test_every_registered_cell_has_its_own_model_preset() -> None:
    """Test parameters and sweeps read cells from the registry: each needs ``model=<cell>``."""
    from rnnlab.models.presets import recurrent_presets

    presets = recurrent_presets()
    for cell in cell_names():
        assert presets[cell]["cell"] == cell
    assert presets["bigru"]["cell"] == "gru" and presets["bigru"]["bidirectional"] is True
    assert set(recurrent_presets(bidirectional=True)) == {"bilstm", "bigru"}
    assert "transformer" not in presets and "irnn" in recurrent_presets(bidirectional=False)


def test_a_cell_registered_alone_works_as_encoder_and_decoder(monkeypatch) -> None:
    """The registry's promise: one entry, and the encoder and the decoder both take it."""
    import rnnlab.models.cells as registry
    from rnnlab.models.cells import Cell, LayerArgs

    def make(args: LayerArgs) -> torch.nn.Module:
        return torch.nn.RNN(args.input_size, args.hidden_size, args.num_layers,
                            nonlinearity="tanh", batch_first=True, bidirectional=args.bidirectional)

    monkeypatch.setitem(registry._CELLS, "elman", Cell("elman", make, "a test cell"))
    enc = RecurrentEncoder("elman", hidden_size=6, vocab_size=9, embedding_dim=4)
    model = Seq2Seq(enc, 7, 1, 2, attention="luong_dot", embedding_dim=5).eval()
    assert model.cell == "elman" and isinstance(model.rnn, torch.nn.RNN)
    x, lengths = torch.randint(2, 9, (3, 5)), torch.tensor([5, 3, 2])
    greedy, _ = model.greedy(x, lengths, max_len=6)
    assert model.beam_search(x, lengths, beam_size=1, max_len=6) == greedy
