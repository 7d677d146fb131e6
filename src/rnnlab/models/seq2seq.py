"""Encoder-decoder (N->M) around any backbone: bridge, recurrent decoder, attention, search.

The backbone from ``model=`` is the encoder, used as is (it may be bidirectional), through
the :class:`~rnnlab.models.encoder.Backbone` interface only. Its final states are bridged
to the decoder's size by a learned linear layer (per layer; a second state such as an
LSTM's cell state gets its own bridge). The decoder is unidirectional and is built from
the cell registry with the encoder's cell (a GRU after a Transformer unless
``decoder_cell`` says otherwise); it steps through the cell's single-step form.

Attention modes, and what the decoder sees at step t:

* ``bahdanau``: context from the *previous* decoder state, fed in with the input token.
* ``luong_dot`` / ``luong_general``: context from the *current* decoder state (no input
  feeding), so a teacher-forced pass runs the fused RNN over all steps at once and
  scores every step in one batched product.
* ``none``: one fixed context vector c (``last`` = h_N, ``projected`` = tanh(W h_N),
  ``pooled`` = mean of all encoder states). ``context_feed`` says where it goes: ``both``
  (Cho et al. 2014: it starts the decoder and joins every step's input and readout),
  ``init`` (Sutskever et al. 2014: it only starts the decoder) or ``steps`` (the decoder
  starts from zeros and reads c at every step).

Each step's output is ``W_o tanh(W_c [s_t; c_t])``. A Python loop over target steps is
needed only where a step depends on the previous prediction or state: sampled inputs
(teacher forcing < 1), Bahdanau attention, greedy and beam search.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from rnnlab.core.errors import require
from rnnlab.models.attention import Attention
from rnnlab.models.cells import LayerArgs, get_cell
from rnnlab.models.encoder import length_mask
from rnnlab.models.heads import pool

#: ``task.context``: the fixed context vector with ``attention=none``
CONTEXTS = ("last", "projected", "pooled")
#: ``task.context_feed``: where that context goes
CONTEXT_FEEDS = ("both", "init", "steps")
State = Tensor | tuple[Tensor, ...]


@dataclass
class Encoded:
    """What the decoder reads from the source, repeated per beam when searching."""

    memory: Tensor          # (B, S, E) encoder outputs
    mask: Tensor            # (B, S) True at real source steps
    keys: Tensor | None     # attention keys, precomputed once
    static: Tensor | None   # (B, E) fixed context (attention=none)
    hidden: State           # decoder initial state (L, B, H)

    def select(self, index: Tensor) -> Encoded:
        """Rows ``index`` of every batch-major tensor (beam expansion / reordering)."""
        return replace(self, memory=self.memory.index_select(0, index),
                       mask=self.mask.index_select(0, index),
                       keys=None if self.keys is None else self.keys.index_select(0, index),
                       static=None if self.static is None else self.static.index_select(0, index),
                       hidden=_select_state(self.hidden, index))


def _select_state(hidden: State, index: Tensor) -> State:
    if isinstance(hidden, tuple):
        return tuple(h.index_select(1, index) for h in hidden)  # type: ignore[return-value]
    return hidden.index_select(1, index)


class Seq2Seq(nn.Module):
    """Backbone encoder + bridged recurrent decoder with optional attention.

    Args:
        encoder: the backbone (any :class:`~rnnlab.models.encoder.Backbone`).
        tgt_vocab_size, bos_id, eos_id, pad_id: the target side's vocabulary.
        attention: ``none``, ``bahdanau``, ``luong_dot`` or ``luong_general``.
        context: with ``attention=none``: ``last``, ``projected`` or ``pooled``.
        decoder_cell: None = the encoder's cell (GRU after a Transformer).
        decoder_hidden_size: None = the encoder's output size (so luong_dot works as is).
        decoder_layers: None = the encoder's number of layers.
        context_feed: with ``attention=none``: ``both``, ``init`` or ``steps``.
        dropout: on the decoder's embeddings and readout (and between decoder layers).
        encoder_dropout: on the encoder states the decoder reads (attention memory and the
            fixed context): a one-layer backbone has no dropout of its own, and a small
            corpus (CMUdict) overfits through the encoder first.
    """

    def __init__(self, encoder: nn.Module, tgt_vocab_size: int, bos_id: int, eos_id: int,
                 pad_id: int = 0, attention: str = "bahdanau", context: str = "last",
                 decoder_cell: str | None = None, decoder_hidden_size: int | None = None,
                 decoder_layers: int | None = None, embedding_dim: int = 128,
                 attention_size: int = 128, dropout: float = 0.2,
                 context_feed: str = "both", encoder_dropout: float = 0.0) -> None:
        super().__init__()  # the task.* choices and dropouts are checked by the config schema
        cell = decoder_cell or encoder.cell or "gru"
        self.cell_spec = get_cell(cell, key="task.module.decoder_cell")
        self.encoder = encoder
        self.attention_kind = attention
        self.context_kind = context
        # where the fixed context goes (attention=none only: attention is read at every step)
        self.context_feed = context_feed if attention == "none" else None
        self.cell = cell
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
        self.vocab_size = tgt_vocab_size
        enc_size = int(encoder.output_size)
        self.hidden_size = int(decoder_hidden_size or enc_size)
        self.num_layers = int(decoder_layers or encoder.state_layers)
        self.embedding = nn.Embedding(tgt_vocab_size, embedding_dim, padding_idx=pad_id)
        self.dropout = nn.Dropout(dropout)
        self.encoder_dropout = nn.Dropout(encoder_dropout)
        # the bridge: encoder final state (or the fixed context) -> decoder initial state;
        # none when the decoder starts from zeros (context_feed=steps)
        bridged = self.context_feed != "steps"
        self.bridge_h = nn.Linear(enc_size, self.hidden_size) if bridged else None
        self.bridge_c = nn.Linear(enc_size, self.hidden_size) \
            if bridged and len(self.cell_spec.state) > 1 else None
        self.project = nn.Linear(enc_size, enc_size) if context == "projected" else None
        # context in the decoder's input: Bahdanau's, or the fixed one unless it only starts it
        self.input_context = attention == "bahdanau" or (attention == "none" and
                                                         self.context_feed != "init")
        self.rnn = self.cell_spec.build(LayerArgs(
            input_size=embedding_dim + (enc_size if self.input_context else 0),
            hidden_size=self.hidden_size, num_layers=self.num_layers, dropout=float(dropout)))
        self.attention = None if attention == "none" else Attention(
            attention, self.hidden_size, enc_size, attention_size)
        # context in the readout: always, but for a fixed context that only starts the decoder
        self.readout_context = self.context_feed != "init"
        self.combine = nn.Linear(self.hidden_size + (enc_size if self.readout_context else 0),
                                 self.hidden_size)
        self.out = nn.Linear(self.hidden_size, tgt_vocab_size)

    # ---- encoding ----------------------------------------------------------------------
    def _layers(self, states: Tensor) -> Tensor:
        """(layers*dirs, B, H) encoder states -> (decoder layers, B, dirs*H)."""
        dirs = 2 if self.encoder.bidirectional else 1
        layers = states.shape[0] // dirs
        merged = states.view(layers, dirs, states.shape[1], states.shape[2]).permute(0, 2, 1, 3)
        merged = merged.reshape(layers, states.shape[1], dirs * states.shape[2])
        if layers != self.num_layers:  # different depths: every decoder layer gets the top one
            merged = merged[-1:].expand(self.num_layers, -1, -1)
        return merged

    def encode(self, x: Tensor, lengths: Tensor) -> Encoded:
        enc = self.encoder(x, lengths, need_state=True)
        memory = self.encoder_dropout(enc.outputs)
        mask = length_mask(lengths, memory.shape[1], memory.device)
        hidden, cell_state = enc.hidden, None
        if isinstance(hidden, tuple):
            hidden, cell_state = hidden
        static = None
        if self.attention_kind == "none":
            if self.context_kind == "pooled":
                static = pool(memory, enc.last, lengths, "mean")
            else:
                static = self.encoder_dropout(enc.last)
                if self.project is not None:
                    static = torch.tanh(self.project(static))
            source = static.unsqueeze(0).expand(self.num_layers, -1, -1)
        elif hidden is None:  # a Transformer has no recurrent state: start from its last step
            source = enc.last.unsqueeze(0).expand(self.num_layers, -1, -1)
        else:
            source = self._layers(hidden)
        if self.bridge_h is None:  # c only at every step: the decoder starts from zeros
            h0 = source.new_zeros(self.num_layers, source.shape[1], self.hidden_size)
        else:
            h0 = torch.tanh(self.bridge_h(source)).contiguous()
        init: State = h0
        if len(self.cell_spec.state) > 1:
            if self.bridge_c is not None and self.attention_kind == "none":
                c0 = self.bridge_c(source)  # c is the only link: it starts the cell too
            elif self.bridge_c is not None and cell_state is not None:
                c0 = self.bridge_c(self._layers(cell_state))
            else:
                c0 = torch.zeros_like(h0)
            init = (h0, c0.contiguous())
        keys = self.attention.keys(memory) if self.attention is not None else None
        return Encoded(memory, mask, keys, static, init)

    # ---- decoding ----------------------------------------------------------------------
    def _top(self, hidden: State) -> Tensor:
        return (hidden[0] if isinstance(hidden, tuple) else hidden)[-1]

    def _readout(self, s: Tensor, context: Tensor | None) -> Tensor:
        joined = s if context is None else torch.cat([s, context], -1)
        return self.out(self.dropout(torch.tanh(self.combine(joined))))

    def step(self, tokens: Tensor, hidden: State, src: Encoded) -> tuple[Tensor, State, Tensor | None]:
        """One decoder step: (B,) previous tokens -> (B, V) logits, new state, attention."""
        emb = self.dropout(self.embedding(tokens))
        weights = None
        if self.attention_kind == "bahdanau":
            context, weights = self.attention(self._top(hidden), src.memory, src.mask, src.keys)
            inp = torch.cat([emb, context], -1)
        elif self.input_context:
            inp = torch.cat([emb, src.static], -1)
        else:
            inp = emb
        s, hidden = self.cell_spec.step(self.rnn, inp, hidden)
        if self.attention_kind.startswith("luong"):
            context, weights = self.attention(s, src.memory, src.mask, src.keys)
        elif self.attention_kind == "none":
            context = src.static if self.readout_context else None
        return self._readout(s, context), hidden, weights

    def forward(self, x: Tensor, lengths: Tensor, y_in: Tensor, teacher_forcing: float = 1.0,
                fused: bool | None = None) -> tuple[Tensor, Tensor | None]:
        """Logits (B, T, V) for decoder inputs ``y_in`` (BOS + target[:-1]).

        With ``teacher_forcing`` < 1 each step's input is, per example, the gold token with
        that probability and the model's own previous prediction otherwise. ``fused``
        (default: whenever possible) runs all steps in one RNN call.
        """
        src = self.encode(x, lengths)
        can_fuse = teacher_forcing >= 1.0 and self.attention_kind != "bahdanau"
        if fused is None:
            fused = can_fuse
        if fused and can_fuse:
            emb = self.dropout(self.embedding(y_in))
            if self.input_context:
                emb = torch.cat([emb, src.static.unsqueeze(1).expand(-1, emb.shape[1], -1)], -1)
            states, _ = self.rnn(emb, src.hidden)
            context, weights = None, None
            if self.attention is not None:
                context, weights = self.attention(states, src.memory, src.mask, src.keys)
            elif self.readout_context:
                context = src.static.unsqueeze(1).expand(-1, states.shape[1], -1)
            return self._readout(states, context), weights
        hidden, tokens = src.hidden, y_in[:, 0]
        logits, attn = [], []
        for t in range(y_in.shape[1]):
            step_logits, hidden, weights = self.step(tokens, hidden, src)
            logits.append(step_logits)
            if weights is not None:
                attn.append(weights)
            if t + 1 < y_in.shape[1]:
                gold = y_in[:, t + 1]
                if teacher_forcing >= 1.0:
                    tokens = gold
                else:
                    own = step_logits.argmax(-1)
                    use_gold = torch.rand(gold.shape, device=gold.device) < teacher_forcing
                    tokens = torch.where(use_gold, gold, own)
        return torch.stack(logits, 1), (torch.stack(attn, 1) if attn else None)

    @torch.no_grad()
    def greedy(self, x: Tensor, lengths: Tensor, max_len: int) -> tuple[list[list[int]], Tensor | None]:
        """Most likely token at each step until EOS (or ``max_len``); ids without BOS/EOS,
        and the attention weights (B, steps, S) when there are any."""
        src = self.encode(x, lengths)
        batch = x.shape[0]
        tokens = torch.full((batch,), self.bos_id, dtype=torch.long, device=x.device)
        done = torch.zeros(batch, dtype=torch.bool, device=x.device)
        hidden, steps, attn = src.hidden, [], []
        for _ in range(max_len):
            logits, hidden, weights = self.step(tokens, hidden, src)
            tokens = logits.argmax(-1)
            steps.append(tokens)
            if weights is not None:
                attn.append(weights)
            done = done | (tokens == self.eos_id)
            if bool(done.all()):
                break
        return _cut(torch.stack(steps, 1), self.eos_id), (torch.stack(attn, 1) if attn else None)

    def select_state(self, hidden: State, index: Tensor) -> State:
        """Rows ``index`` of a decoder state (beam reordering)."""
        return _select_state(hidden, index)

    def beam_search(self, x: Tensor, lengths: Tensor, beam_size: int, max_len: int,
                    length_penalty: float = 1.0) -> list[list[int]]:
        """Beam search with this model alone (see :func:`beam_search`)."""
        return beam_search(self, x, lengths, beam_size, max_len, length_penalty)


@torch.no_grad()
def beam_search(decoder: nn.Module, x: Tensor, lengths: Tensor, beam_size: int, max_len: int,
                length_penalty: float = 1.0) -> list[list[int]]:
    """Batched beam search; finished hypotheses are ranked by log p / length**penalty.

    ``decoder`` is a :class:`Seq2Seq` or anything with its decoding surface (``encode``,
    ``step``, ``select_state``, ``bos_id``, ``eos_id``, ``vocab_size``), such as an
    :class:`~rnnlab.models.ensemble.Ensemble`. A finished beam only extends with EOS at no
    cost, so with ``beam_size=1`` this is exactly greedy search.
    """
    require(beam_size >= 1, f"task.beam_size must be at least 1, got {beam_size}.")
    batch, k, vocab = x.shape[0], beam_size, decoder.vocab_size
    src = decoder.encode(x, lengths)
    src = src.select(torch.arange(batch, device=x.device).repeat_interleave(k))
    scores = torch.full((batch, k), float("-inf"), device=x.device)
    scores[:, 0] = 0.0
    scores = scores.view(-1)
    tokens = torch.full((batch * k,), decoder.bos_id, dtype=torch.long, device=x.device)
    done = torch.zeros(batch * k, dtype=torch.bool, device=x.device)
    seqs = torch.empty(batch * k, 0, dtype=torch.long, device=x.device)
    hidden = src.hidden
    base = torch.arange(batch, device=x.device).unsqueeze(1) * k
    for _ in range(max_len):
        logits, hidden, _ = decoder.step(tokens, hidden, src)
        logp = torch.log_softmax(logits.float(), -1)
        logp[done] = float("-inf")
        logp[done, decoder.eos_id] = 0.0
        total = (scores.unsqueeze(1) + logp).view(batch, -1)
        top, idx = total.topk(k, dim=1)
        origin = (base + torch.div(idx, vocab, rounding_mode="floor")).view(-1)
        tokens = (idx % vocab).view(-1)
        seqs = torch.cat([seqs.index_select(0, origin), tokens.unsqueeze(1)], 1)
        hidden = decoder.select_state(hidden, origin)
        done = done.index_select(0, origin) | (tokens == decoder.eos_id)
        scores = top.view(-1)
        if bool(done.all()):
            break
    is_eos = seqs == decoder.eos_id
    first = torch.where(is_eos.any(1), is_eos.float().argmax(1) + 1,
                        torch.full_like(scores, seqs.shape[1], dtype=torch.long))
    normed = scores / first.float().clamp(min=1) ** length_penalty
    best = normed.view(batch, k).argmax(1) + torch.arange(batch, device=x.device) * k
    return _cut(seqs.index_select(0, best), decoder.eos_id)


def _cut(ids: Tensor, eos_id: int) -> list[list[int]]:
    """Token ids up to (not including) the first EOS, per row."""
    out = []
    for row in ids.tolist():
        out.append(row[: row.index(eos_id)] if eos_id in row else row)
    return out
