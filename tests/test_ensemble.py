"""Test-time ensembles of encoder-decoders: the averaged distribution and the search on it."""

from __future__ import annotations

import pytest
import torch
from helpers import token_batch

from rnnlab.core.errors import ConfigError
from rnnlab.models import RecurrentEncoder
from rnnlab.models.ensemble import Ensemble
from rnnlab.models.seq2seq import Seq2Seq, beam_search

BOS, EOS, VOCAB = 2, 3, 15


def _model(attention: str, seed: int, vocab: int = VOCAB) -> Seq2Seq:
    torch.manual_seed(seed)
    enc = RecurrentEncoder("gru", hidden_size=8, bidirectional=True, embedding_dim=6,
                           vocab_size=20)
    return Seq2Seq(enc, vocab, BOS, EOS, attention=attention, embedding_dim=5,
                   attention_size=7, dropout=0.0).eval()


def test_ensemble_of_one_searches_exactly_like_the_model() -> None:
    model = _model("luong_general", 0)
    x, lengths = token_batch([5, 3, 7])
    alone = Ensemble([model])
    greedy, _ = model.greedy(x, lengths, 12)
    assert beam_search(alone, x, lengths, 1, 12) == greedy
    assert beam_search(alone, x, lengths, 4, 12) == model.beam_search(x, lengths, 4, 12)


def test_ensemble_step_is_the_mean_of_the_members_probabilities() -> None:
    a, b = _model("luong_general", 0), _model("bahdanau", 1)
    x, lengths = token_batch([5, 3])
    ens = Ensemble([a, b])
    src = ens.encode(x, lengths)
    tokens = torch.full((2,), BOS)
    mixed, states, _ = ens.step(tokens, src.hidden, src)
    pa = torch.softmax(a.step(tokens, src.members[0].hidden, src.members[0])[0], -1)
    pb = torch.softmax(b.step(tokens, src.members[1].hidden, src.members[1])[0], -1)
    torch.testing.assert_close(mixed.exp(), (pa + pb) / 2)
    # each member carries its own state on: the next step matches the members run alone
    nxt = mixed.argmax(-1)
    mixed2, _, _ = ens.step(nxt, states, src)
    _, ha, _ = a.step(tokens, src.members[0].hidden, src.members[0])
    _, hb, _ = b.step(tokens, src.members[1].hidden, src.members[1])
    qa = torch.softmax(a.step(nxt, ha, src.members[0])[0], -1)
    qb = torch.softmax(b.step(nxt, hb, src.members[1])[0], -1)
    torch.testing.assert_close(mixed2.exp(), (qa + qb) / 2)


def test_identical_twins_decode_like_one_model() -> None:
    a = _model("luong_general", 0)
    x, lengths = token_batch([6, 4, 5, 3, 7, 2])
    twins = Ensemble([a, _model("luong_general", 0)])
    assert beam_search(twins, x, lengths, 3, 10) == a.beam_search(x, lengths, 3, 10)


def test_members_with_another_target_vocabulary_are_refused() -> None:
    with pytest.raises(ConfigError, match="must share the target vocabulary"):
        Ensemble([_model("luong_dot", 0), _model("luong_dot", 0, vocab=VOCAB + 1)])
