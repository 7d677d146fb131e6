"""Encoder-decoder pieces: attention masking, search, teacher forcing, metrics by hand."""

from __future__ import annotations

import pytest
import torch
from helpers import token_batch

from rnnlab.core.errors import ConfigError
from rnnlab.metrics.seq2seq import (
    edit_distance,
    g2p_scores,
    stressless_g2p_scores,
    strip_stress,
    translation_scores,
)
from rnnlab.models import CELLS, RecurrentEncoder, TransformerEncoder
from rnnlab.models.attention import ATTENTIONS, Attention, masked_softmax
from rnnlab.models.seq2seq import Seq2Seq
from rnnlab.tasks.seq2seq import teacher_forcing_schedule

BOS, EOS, VOCAB = 2, 3, 15


_batch = token_batch


def _model(attention: str, cell: str = "lstm", bidirectional: bool = True, layers: int = 1,
           context: str = "last") -> Seq2Seq:
    torch.manual_seed(1)
    enc = RecurrentEncoder(cell, hidden_size=8, num_layers=layers, bidirectional=bidirectional,
                           embedding_dim=6, vocab_size=20)
    return Seq2Seq(enc, VOCAB, BOS, EOS, attention=attention, context=context,
                   embedding_dim=5, attention_size=7, dropout=0.0).eval()


def _targets(batch: int, steps: int) -> torch.Tensor:
    torch.manual_seed(2)
    y = torch.randint(4, VOCAB, (batch, steps))
    y[:, 0] = BOS
    return y


# ---- attention never weighs padding -------------------------------------------------
def test_masked_softmax_gives_padding_exactly_zero() -> None:
    scores = torch.tensor([[1.0, 5.0, 100.0]])
    weights = masked_softmax(scores, torch.tensor([[True, True, False]]))
    assert weights[0, 2] == 0
    torch.testing.assert_close(weights.sum(), torch.tensor(1.0))


@pytest.mark.parametrize("kind", ATTENTIONS[1:])
def test_attention_ignores_whatever_sits_in_the_padding(kind: str) -> None:
    torch.manual_seed(0)
    att = Attention(kind, 6, 6, 5)
    memory, query = torch.randn(2, 5, 6), torch.randn(2, 6)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    ctx, weights = att(query, memory, mask)
    assert weights[1, 2:].abs().sum() == 0
    noisy = memory.clone()
    noisy[1, 2:] = 1e3 * torch.randn(3, 6)  # garbage in the padding changes nothing
    ctx2, weights2 = att(query, noisy, mask)
    torch.testing.assert_close(ctx, ctx2)
    torch.testing.assert_close(weights, weights2)


@pytest.mark.parametrize("attention", ["bahdanau", "luong_dot", "luong_general"])
def test_decoder_attention_weights_are_zero_on_source_padding(attention: str) -> None:
    model = _model(attention)
    x, lengths = _batch([6, 3, 1])
    _, weights = model(x, lengths, _targets(3, 4))
    assert weights.shape == (3, 4, 6)
    assert weights[1, :, 3:].abs().sum() == 0 and weights[2, :, 1:].abs().sum() == 0
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4))


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_padded_batch_equals_each_sequence_alone(attention: str) -> None:
    model = _model(attention)
    x, lengths = _batch([6, 3])
    y = _targets(2, 4)
    batched, _ = model(x, lengths, y)
    alone, _ = model(x[1:, :3], lengths[1:], y[1:])
    torch.testing.assert_close(batched[1], alone[0], atol=1e-5, rtol=1e-4)


