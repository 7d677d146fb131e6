"""Cells whose gates read only the input: a parallel scan over time, in log space.

When every gate of a cell depends on ``x_t`` alone (not on ``h_{t-1}``), its recurrence
is linear in the state, ``h_t = a_t * h_{t-1} + b_t``, with ``a_t`` and ``b_t`` known
for all steps at once. Then, with ``A_t = sum_{s<=t} log a_s``,

    h_t = exp(A_t) * h_0 + exp(A_t + logcumsumexp_{s<=t}(log b_s - A_s)),

two cumulative operations over time instead of a Python loop (Heinsen 2023; Feng et al.
2024 train minGRU and minLSTM this way). Working with logs keeps the products of many
gates in range; ``b_t > 0`` is required (the cells make their candidate positive), while
``h_0`` may have any sign (a decoder bridge gives ``tanh``). One step (decoding,
generation, the gradient-flow probe) is the same formula with ``T = 1``, so the same
weights give the same numbers either way.

:class:`ScanStack` stacks such layers like ``nn.GRU``: states ``(layers * dirs, B, H)``,
dropout between layers, and a backward direction that reads each sequence from its own
last real step (``lengths``), so padding never enters a state or a real output.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.models.cells import LayerArgs


def log_g(x: Tensor) -> Tensor:
    """log of g(x) = x + 0.5 (x >= 0), sigmoid(x) (x < 0): a positive, unbounded candidate."""
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -F.softplus(-x))


def scan(log_a: Tensor, log_b: Tensor, h0: Tensor | None = None) -> Tensor:
    """All states of ``h_t = a_t h_{t-1} + b_t`` over dim 1: (B, T, H) logs -> (B, T, H)."""
    a_star = torch.cumsum(log_a, dim=1)
    h = torch.exp(a_star + torch.logcumsumexp(log_b - a_star, dim=1))
    if h0 is not None:
        h = h + torch.exp(a_star) * h0.unsqueeze(1)
    return h


def scan_sequential(log_a: Tensor, log_b: Tensor, h0: Tensor | None = None) -> Tensor:
    """The same states one step at a time (the reference the parallel scan must match)."""
    h = torch.zeros_like(log_a[:, 0]) if h0 is None else h0
    out = []
    for t in range(log_a.shape[1]):
        h = torch.exp(log_a[:, t]) * h + torch.exp(log_b[:, t])
        out.append(h)
    return torch.stack(out, 1)


def reverse_within(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each row's first ``lengths[b]`` steps (dim 1) and leave its padding in place."""
    steps = x.shape[1]
    if lengths is None:
        return x.flip(1)
    t = torch.arange(steps, device=x.device)[None, :]
    n = lengths.to(x.device).long()[:, None]
    idx = torch.where(t < n, n - 1 - t, t)
    return x.gather(1, idx.unsqueeze(-1).expand_as(x))


class ScanLayer(nn.Module):
    """One direction of one layer: subclasses give the log-coefficients of the recurrence."""

    def coefficients(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T, F) inputs -> (log a, log b), each (B, T, H)."""
        raise NotImplementedError

    def forward(self, x: Tensor, h0: Tensor | None = None) -> Tensor:
        log_a, log_b = self.coefficients(x)
        return scan(log_a, log_b, h0)


class ScanStack(nn.Module):
    """Stacked, optionally bidirectional ``ScanLayer``s with ``nn.GRU``'s calling convention.

    ``forward(x, hidden=None, lengths=None) -> (outputs (B, T, dirs*H), hidden)``; with
    ``lengths`` the returned state is each sequence's state after its last real step.
    """

    def __init__(self, args: LayerArgs, make_layer: Callable[[int, int], ScanLayer]) -> None:
        super().__init__()
        self.input_size = args.input_size
        self.hidden_size = args.hidden_size
        self.num_layers = args.num_layers
        self.dirs = 2 if args.bidirectional else 1
        self.dropout = float(args.dropout) if args.num_layers > 1 else 0.0
        self.layers = nn.ModuleList(
            make_layer(args.input_size if i == 0 else self.dirs * args.hidden_size,
                       args.hidden_size)
            for i in range(args.num_layers) for _ in range(self.dirs))

    def forward(self, x: Tensor, hidden: Tensor | None = None,
                lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        batch, steps = x.shape[:2]
        last = (torch.full((batch,), steps - 1, device=x.device, dtype=torch.long)
                if lengths is None else (lengths.to(x.device).long() - 1).clamp(min=0))
        rows = torch.arange(batch, device=x.device)
        finals = []
        for layer_index in range(self.num_layers):
            if layer_index > 0 and self.dropout > 0:
                x = F.dropout(x, self.dropout, self.training)
            outs = []
            for d in range(self.dirs):
                row = layer_index * self.dirs + d
                h0 = None if hidden is None else hidden[row]
                layer = self.layers[row]
                if d == 0:
                    h = layer(x, h0)
                    finals.append(h[rows, last])
                else:  # read backwards from each sequence's last real step
                    h = layer(reverse_within(x, lengths), h0)
                    finals.append(h[rows, last])
                    h = reverse_within(h, lengths)
                outs.append(h)
            x = outs[0] if self.dirs == 1 else torch.cat(outs, -1)
        return x, torch.stack(finals)
