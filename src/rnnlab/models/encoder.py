"""The backbone interface, and the recurrent backbone: one class for every cell.

:class:`Backbone` is what tasks, the seq2seq decoder, the conditioned generator and
gradient flow may use of a backbone; nothing else. ``RecurrentEncoder`` builds any cell
of the registry (:mod:`rnnlab.models.cells`): for PyTorch's fused ``nn.RNN`` /
``nn.LSTM`` / ``nn.GRU`` (cuDNN on GPU, oneDNN on CPU) time is never a Python loop. It
reads either token ids (through an embedding) or real-valued frames (through a linear
projection), and returns every step's output, the state after each sequence's *last
real* step, and the final hidden state for stateful use or for bridging into a decoder.

Variable lengths: a unidirectional pass over a right-padded batch is exact for every
real step, so the padded fast path is used and padding is simply ignored downstream. A
bidirectional pass would read padding first in its backward direction, so those batches
are packed (``pack="auto"``); the same holds when the caller needs the final state.
Cells that cannot read packed sequences are given the lengths instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlab.core.errors import ConfigError, require
from rnnlab.models.cells import LayerArgs, cell_names, get_cell

CELLS = cell_names()
#: ``model.pack``: pack variable-length batches when correctness needs it, always or never
PACKS = ("auto", "always", "never")
Hidden = Tensor | tuple[Tensor, ...]


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
    """Token ids -> embedding, or real-valued frames -> linear projection (or identity),
    optionally joined by per-token features the task computes itself.

    ``extra_input_size`` > 0: ``forward`` takes ``features`` (B, T, extra) and concatenates
    them to the embedded tokens, so whatever reads the inputs (a recurrent layer) sees
    ``embedding_dim + extra`` per step. This is where taggers put their char-CNN, case and
    character-bigram features (Lample et al. 2016; Ma & Hovy 2016): the recurrence reads
    them, instead of only the output layer.
    """

    def __init__(self, vocab_size: int | None, input_size: int | None, embedding_dim: int,
                 padding_idx: int = 0, project_inputs: bool = False,
                 extra_input_size: int = 0) -> None:
        super().__init__()
        require(vocab_size is not None or input_size is not None,
                "the task gave the model neither a vocabulary nor an input size")
        require(isinstance(extra_input_size, int) and extra_input_size >= 0,
                f"extra_input_size must be a non-negative integer, got {extra_input_size!r}.")
        self.tokens = vocab_size is not None
        if self.tokens:
            self.layer: nn.Module = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
            self.base_size = embedding_dim
        elif project_inputs:
            self.layer = nn.Linear(int(input_size), embedding_dim)
            self.base_size = embedding_dim
        else:
            self.layer = nn.Identity()
            self.base_size = int(input_size)
        self.extra_size = extra_input_size

    @property
    def output_size(self) -> int:
        """Width of each step's input to the layers above: embedding plus features."""
        return self.base_size + self.extra_size

    def forward(self, x: Tensor, features: Tensor | None = None) -> Tensor:
        return join_features(self.layer(x), features, self.extra_size)


def join_features(emb: Tensor, features: Tensor | None, extra: int) -> Tensor:
    """``emb`` (B, T, E) with ``features`` (B, T, extra) appended."""
    check_features(emb, features, extra)
    return emb if features is None else torch.cat([emb, features.to(emb.dtype)], dim=-1)


def check_features(emb: Tensor, features: Tensor | None, extra: int) -> None:
    """Refuse features that do not fit a backbone built for ``extra`` values per token:
    silently dropping or zero-filling the task's features would run a different model."""
    if extra == 0:
        if features is not None:
            raise ValueError("this backbone was built without extra_input_size, so it cannot "
                             "read token features; build it with extra_input_size="
                             f"{features.shape[-1]}")
        return
    if features is None:
        raise ValueError(f"this backbone reads {extra} feature values per token "
                         f"(extra_input_size={extra}); pass features=")
    if features.shape[:2] != emb.shape[:2] or features.shape[-1] != extra:
        raise ValueError(f"features of shape {tuple(features.shape)} do not fit tokens of shape "
                         f"{tuple(emb.shape[:2])} with extra_input_size={extra}")


