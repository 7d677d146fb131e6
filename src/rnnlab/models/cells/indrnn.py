"""IndRNN (Li et al. 2018, "Independently Recurrent Neural Network").

Each unit has one recurrent weight of its own instead of a row of a matrix:

    h_t = relu(W x_t + u * h_{t-1} + b)        (u: a vector, * element-wise)

so the gradient through time of unit ``j`` is a product of ``u_j`` and ReLU slopes and
is governed unit by unit: bounding ``|u_j|`` (``cell_options.recurrent_max``, 1.0 by
default) keeps long sequences from exploding, while ``u_j`` near the bound lets a unit
keep its value over many steps. The bound is applied to the weight as it is used, so it
holds after every update and after loading any checkpoint. ``W x_t`` is computed for all
steps at once; the element-wise recurrence runs as one scan over time, forward and
backward (:func:`.scan.relu_scan`). ``model.block=residual`` stacks it as residual blocks,
as the paper's deep IndRNNs are (with LayerNorm where the paper has batch norm, so that
a block reads one step alone and padding never enters a statistic).

``model.init``: ``default`` draws ``u`` from U(0, recurrent_max) as in the paper,
``identity`` sets ``u = 1`` (clipped to the bound) and zero biases (the IRNN recipe),
``xavier`` sets ``W``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnlab.core.errors import require
from rnnlab.models.cells import Cell, LayerArgs, register
from rnnlab.models.cells.scan import BLOCKS, ScanLayer, relu_scan, scan_stack


class IndRNNLayer(ScanLayer):
    def __init__(self, input_size: int, hidden_size: int, recurrent_max: float) -> None:
        super().__init__()
        self.recurrent_max = recurrent_max
        self.linear = nn.Linear(input_size, hidden_size)
        self.recurrent = nn.Parameter(torch.empty(hidden_size).uniform_(0.0, recurrent_max))

    def forward(self, x: Tensor, h0: Tensor | None = None) -> Tensor:
        u = self.recurrent.clamp(-self.recurrent_max, self.recurrent_max)
        return relu_scan(self.linear(x), u, h0)


def _init(layer: nn.Module, init: str, forget_bias: float, hidden_size: int) -> None:
    for module in layer.modules():
        if isinstance(module, IndRNNLayer):
            if init == "xavier":
                nn.init.xavier_uniform_(module.linear.weight)
            elif init == "identity":
                with torch.no_grad():
                    module.recurrent.fill_(min(1.0, module.recurrent_max))
                    module.linear.bias.zero_()


def _make(args: LayerArgs) -> nn.Module:
    bound = float(args.options.get("recurrent_max", 1.0))
    require(bound > 0, f"model.cell_options.recurrent_max must be greater than 0, got {bound}.")
    return scan_stack(args, lambda i, h: IndRNNLayer(i, h, bound))


register(Cell("indrnn", _make, "IndRNN: element-wise recurrent weights, ReLU, bounded |u|",
              packable=False, init=_init, inits=("default", "xavier", "identity"),
              options=("recurrent_max",), blocks=BLOCKS))
