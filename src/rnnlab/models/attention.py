"""Attention over encoder states: Bahdanau (additive) and Luong (dot, general).

Scores at padded source steps are set to -inf before the softmax, so padding never
receives weight and changing what sits in the padding never changes the context.
Queries may be one step (B, H) or a whole teacher-forced sequence (B, T, H); the second
form lets Luong attention run over all decoder steps in one batched product.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnlab.core.errors import require

#: ``task.attention``; ``none`` builds no :class:`Attention` (a fixed context instead)
ATTENTIONS = ("none", "bahdanau", "luong_dot", "luong_general")


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over the last axis where ``mask`` is True; exactly 0 elsewhere."""
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights.masked_fill(~mask, 0.0)  # rows with no real step would be NaN


class Attention(nn.Module):
    """Score decoder queries against encoder ``memory`` (B, S, E) and return (context, weights).

    bahdanau: v^T tanh(W_q q + W_k k); luong_general: q^T W k; luong_dot: q^T k (needs the
    decoder size to equal the encoder's output size).
    """

    def __init__(self, kind: str, query_size: int, memory_size: int, attn_size: int = 128) -> None:
        super().__init__()  # task.attention is checked by the config schema
        if kind == "luong_dot":
            require(query_size == memory_size,
                    f"task.attention=luong_dot needs the decoder size ({query_size}) to "
                    f"equal the encoder output size ({memory_size}); leave "
                    f"task.module.decoder_hidden_size=null or use luong_general.")
        self.kind = kind
        if kind == "bahdanau":
            self.w_q = nn.Linear(query_size, attn_size, bias=False)
            self.w_k = nn.Linear(memory_size, attn_size)
            self.v = nn.Linear(attn_size, 1, bias=False)
        elif kind == "luong_general":
            self.w = nn.Linear(memory_size, query_size, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        """The per-source-step part of the score, computed once per sequence."""
        if self.kind == "bahdanau":
            return self.w_k(memory)
        if self.kind == "luong_general":
            return self.w(memory)
        return memory

    def forward(self, query: Tensor, memory: Tensor, mask: Tensor,
                keys: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """query (B, H) or (B, T, H); memory (B, S, E); mask (B, S) True at real steps."""
        keys = self.keys(memory) if keys is None else keys
        single = query.dim() == 2
        q = query.unsqueeze(1) if single else query                      # (B, T, H)
        if self.kind == "bahdanau":
            scores = self.v(torch.tanh(self.w_q(q).unsqueeze(2) + keys.unsqueeze(1))).squeeze(-1)
        else:
            scores = torch.bmm(q, keys.transpose(1, 2))                  # (B, T, S)
        weights = masked_softmax(scores, mask.unsqueeze(1))
        context = torch.bmm(weights, memory)                              # (B, T, E)
        if single:
            return context.squeeze(1), weights.squeeze(1)
        return context, weights
