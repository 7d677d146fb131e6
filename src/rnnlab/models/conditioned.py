"""A causal character model conditioned on one category vector (1->N generation).

The ``model=`` backbone (any unidirectional recurrent cell, or the Transformer with its
causal mask) reads characters left to right; a category embedding ``e_c`` conditions it in
one of the two ways of the classic 1->N diagrams, or both:

* ``init``: ``e_c`` sets the initial state. As in the encoder-decoder bridge
  (:mod:`rnnlab.models.seq2seq`), ``h_0 = tanh(W_h e_c + b_h)`` for every layer, and an
  LSTM's cell state gets its own linear map ``c_0 = W_c e_c + b_c``. A Transformer has no
  state to set, so there ``e_c`` replaces the ``<s>`` input at the first position (the
  category is the first thing it reads, and then never again);
* ``every_step``: ``[x_t; e_c]`` is the input at every step, so the category is in view
  whenever a character is chosen;
* ``both``: the two together;
* ``none``: no category at all, a plain character model of the same names (the floor).

Why not the encoder-decoder with a one-token encoder: there the ``model=`` backbone
would only be the encoder of one token, and the generating network would be the
decoder's own cell, which ignores the backbone's settings (``model.init``,
``model.forget_bias``, depth, the Transformer) and adds a readout layer that ``none``
lacks. Here the backbone from ``model=`` *is* the generator and the four conditions
differ only in where ``e_c`` enters, so their losses compare like for like.

The backbone is built for real-valued inputs (``input_size`` = character embedding, plus
the category embedding for ``every_step``); this module owns both embedding tables.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from rnnlab.core.errors import ConfigError, require

#: ``task.condition``: where the category enters (see the module docstring)
CONDITIONS = ("init", "every_step", "both", "none")
State = Tensor | tuple[Tensor, Tensor] | None


class ConditionedGenerator(nn.Module):
    """Character embedding (+ category) -> backbone -> dropout -> linear over characters.

    Args:
        backbone: a unidirectional recurrent or causal Transformer ``Backbone``
            built with ``input_size = char_dim (+ category_dim for every_step/both)``.
        num_chars, num_categories: the vocabulary and the number of categories.
        condition: ``init``, ``every_step``, ``both`` or ``none``.
        char_dim, category_dim: embedding sizes.
        bos_id, eos_id, padding_idx: the character vocabulary's specials.
        banned: ids never sampled (``<pad>``, ``<unk>``, ``<s>``).
        dropout: on the embeddings and on the backbone outputs.
    """

    def __init__(self, backbone: nn.Module, num_chars: int, num_categories: int,
                 condition: str = "init", char_dim: int = 64, category_dim: int = 32,
                 bos_id: int = 2, eos_id: int = 3, padding_idx: int = 0,
                 banned: Sequence[int] = (0, 1, 2), dropout: float = 0.0) -> None:
        super().__init__()  # task.condition and the dropout are checked by the config schema
        if backbone.bidirectional:
            raise ConfigError("task=names generates left to right, so a bidirectional model "
                              "cannot be used; pick a unidirectional one such as model=gru.")
        self.condition = condition
        self.init_state = condition in ("init", "both")
        self.every_step = condition in ("every_step", "both")
        expected = char_dim + (category_dim if self.every_step else 0)
        got = backbone.input_size
        if got != expected:
            raise ConfigError(
                f"the backbone reads inputs of width {got}, but task.condition={condition} "
                f"with task.char_dim={char_dim} and task.category_dim={category_dim} feeds "
                f"{expected}; build it from the names datamodule's spec (input_size).")
        self.backbone = backbone
        self.recurrent = backbone.is_recurrent
        self.cell = backbone.cell
        self.num_layers = int(backbone.state_layers)
        self.hidden_size = int(backbone.output_size)
        self.num_chars, self.num_categories = num_chars, num_categories
        self.bos_id, self.eos_id, self.padding_idx = bos_id, eos_id, padding_idx
        self.char_embedding = nn.Embedding(num_chars, char_dim, padding_idx=padding_idx)
        self.category_embedding = nn.Embedding(num_categories, category_dim) \
            if condition != "none" else None
        self.bridge_h = self.bridge_c = self.start = None
        if self.init_state and self.recurrent:
            self.bridge_h = nn.Linear(category_dim, self.num_layers * self.hidden_size)
            if len(backbone.state_names) > 1:  # an LSTM's cell state gets its own map
                self.bridge_c = nn.Linear(category_dim, self.num_layers * self.hidden_size)
        elif self.init_state:  # a Transformer: the category is its first input instead of <s>
            self.start = nn.Linear(category_dim, char_dim)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.hidden_size, num_chars)
        mask = torch.zeros(num_chars)
        mask[[i for i in banned if 0 <= i < num_chars]] = -math.inf
        self.register_buffer("banned", mask, persistent=False)

    # ---- conditioning ------------------------------------------------------------------
    def initial_state(self, category: Tensor) -> State:
        """The backbone's state before the first character (None: zeros / no state)."""
        if self.bridge_h is None:
            return None
        e = self.category_embedding(category)
        layers = (self.num_layers, category.shape[0], self.hidden_size)

        def spread(t: Tensor) -> Tensor:  # (B, L*H) -> (L, B, H)
            return t.view(category.shape[0], self.num_layers, self.hidden_size) \
                .transpose(0, 1).reshape(layers).contiguous()

        h0 = spread(torch.tanh(self.bridge_h(e)))
        if self.bridge_c is not None:
            return h0, spread(self.bridge_c(e))
        return h0

    def inputs(self, x: Tensor, category: Tensor, first: bool = True) -> Tensor:
        """(B, T) ids -> (B, T, input_size); ``first`` says x[:, 0] is the start position."""
        emb = self.char_embedding(x)
        if self.start is not None and first:
            start = self.start(self.category_embedding(category))
            emb = torch.cat([start.unsqueeze(1), emb[:, 1:]], 1)
        emb = self.dropout(emb)
        if self.every_step:
            e = self.dropout(self.category_embedding(category))
            emb = torch.cat([emb, e.unsqueeze(1).expand(-1, emb.shape[1], -1)], -1)
        return emb

    # ---- scoring -----------------------------------------------------------------------
    def forward(self, x: Tensor, category: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Next-character logits (B, T, V) for inputs ``x`` (``<s>`` + name, right-padded)."""
        enc = self.backbone(self.inputs(x, category), lengths, hidden=self.initial_state(category))
        return self.head(self.dropout(enc.outputs))

    # ---- sampling ----------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, category: Tensor, max_len: int, temperature: float = 1.0,
               generator: torch.Generator | None = None,
               prefix: Sequence[int] = ()) -> list[list[int]]:
        """One name (ids, without ``<s>``/``</s>``) per row of ``category``, each ending at
        ``</s>`` or after ``max_len`` characters; ``prefix`` ids start every name.

        Recurrent backbones advance one step at a time with their state; the Transformer
        re-reads the name so far each step (names are short). Sampling uses ``generator``
        on the CPU, so a seed gives the same names on any device.
        """
        require(temperature > 0, f"temperature must be greater than 0, got {temperature}.")
        was_training = self.training
        self.eval()
        device = self.head.weight.device
        batch = category.shape[0]
        category = category.to(device)
        seq = torch.tensor([[self.bos_id, *prefix]] * batch, dtype=torch.long, device=device)
        state = self.initial_state(category)
        done = torch.zeros(batch, dtype=torch.bool)
        out = torch.empty(batch, 0, dtype=torch.long)
        step_input, first = seq, True
        for _ in range(max(0, max_len - len(prefix))):
            if self.recurrent:
                enc = self.backbone(self.inputs(step_input, category, first), hidden=state)
                state = enc.hidden
            else:
                enc = self.backbone(self.inputs(seq, category))
            logits = self.head(enc.outputs[:, -1]).float().cpu() + self.banned.cpu()
            probs = torch.softmax((logits - logits.max(-1, keepdim=True).values) / temperature, -1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            nxt = torch.where(done, torch.full_like(nxt, self.eos_id), nxt)
            out = torch.cat([out, nxt.unsqueeze(1)], 1)
            done |= nxt == self.eos_id
            if bool(done.all()):
                break
            step_input, first = nxt.unsqueeze(1).to(device), False
            seq = torch.cat([seq, step_input], 1)
        self.train(was_training)
        names = []
        for row in out.tolist():
            row = row[: row.index(self.eos_id)] if self.eos_id in row else row
            names.append([*prefix, *row])
        return names