class Backbone(nn.Module):
    """The interface every backbone offers; callers use nothing else.

    output_size:  width D of ``EncoderOutput.outputs`` / ``last``.
    is_recurrent: it carries a state from step to step (stateful streams, one-step
                  generation, a decoder bridge); the Transformer does not.
    bidirectional: it reads each sequence both ways (never on a causal task).
    cell:         the registry name of its cell (None: not a recurrent cell).
    state_names:  the names of its state tensors (``("h", "c")`` for an LSTM).
    state_layers: the layers of its state (a decoder after it gets as many).
    embedding:    its token embedding table (None: it reads real-valued frames).
    input_size:   the width of real-valued frames it reads (None: it reads token ids).
    extra_input_size: the width of the per-token ``features`` its ``forward`` takes
                  (0: none); :meth:`set_extra_input_size` changes it before training.
    """

    output_size: int
    is_recurrent: bool = False
    bidirectional: bool = False
    cell: str | None = None
    state_names: tuple[str, ...] = ()
    state_layers: int = 1
    input: InputLayer

    @property
    def embedding(self) -> nn.Embedding | None:
        layer = self.input.layer
        return layer if isinstance(layer, nn.Embedding) else None

    @property
    def input_size(self) -> int | None:
        if self.input.tokens:
            return None
        inner = self.input.layer
        return int(inner.in_features) if isinstance(inner, nn.Linear) else int(self.input.base_size)

    @property
    def extra_input_size(self) -> int:
        return int(self.input.extra_size)

    def set_extra_input_size(self, size: int) -> None:
        """Make the backbone read ``size`` feature values per token besides its inputs.

        For a task that owns feature modules (the tagger's char-CNN): it builds the backbone
        from ``model=`` as every task does and then widens its input by the features' width.
        The layers that read the inputs are built afresh (new random weights), so call it
        before training, never on trained weights."""
        raise NotImplementedError(f"{type(self).__name__} cannot read extra token features")

    def init_state(self, batch_size: int, device: torch.device | None = None) -> Hidden | None:
        """The zero state for ``batch_size`` sequences (None: no state)."""
        return None

    def step(self, x: Tensor, state: Hidden | None = None) -> tuple[Tensor, Hidden | None]:
        """One step: (B,) ids or (B, F) frames -> (B, D) output and the next state."""
        out = self(x.unsqueeze(1), hidden=state)
        return out.outputs[:, 0], out.hidden

    def forward_steps(self, x: Tensor, lengths: Tensor | None, states: list[Tensor],
                      hidden: Hidden | None = None, features: Tensor | None = None
                      ) -> EncoderOutput:
        """The forward pass one step at a time, appending each step's top-layer state (a
        graph node every later step depends on) to ``states``: gradient flow
        differentiates the loss with respect to them. Recurrent backbones only."""
        raise NotImplementedError(f"{type(self).__name__} has no per-step state")


