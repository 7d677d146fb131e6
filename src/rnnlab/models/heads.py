"""Task heads: small modules that turn backbone features into predictions."""

from __future__ import annotations

from torch import Tensor, nn

from rnnlab.models.encoder import length_mask

#: ``task.module.pooling``: how :func:`pool` reduces the steps
POOLINGS = ("last", "mean", "max")


def pool(outputs: Tensor, last: Tensor, lengths: Tensor | None, how: str) -> Tensor:
    """Reduce (B, T, D) step features to (B, D), ignoring padded steps."""
    if how == "last":
        return last
    if lengths is None:
        return outputs.mean(1) if how == "mean" else outputs.max(1).values
    mask = length_mask(lengths, outputs.shape[1], outputs.device).unsqueeze(-1)
    if how == "mean":
        return (outputs * mask).sum(1) / mask.sum(1).clamp(min=1)
    return outputs.masked_fill(~mask, float("-inf")).max(1).values


class ClassifierHead(nn.Module):
    """Pooling, dropout and a linear layer: the N->1 head, for classes (sentiment, speech)
    and for real-valued outputs alike (the adding problem; forecasting has a head of its
    own that emits a block of future steps from the last state)."""

    def __init__(self, in_features: int, num_classes: int, pooling: str = "last",
                 dropout: float = 0.0) -> None:
        super().__init__()  # task.module.pooling is checked by the config schema
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_features, num_classes)

    def forward(self, outputs: Tensor, last: Tensor, lengths: Tensor | None) -> Tensor:
        return self.linear(self.dropout(pool(outputs, last, lengths, self.pooling)))