# ---- teacher forcing ----------------------------------------------------------------
@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("cell", CELLS)
def test_fused_teacher_forcing_equals_the_step_loop(attention: str, cell: str) -> None:
    model = _model(attention, cell, layers=2)
    x, lengths = _batch([5, 2, 4])
    y = _targets(3, 6)
    fused, _ = model(x, lengths, y, 1.0)
    looped, _ = model(x, lengths, y, 1.0, fused=False)
    torch.testing.assert_close(fused, looped, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("attention", ["none", "bahdanau", "luong_general"])
def test_teacher_forcing_zero_feeds_back_the_models_own_predictions(attention: str) -> None:
    model = _model(attention)
    x, lengths = _batch([5, 2, 4])
    y = _targets(3, 6)
    forced, _ = model(x, lengths, y, 1.0)
    free, _ = model(x, lengths, y, 0.0)
    torch.testing.assert_close(forced[:, 0], free[:, 0])  # step 0 sees BOS either way
    assert not torch.allclose(forced[:, 1:], free[:, 1:])
    # free running is greedy decoding: its argmax path is what greedy search emits
    greedy, _ = model.greedy(x, lengths, max_len=6)
    path = free.argmax(-1).tolist()
    for row, decoded in zip(path, greedy, strict=True):
        cut = row[: row.index(EOS)] if EOS in row else row
        assert cut[: len(decoded)] == decoded[: len(cut)]


def test_teacher_forcing_schedule_parses() -> None:
    assert teacher_forcing_schedule(0.7) == (0.7, 0.7)
    assert teacher_forcing_schedule({"start": 1.0, "end": 0.5}) == (1.0, 0.5)
    # out-of-range shares and unknown keys: the config schema (tests/test_schema.py)


# ---- search -------------------------------------------------------------------------
@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("cell", CELLS)
def test_beam_one_equals_greedy(attention: str, cell: str) -> None:
    model = _model(attention, cell)
    x, lengths = _batch([6, 3, 1, 4])
    greedy, _ = model.greedy(x, lengths, max_len=12)
    assert model.beam_search(x, lengths, beam_size=1, max_len=12) == greedy


def test_wider_beam_never_scores_worse_than_greedy() -> None:
    model = _model("bahdanau")
    x, lengths = _batch([6, 3, 4])

    def logp(seq: list[int], i: int) -> float:
        y = torch.tensor([[BOS, *seq]])
        logits, _ = model(x[i: i + 1, : lengths[i]], lengths[i: i + 1], y)
        target = torch.tensor([*seq, EOS])
        return float(torch.log_softmax(logits[0], -1)[torch.arange(len(target)), target].sum())

    greedy, _ = model.greedy(x, lengths, max_len=30)
    beam = model.beam_search(x, lengths, beam_size=5, max_len=30, length_penalty=0.0)
    for i in range(3):
        if len(greedy[i]) < 30:  # greedy finished: beam (no length penalty) finds >= its score
            assert logp(beam[i], i) >= logp(greedy[i], i) - 1e-4


def test_beam_size_below_one_is_refused() -> None:
    with pytest.raises(ConfigError, match="beam_size must be"):
        _model("bahdanau").beam_search(*_batch([3]), beam_size=0, max_len=5)
    # task.beam_size=0 in a config: the config schema (tests/test_schema.py)


# ---- encoders, contexts, configuration errors ----------------------------------------
@pytest.mark.parametrize("context", ["last", "projected", "pooled"])
def test_no_attention_contexts(context: str) -> None:
    model = _model("none", context=context)
    x, lengths = _batch([5, 2])
    logits, weights = model(x, lengths, _targets(2, 3))
    assert logits.shape == (2, 3, VOCAB) and weights is None
    assert (model.project is not None) == (context == "projected")


@pytest.mark.parametrize("cell", CELLS)
def test_context_feed_decides_where_the_fixed_context_goes(cell: str) -> None:
    torch.manual_seed(1)
    enc = RecurrentEncoder(cell, hidden_size=8, embedding_dim=6, vocab_size=20)
    x, lengths = _batch([5, 2])
    y_in = _targets(2, 4)
    outputs = {}
    for feed in ("both", "init", "steps"):
        torch.manual_seed(3)
        model = Seq2Seq(enc, VOCAB, BOS, EOS, attention="none", context_feed=feed,
                        embedding_dim=5, dropout=0.0).eval()
        src = model.encode(x, lengths)
        first = src.hidden[0] if isinstance(src.hidden, tuple) else src.hidden
        # the decoder starts from c except with 'steps', where it starts from zeros
        assert bool((first == 0).all()) == (feed == "steps")
        # c joins the decoder input unless it only starts the decoder
        assert model.rnn.input_size == 5 + (0 if feed == "init" else 8)
        # every parameter gets a gradient (no dead bridge when the decoder starts from zeros)
        model.train()
        model(x, lengths, y_in)[0].sum().backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
        model.zero_grad()
        model.eval()
        logits, _ = model(x, lengths, y_in)
        looped, _ = model(x, lengths, y_in, fused=False)
        torch.testing.assert_close(logits, looped)
        outputs[feed] = logits
    assert not torch.allclose(outputs["both"], outputs["init"])


def test_no_attention_decoder_reads_the_source_only_through_the_context() -> None:
    """With attention=none the decoder never looks at the encoder states beyond c."""
    model = _model("none", "lstm", bidirectional=False, context="last")
    x, lengths = _batch([4, 4])
    src = model.encode(x, lengths)
    y = _targets(2, 3)
    expected, _, _ = model.step(y[:, 0], src.hidden, src)
    src.memory = torch.randn_like(src.memory)  # every other encoder state replaced
    got, _, _ = model.step(y[:, 0], src.hidden, src)
    torch.testing.assert_close(got, expected)


def test_transformer_encoder_gets_a_gru_decoder_or_the_configured_cell() -> None:
    enc = TransformerEncoder(d_model=8, nhead=2, num_layers=1, vocab_size=20)
    assert Seq2Seq(enc, VOCAB, BOS, EOS).cell == "gru"
    model = Seq2Seq(enc, VOCAB, BOS, EOS, attention="luong_dot", decoder_cell="lstm").eval()
    assert isinstance(model.rnn, torch.nn.LSTM)
    x, lengths = _batch([4, 2])
    logits = model(x, lengths, _targets(2, 3))[0]
    assert logits.shape == (2, 3, VOCAB)
    # the LSTM decoder reads the Transformer's states: another source gives other logits
    other = x.clone()
    other[0, 0] = 2 if int(x[0, 0]) != 2 else 3
    assert not torch.allclose(model(other, lengths, _targets(2, 3))[0][0], logits[0])
    # it decodes: each step's attention is a distribution over the real source steps, and a
    # beam of one finds the greedy output (ids cut at EOS, at most max_len of them)
    greedy, weights = model.greedy(x, lengths, max_len=5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:2]))
    assert (weights[1, :, 2:] == 0).all()
    assert model.beam_search(x, lengths, 1, 5) == greedy
    assert all(len(h) <= 5 and EOS not in h for h in model.beam_search(x, lengths, 3, 5))