class RecurrentEncoder(Backbone):
    """A stack of recurrent layers of one registered cell over embedded or projected inputs.

    Args:
        cell: a name in the cell registry (``rnn`` (tanh), ``rnn_relu``, ``lstm``,
            ``gru``, ...).
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
        cell_options: options of the cell itself (see its registry entry).
        block: ``plain`` stacks bare layers (like ``nn.GRU``); ``residual`` stacks them as
            pre-norm residual blocks with an MLP, as the papers of the element-wise cells
            do (minGRU, minLSTM, IndRNN; see the cell's ``blocks``).
        vocab_size / input_size: filled in from the datamodule at build time.
        causal: asked for by causal tasks; a bidirectional encoder cannot honour it.
        extra_input_size: per-token features (``forward(..., features=)``) joined to the
            embedded inputs before the input dropout, so the first recurrent layer reads
            ``embedding_dim + extra_input_size`` values per step; 0 = none.
    """

    is_recurrent = True

    def __init__(self, cell: str = "lstm", hidden_size: int = 256, num_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0, embedding_dim: int = 128,
                 init: str = "default", forget_bias: float = 1.0, pack: str = "auto",
                 project_inputs: bool = False, vocab_size: int | None = None,
                 input_size: int | None = None, padding_idx: int = 0, causal: bool = False,
                 input_dropout: float | None = None,
                 cell_options: dict[str, Any] | None = None, extra_input_size: int = 0,
                 block: str = "plain") -> None:
        super().__init__()
        spec = get_cell(cell)  # the model.* values are checked by the config schema
        # task.backbone.input_dropout, checked by the config schema; null: model.dropout
        input_dropout = dropout if input_dropout is None else input_dropout
        if causal and bidirectional:
            raise ConfigError(
                "this task is causal (each step may only see the past), so a bidirectional "
                "model cannot be used; pick a unidirectional one such as model=lstm or model=gru."
            )
        self.cell = cell
        self.spec = spec
        self.state_names = spec.state
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.state_layers = num_layers
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.pack = pack
        self.input = InputLayer(vocab_size, input_size, embedding_dim, padding_idx, project_inputs,
                                extra_input_size)
        self.input_dropout = nn.Dropout(input_dropout)
        self._layer_args = dict(hidden_size=hidden_size, num_layers=num_layers,
                                bidirectional=bidirectional, dropout=dropout,
                                options=dict(cell_options or {}), block=block)
        self._init = (init, forget_bias)
        self._build_layers()

    def _build_layers(self) -> None:
        """The recurrent layers, sized by the input layer's current width, freshly initialised."""
        self.rnn = self.spec.build(LayerArgs(input_size=self.input.output_size,
                                             **{k: (dict(v) if isinstance(v, dict) else v)
                                                for k, v in self._layer_args.items()}))
        self.reset_parameters(*self._init)

    def set_extra_input_size(self, size: int) -> None:
        require(isinstance(size, int) and size >= 0,
                f"extra_input_size must be a non-negative integer, got {size!r}.")
        if size != self.input.extra_size:
            self.input.extra_size = size
            self._build_layers()

    @property
    def output_size(self) -> int:
        return self.hidden_size * self.num_directions

    def reset_parameters(self, init: str, forget_bias: float) -> None:
        self.spec.init(self.rnn, init, forget_bias, self.hidden_size)

    def init_state(self, batch_size: int, device: torch.device | None = None) -> Hidden:
        return self.spec.initial_state(self.num_layers * self.num_directions, batch_size,
                                       self.hidden_size, device)

    def forward(self, x: Tensor, lengths: Tensor | None = None, hidden: Hidden | None = None,
                need_state: bool = False, features: Tensor | None = None) -> EncoderOutput:
        """Encode a right-padded batch.

        x: (B, T) token ids or (B, T, F) frames; lengths: (B,) real lengths (None: all T).
        features: (B, T, extra_input_size) per-token features (only when built with them);
        joined to the embedded inputs, so ``input_dropout`` applies to them too.
        need_state: the caller will use ``hidden`` (a decoder bridge), so ragged batches
        are packed to make it the state after each sequence's last real step. Without
        it, a ragged unpacked pass returns ``hidden=None`` rather than a state that has
        run over padding.
        """
        emb = self.input_dropout(self.input(x, features))
        steps = emb.shape[1]
        ragged = lengths is not None and bool((lengths < steps).any())
        packed = self.pack == "always" or (
            self.pack == "auto" and ragged and (self.bidirectional or need_state))
        if packed and lengths is not None and not self.spec.packable:
            # the cell ignores padding itself and stops each state at its last real step
            outputs, hidden = self.rnn(emb, hidden, lengths=lengths)
            outputs = outputs * length_mask(lengths, steps, outputs.device).unsqueeze(-1).to(outputs.dtype)
        elif packed and lengths is not None:
            seq = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, hidden = self.rnn(seq, hidden)
            outputs, _ = pad_packed_sequence(out, batch_first=True, total_length=steps)
        else:
            outputs, hidden = self.rnn(emb, hidden)
            if ragged:
                hidden = None
                outputs = outputs * length_mask(lengths, steps, outputs.device).unsqueeze(-1).to(outputs.dtype)
        last = self._last(outputs, lengths)
        return EncoderOutput(outputs=outputs, last=last, hidden=hidden)

    def forward_steps(self, x: Tensor, lengths: Tensor | None, states: list[Tensor],
                      hidden: Hidden | None = None, features: Tensor | None = None
                      ) -> EncoderOutput:
        require(not self.bidirectional, "a bidirectional backbone has no single per-step state")
        emb = self.input_dropout(self.input(x, features))
        steps = emb.shape[1]
        readout = getattr(self.rnn, "readout", None)  # residual blocks: output != state
        step_outputs = []
        for t in range(steps):
            _, hidden = self.spec.step(self.rnn, emb[:, t], hidden)
            h = hidden[0] if isinstance(hidden, tuple) else hidden
            layers = list(h.unbind(0))
            states.append(layers[-1])
            h = torch.stack(layers)  # the next step reads the same node the output does
            hidden = (h, *hidden[1:]) if isinstance(hidden, tuple) else h
            step_outputs.append(layers[-1] if readout is None else readout(emb[:, t], h))
        outputs = torch.stack(step_outputs, dim=1)
        if lengths is not None and bool((lengths < steps).any()):
            outputs = outputs * length_mask(lengths, steps, outputs.device).unsqueeze(-1).to(outputs.dtype)
            hidden = None
        return EncoderOutput(outputs=outputs, last=self._last(outputs, lengths), hidden=hidden)

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


def length_mask(lengths: Tensor, steps: int, device: torch.device | None = None) -> Tensor:
    """(B, steps) bool: True at each sequence's real steps, False at its padding."""
    device = device or lengths.device
    return torch.arange(steps, device=device)[None, :] < lengths.to(device)[:, None]
