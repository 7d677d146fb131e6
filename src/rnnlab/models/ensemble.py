"""Several encoder-decoders decoding as one (test time only).

Independently trained models make partly independent mistakes, so averaging their
next-token distributions at every search step is the classic cheap gain for g2p and
translation. Each member keeps its own encoder output and decoder state; only the
scores are shared. Members must share the target vocabulary (the caller checks that
they were trained on the same data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnnlab.core.errors import require
from rnnlab.models.seq2seq import Encoded, Seq2Seq, State


@dataclass
class EnsembleEncoded:
    """One :class:`Encoded` per member; ``hidden`` holds each member's decoder state."""

    members: list[Encoded]

    @property
    def hidden(self) -> list[State]:
        return [m.hidden for m in self.members]

    def select(self, index: Tensor) -> EnsembleEncoded:
        return EnsembleEncoded([m.select(index) for m in self.members])


class Ensemble(nn.Module):
    """Average of the members' output probabilities, step by step; search it with
    :func:`rnnlab.models.seq2seq.beam_search` (``beam_size=1`` is greedy).

    ``step`` returns log of the mean probability (not the mean log-probability), so one
    confident member cannot veto a token the others agree on.
    """

    def __init__(self, models: list[Seq2Seq]) -> None:
        super().__init__()
        require(len(models) >= 1, "an ensemble needs at least one model.")
        first = models[0]
        for m in models[1:]:
            require((m.vocab_size, m.bos_id, m.eos_id) == (first.vocab_size, first.bos_id,
                                                            first.eos_id),
                    "ensemble members must share the target vocabulary (size, BOS and EOS ids).")
        self.models = nn.ModuleList(models)
        self.vocab_size, self.bos_id, self.eos_id = first.vocab_size, first.bos_id, first.eos_id

    def encode(self, x: Tensor, lengths: Tensor) -> EnsembleEncoded:
        return EnsembleEncoded([m.encode(x, lengths) for m in self.models])

    def step(self, tokens: Tensor, hidden: list[State],
             src: EnsembleEncoded) -> tuple[Tensor, list[State], None]:
        logps, states = [], []
        for model, h, enc in zip(self.models, hidden, src.members, strict=True):
            logits, h, _ = model.step(tokens, h, enc)
            logps.append(torch.log_softmax(logits.float(), -1))
            states.append(h)
        mean = torch.logsumexp(torch.stack(logps), 0) - math.log(len(logps))
        return mean, states, None

    def select_state(self, hidden: list[State], index: Tensor) -> list[State]:
        return [m.select_state(h, index) for m, h in zip(self.models, hidden, strict=True)]