def test_decoder_follows_the_encoder_cell_and_bridges_sizes() -> None:
    model = _model("bahdanau", "gru", bidirectional=True, layers=2)
    assert isinstance(model.rnn, torch.nn.GRU) and model.rnn.num_layers == 2
    assert model.hidden_size == 16  # bidirectional 2 x 8
    with pytest.raises(ConfigError, match="luong_dot needs the decoder size"):
        Seq2Seq(model.encoder, VOCAB, BOS, EOS, attention="luong_dot", decoder_hidden_size=5)
    # an unknown task.attention / context / context_feed: test_schema.py


# ---- metrics on hand-worked cases -----------------------------------------------------
def test_edit_distance_by_hand() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], ["A", "B"]) == 2
    assert edit_distance(["K", "AE1", "T"], ["K", "AE1", "T"]) == 0
    assert edit_distance(["K", "AE1", "T"], ["K", "AH0", "T", "S"]) == 2


def test_g2p_scores_accept_any_variant() -> None:
    refs = [[["T", "AH0", "M", "EY1", "T", "OW2"], ["T", "AH0", "M", "AA1", "T", "OW2"]],
            [["K", "AE1", "T"]]]
    # word 1 matches its second variant exactly; word 2 has one substitution in 3 phonemes
    scores = g2p_scores([["T", "AH0", "M", "AA1", "T", "OW2"], ["K", "AH1", "T"]], refs)
    assert scores["wer"] == pytest.approx(0.5)
    assert scores["per"] == pytest.approx(1 / 9)
    # errors count against the closest variant: 1 edit vs 6 phonemes, not 2
    close = g2p_scores([["T", "AH0", "M", "EY1", "T"]], refs[:1])
    assert close == {"wer": 1.0, "per": pytest.approx(1 / 6)}


def test_stressless_scores_forgive_only_stress() -> None:
    assert strip_stress(["T", "AH0", "M", "EY1", "T", "OW2"]) == ["T", "AH", "M", "EY", "T", "OW"]
    refs = [[["K", "AE1", "T"]], [["D", "AO1", "G"]]]
    # word 1: stress misplaced only; word 2: a wrong vowel, which no stripping forgives
    hyps = [["K", "AE0", "T"], ["D", "AA1", "G"]]
    assert g2p_scores(hyps, refs) == {"wer": 1.0, "per": pytest.approx(2 / 6)}
    assert stressless_g2p_scores(hyps, refs) == {"wer": 0.5, "per": pytest.approx(1 / 6)}


def test_translation_scores_by_hand() -> None:
    perfect = translation_scores(["le chat est sur le tapis ."], ["le chat est sur le tapis ."])
    assert perfect["bleu"] == pytest.approx(100.0) and perfect["chrf"] == pytest.approx(100.0)
    wrong = translation_scores(["a b c d"], ["w x y z"])
    assert wrong["bleu"] == pytest.approx(0.0) and wrong["chrf"] < 5
    # 4 of 5 unigrams, 3/4 bigrams, 2/3 trigrams, 1/2 4-grams, no brevity penalty
    partial = translation_scores(["the cat sat on mat"], ["the cat sat on the"])
    expected = 100 * (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25
    assert partial["bleu"] == pytest.approx(expected, rel=1e-3)


def test_encoder_dropout_acts_on_what_the_decoder_reads_in_training_only() -> None:
    torch.manual_seed(1)
    enc = RecurrentEncoder("gru", hidden_size=8, embedding_dim=6, vocab_size=20)
    model = Seq2Seq(enc, VOCAB, BOS, EOS, attention="luong_general", dropout=0.0,
                    encoder_dropout=0.5)
    x, lengths = _batch([5, 3])
    model.train()
    memory = model.encode(x, lengths).memory
    zeros = (memory == 0) & model.encode(x, lengths).mask.unsqueeze(-1)
    assert zeros.float().mean() > 0.2  # about half the real encoder features dropped
    model.eval()
    assert not bool(((model.encode(x, lengths).memory == 0)
                     & model.encode(x, lengths).mask.unsqueeze(-1)).any())
    # encoder_dropout outside [0, 1) is refused when the config is composed: test_schema.py
