"""A Transformer encoder with the recurrent backbone's interface.

The lab exists to measure recurrent cells, and the obvious yardstick is the model that
replaced them. This backbone takes the same inputs and returns the same
:class:`EncoderOutput`, so every task composes with it unchanged. Causal tasks get a
causal attention mask; padding is masked out of attention everywhere.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rnnlab.core.errors import require
from rnnlab.models.encoder import (
    Backbone,
    EncoderOutput,
    InputLayer,
    check_features,
    length_mask,
)


class SinusoidalPositions(nn.Module):
    """Fixed sine/cosine positions (no length limit learned from the training data)."""

    def __init__(self, dim: int, max_len: int = 10_000) -> None:
        super().__init__()
        pos = torch.arange(max_len).unsqueeze(1)
        div = torch.exp(torch.arange(0, dim, 2) * (-math.log(10_000.0) / dim))
        pe = torch.zeros(max_len, dim)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)[:, : dim // 2]
        self.register_buffer("pe", pe, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.pe[: x.shape[1]].unsqueeze(0).to(x.dtype)


class TransformerEncoder(Backbone):
    """Pre-norm Transformer encoder over embedded tokens or projected frames.

    ``extra_input_size`` > 0: ``forward`` also takes per-token ``features`` (B, T, extra).
    The layers keep their width ``d_model``, so the features are mapped to ``d_model`` by a
    linear layer and added to the scaled token embedding: the same as concatenating them and
    projecting the concatenation with the token block fixed to the identity. Positions and
    the input dropout come after, so they apply to the features too.
    """

    def __init__(self, d_model: int = 128, nhead: int = 4, num_layers: int = 2,
                 dim_feedforward: int = 256, dropout: float = 0.1, causal: bool = False,
                 vocab_size: int | None = None, input_size: int | None = None,
                 padding_idx: int = 0, max_len: int = 10_000,
                 input_dropout: float | None = None, extra_input_size: int = 0) -> None:
        super().__init__()  # the model.* values are checked by the config schema
        self.causal = causal
        self.hidden_size = d_model
        self.input = InputLayer(vocab_size, input_size, d_model, padding_idx, project_inputs=True)
        self.scale = math.sqrt(d_model) if vocab_size is not None else 1.0
        self.positions = SinusoidalPositions(d_model, max_len)
        # task.backbone.input_dropout, checked by the config schema; null: model.dropout
        input_dropout = dropout if input_dropout is None else input_dropout
        self.dropout = nn.Dropout(input_dropout)
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout,
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.features_in: nn.Linear | None = None
        self.set_extra_input_size(extra_input_size)

    @property
    def extra_input_size(self) -> int:
        return 0 if self.features_in is None else int(self.features_in.in_features)

    def set_extra_input_size(self, size: int) -> None:
        require(isinstance(size, int) and size >= 0,
                f"extra_input_size must be a non-negative integer, got {size!r}.")
        if size != self.extra_input_size:
            self.features_in = nn.Linear(size, self.hidden_size) if size else None

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def forward(self, x: Tensor, lengths: Tensor | None = None, hidden: None = None,
                need_state: bool = False, features: Tensor | None = None) -> EncoderOutput:
        h = self.input(x) * self.scale
        check_features(h, features, self.extra_input_size)
        if self.features_in is not None:
            h = h + self.features_in(features.to(h.dtype))
        h = self.dropout(self.positions(h))
        batch, steps = h.shape[:2]
        pad_mask = None
        if lengths is not None:
            pad_mask = ~length_mask(lengths, steps, h.device)
        mask = nn.Transformer.generate_square_subsequent_mask(steps, device=h.device) \
            if self.causal else None
        out = self.norm(self.layers(h, mask=mask, src_key_padding_mask=pad_mask, is_causal=self.causal))
        if pad_mask is not None:
            out = out.masked_fill(pad_mask.unsqueeze(-1), 0.0)
        if lengths is None:
            last = out[:, -1]
        else:
            idx = (lengths.to(h.device).long() - 1).clamp(min=0)
            last = out[torch.arange(batch, device=h.device), idx]
        return EncoderOutput(outputs=out, last=last, hidden=None)
