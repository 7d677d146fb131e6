"""minLSTM (Feng et al. 2024, "Were RNNs All We Needed?").

The LSTM with its gates cut loose from the previous state, its output gate and cell
state dropped, and the forget and input gates normalised to sum to one (so the state
stays on the scale of the candidate, whatever the length):

    f_t = sigmoid(W_f x_t + b_f),  i_t = sigmoid(W_i x_t + b_i),  h~_t = g(W_h x_t + b_h),
    h_t = f_t / (f_t + i_t) * h_{t-1} + i_t / (f_t + i_t) * h~_t.

Training computes the gates for all steps at once and runs only an element-wise scan
along time
(:mod:`.gated`, which computes the gates inside the scan's loop); decoding and generation advance one step with the same
weights and the same code. ``model.forget_bias`` starts the
forget gate's bias (as for the LSTM: 1.0 favours long memories); ``model.init=xavier``
sets the input weights.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnlab.models.cells import Cell, LayerArgs, register
from rnnlab.models.cells.gated import coefficients, gated_scan
from rnnlab.models.cells.scan import BLOCKS, ScanLayer, scan_stack


class MinLSTMLayer(ScanLayer):
    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.linear = nn.Linear(input_size, 3 * hidden_size)  # [forget | input | candidate]

    def coefficients(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return coefficients("minlstm", self.linear(x))

    def forward(self, x: Tensor, h0: Tensor | None = None) -> Tensor:
        return gated_scan("minlstm", self.linear(x), h0)


def _init(layer: nn.Module, init: str, forget_bias: float, hidden_size: int) -> None:
    for module in layer.modules():
        if isinstance(module, MinLSTMLayer):
            if init == "xavier":
                nn.init.xavier_uniform_(module.linear.weight)
            with torch.no_grad():
                module.linear.bias[:hidden_size] = forget_bias


def _make(args: LayerArgs) -> nn.Module:
    return scan_stack(args, MinLSTMLayer)


register(Cell("minlstm", _make, "minLSTM: input-only, normalised gates, an element-wise scan",
              packable=False, init=_init, inits=("default", "xavier"), blocks=BLOCKS))
