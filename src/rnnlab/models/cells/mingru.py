"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?").

The GRU with its gates cut loose from the previous state:

    z_t = sigmoid(W_z x_t + b_z),   h~_t = g(W_h x_t + b_h),
    h_t = (1 - z_t) * h_{t-1} + z_t * h~_t,

with ``g`` positive (``x + 0.5`` above zero, ``sigmoid`` below), as the paper has it for
its log-space form. The recurrence is linear in ``h``, so training computes the gates
for all steps at once and runs only an element-wise scan along time
(:mod:`.gated`, which computes the gates inside the scan's loop);
decoding and generation advance one step with the same weights and the same code. ``model.init=xavier`` sets the
input weights; there is no recurrent weight matrix, so ``orthogonal`` and ``identity``
do not apply.
"""

from __future__ import annotations

from torch import Tensor, nn

from rnnlab.models.cells import Cell, LayerArgs, register
from rnnlab.models.cells.gated import coefficients, gated_scan
from rnnlab.models.cells.scan import BLOCKS, ScanLayer, scan_stack


class MinGRULayer(ScanLayer):
    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(input_size, 2 * hidden_size)  # [gate z | candidate]

    def coefficients(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return coefficients("mingru", self.linear(x))

    def forward(self, x: Tensor, h0: Tensor | None = None) -> Tensor:
        return gated_scan("mingru", self.linear(x), h0)


def _init(layer: nn.Module, init: str, forget_bias: float, hidden_size: int) -> None:
    if init == "xavier":
        for module in layer.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)


def _make(args: LayerArgs) -> nn.Module:
    return scan_stack(args, MinGRULayer)


register(Cell("mingru", _make, "minGRU: input-only gates, an element-wise scan over time",
              packable=False, init=_init, inits=("default", "xavier"), blocks=BLOCKS))
