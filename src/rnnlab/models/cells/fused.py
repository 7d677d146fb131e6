"""PyTorch's fused cells: ``rnn`` (tanh), ``rnn_relu``, ``lstm`` and ``gru``.

These run as one cuDNN / oneDNN kernel over time and read packed sequences. Their
gates are laid out in blocks of ``hidden_size`` rows (LSTM: input, forget, cell,
output), which the init rules below rely on.
"""

from __future__ import annotations

import torch
from torch import nn

from rnnlab.models.cells import Cell, LayerArgs, register


def _kwargs(args: LayerArgs) -> dict:
    return dict(input_size=args.input_size, hidden_size=args.hidden_size,
                num_layers=args.num_layers, batch_first=True, bidirectional=args.bidirectional,
                dropout=args.dropout if args.num_layers > 1 else 0.0)


def _init_rules(forget_gate: int | None):
    """``model.init`` for the weight blocks, and the forget-gate bias for an LSTM."""

    def init(layer: nn.Module, init: str, forget_bias: float, hidden_size: int) -> None:
        for name, param in layer.named_parameters():
            if name.startswith("weight_ih") and init == "xavier":
                nn.init.xavier_uniform_(param)
            elif name.startswith("weight_hh"):
                if init == "orthogonal":
                    for block in param.data.chunk(param.shape[0] // hidden_size, 0):
                        nn.init.orthogonal_(block)
                elif init == "identity":
                    for block in param.data.chunk(param.shape[0] // hidden_size, 0):
                        block.copy_(torch.eye(hidden_size))
            elif name.startswith("bias"):
                if init == "identity":
                    nn.init.zeros_(param)
                if forget_gate is not None:
                    # both bias_ih and bias_hh exist; split the forget bias between them
                    rows = slice(forget_gate * hidden_size, (forget_gate + 1) * hidden_size)
                    param.data[rows] = forget_bias / 2.0

    return init


register(Cell("rnn", lambda a: nn.RNN(nonlinearity="tanh", **_kwargs(a)),
              "Elman RNN with tanh (fused)", init=_init_rules(None)))
register(Cell("rnn_relu", lambda a: nn.RNN(nonlinearity="relu", **_kwargs(a)),
              "Elman RNN with ReLU (fused); with init=identity the IRNN", init=_init_rules(None)))
register(Cell("lstm", lambda a: nn.LSTM(**_kwargs(a)), "LSTM (fused)", state=("h", "c"),
              init=_init_rules(forget_gate=1)))
register(Cell("gru", lambda a: nn.GRU(**_kwargs(a)), "GRU (fused)", init=_init_rules(None)))
