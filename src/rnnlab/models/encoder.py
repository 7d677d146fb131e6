"""The recurrent backbone: one class for every cell type.

``RecurrentEncoder`` wraps PyTorch's fused ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (cuDNN on
GPU, oneDNN on CPU), so time is never a Python loop. It reads either token ids (through
an embedding) or real-valued frames (through a linear projection), and returns every
step's output, the state after each sequence's *last real* step, and the final hidden
state for stateful use or for bridging into a decoder.

Variable lengths: a unidirectional pass over a right-padded batch is exact for every
real step, so the padded fast path is used and padding is simply ignored downstream. A
bidirectional pass would read padding first in its backward direction, so those batches
are packed (``pack="auto"``); the same holds when the caller needs the final state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlab.errors import ConfigError, require

CELLS = ("rnn", "rnn_relu", "lstm", "gru")
INITS = ("default", "xavier", "orthogonal", "identity")
Hidden = Tensor | tuple[Tensor, Tensor]


@dataclass
class EncoderOutput:
    """What every backbone returns.

    outputs: (B, T, D) per-step features, zero at padded steps.
    last:    (B, D) features at each sequence's last real step (for a bidirectional
             model: forward state at the last step joined with backward state at step 0).
    hidden:  the final recurrent state (h or (h, c)), shaped (layers*dirs, B, H);
             None for backbones without one (the Transformer).
    """

    outputs: Tensor
    last: Tensor
    hidden: Hidden | None


class InputLayer(nn.Module):
    """Token ids -> embedding, or real-valued frames -> linear projection (or identity)."""

    def __init__(self, vocab_size: int | None, input_size: int | None, embedding_dim: int,
                 padding_idx: int = 0, project_inputs: bool = False) -> None:
        super().__init__()
        require(vocab_size is not None or input_size is not None,
                "the task gave the model neither a vocabulary nor an input size")
        self.tokens = vocab_size is not None
        if self.tokens:
            self.layer: nn.Module = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
            self.output_size = embedding_dim
        elif project_inputs:
            self.layer = nn.Linear(int(input_size), embedding_dim)
            self.output_size = embedding_dim
        else:
            self.layer = nn.Identity()
            self.output_size = int(input_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)


class RecurrentEncoder(nn.Module):
    """A stack of fused RNN/LSTM/GRU layers over embedded or projected inputs.

    Args:
        cell: ``rnn`` (tanh), ``rnn_relu``, ``lstm`` or ``gru``.
        hidden_size, num_layers, bidirectional: the usual.
        dropout: between stacked layers (inside the fused kernel) and on the inputs.
        input_dropout: dropout on the embedded inputs only, if it should differ from
            ``dropout`` (tasks with little data set it; ``None`` means ``dropout``).
        embedding_dim: size of the token embedding / input projection.
        init: ``default`` (PyTorch's), ``xavier`` (input weights), ``orthogonal``
            (recurrent weights), ``identity`` (recurrent weights = I, biases 0: the IRNN
            recipe of Le et al. 2015 for ``rnn_relu``).
        forget_bias: LSTM forget-gate bias (1.0 helps long memories; Jozefowicz 2015).
        pack: ``auto`` packs only when correctness needs it; ``always`` / ``never``.
        vocab_size / input_size: filled in from the datamodule at build time.
        causal: asked for by causal tasks; a bidirectional encoder cannot honour it.
    """

    def __init__(self, cell: str = "lstm", hidden_size: int = 256, num_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0, embedding_dim: int = 128,
                 init: str = "default", forget_bias: float = 1.0, pack: str = "auto",
                 project_inputs: bool = False, vocab_size: int | None = None,
                 input_size: int | None = None, padding_idx: int = 0, causal: bool = False,
                 input_dropout: float | None = None) -> None:
        super().__init__()
        require(cell in CELLS, f"model.cell={cell!r} is unknown; use one of {', '.join(CELLS)}.")
        require(isinstance(hidden_size, int) and hidden_size > 0,
                f"model.hidden_size must be a positive integer, got {hidden_size!r}.")
        require(isinstance(num_layers, int) and num_layers > 0,
                f"model.num_layers must be a positive integer, got {num_layers!r}.")
        require(0.0 <= float(dropout) < 1.0, f"model.dropout must be in [0, 1), got {dropout!r}.")
        input_dropout = dropout if input_dropout is None else input_dropout
        require(0.0 <= float(input_dropout) < 1.0,
                f"task.backbone.input_dropout must be in [0, 1), got {input_dropout!r}.")
        require(isinstance(embedding_dim, int) and embedding_dim > 0,
                f"model.embedding_dim must be a positive integer, got {embedding_dim!r}.")
        require(init in INITS, f"model.init={init!r} is unknown; use one of {', '.join(INITS)}.")
        require(pack in ("auto", "always", "never"),
                f"model.pack={pack!r} is unknown; use auto, always or never.")
        if causal and bidirectional:
            raise ConfigError(
                "this task is causal (each step may only see the past), so a bidirectional "
                "model cannot be used; pick a unidirectional one such as model=lstm or model=gru."
            )
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.pack = pack
        self.input = InputLayer(vocab_size, input_size, embedding_dim, padding_idx, project_inputs)
        self.input_dropout = nn.Dropout(input_dropout)
        kwargs = dict(input_size=self.input.output_size, hidden_size=hidden_size,
                      num_layers=num_layers, batch_first=True, bidirectional=bidirectional,
                      dropout=dropout if num_layers > 1 else 0.0)
        if cell in ("rnn", "rnn_relu"):
            self.rnn: nn.RNNBase = nn.RNN(nonlinearity="relu" if cell == "rnn_relu" else "tanh",
                                          **kwargs)
        elif cell == "lstm":
            self.rnn = nn.LSTM(**kwargs)
        else:
            self.rnn = nn.GRU(**kwargs)
        self.reset_parameters(init, forget_bias)

    @property
    def output_size(self) -> int:
        return self.hidden_size * self.num_directions

    def reset_parameters(self, init: str, forget_bias: float) -> None:
        for name, param in self.rnn.named_parameters():
            if name.startswith("weight_ih") and init == "xavier":
                nn.init.xavier_uniform_(param)
            elif name.startswith("weight_hh"):
                if init == "orthogonal":
                    for block in param.data.chunk(param.shape[0] // self.hidden_size, 0):
                        nn.init.orthogonal_(block)
                elif init == "identity":
                    for block in param.data.chunk(param.shape[0] // self.hidden_size, 0):
                        block.copy_(torch.eye(self.hidden_size))
            elif name.startswith("bias"):
                if init == "identity":
                    nn.init.zeros_(param)
                if self.cell == "lstm":  # gates are ordered input, forget, cell, output
                    h = self.hidden_size
                    # both bias_ih and bias_hh exist; split the forget bias between them
                    param.data[h:2 * h] = forget_bias / 2.0

    def init_hidden(self, batch_size: int, device: torch.device | None = None) -> Hidden:
        shape = (self.num_layers * self.num_directions, batch_size, self.hidden_size)
        h = torch.zeros(shape, device=device)
        return (h, torch.zeros_like(h)) if self.cell == "lstm" else h

    def forward(self, x: Tensor, lengths: Tensor | None = None, hidden: Hidden | None = None,
                need_state: bool = False) -> EncoderOutput:
        """Encode a right-padded batch.

        x: (B, T) token ids or (B, T, F) frames; lengths: (B,) real lengths (None: all T).
        need_state: the caller will use ``hidden`` (a decoder bridge), so ragged batches
        are packed to make it the state after each sequence's last real step. Without
        it, a ragged unpacked pass returns ``hidden=None`` rather than a state that has
        run over padding.
        """
        emb = self.input_dropout(self.input(x))
        steps = emb.shape[1]
        ragged = lengths is not None and bool((lengths < steps).any())
        packed = self.pack == "always" or (
            self.pack == "auto" and ragged and (self.bidirectional or need_state))
        if packed and lengths is not None:
            seq = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, hidden = self.rnn(seq, hidden)
            outputs, _ = pad_packed_sequence(out, batch_first=True, total_length=steps)
        else:
            outputs, hidden = self.rnn(emb, hidden)
            if ragged:
                hidden = None
                mask = torch.arange(steps, device=outputs.device)[None, :] < lengths.to(
                    outputs.device)[:, None]
                outputs = outputs * mask.unsqueeze(-1).to(outputs.dtype)
        last = self._last(outputs, lengths)
        return EncoderOutput(outputs=outputs, last=last, hidden=hidden)

    def _last(self, outputs: Tensor, lengths: Tensor | None) -> Tensor:
        batch, steps, _ = outputs.shape
        if lengths is None:
            idx = torch.full((batch,), steps - 1, device=outputs.device, dtype=torch.long)
        else:
            idx = (lengths.to(outputs.device).long() - 1).clamp(min=0)
        fwd = outputs[torch.arange(batch, device=outputs.device), idx, : self.hidden_size]
        if not self.bidirectional:
            return fwd
        bwd = outputs[:, 0, self.hidden_size:]  # the backward direction ends at step 0
        return torch.cat([fwd, bwd], dim=-1)
