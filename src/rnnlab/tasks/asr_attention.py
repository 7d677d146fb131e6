"""Transcription with an attention encoder-decoder (task=asr_attention): the other N->M
structure on task=asr's data.

The ``model=`` backbone reads the (optionally subsampled) frames and is the encoder of the
lab's :class:`~rnnlab.models.seq2seq.Seq2Seq`; its recurrent decoder writes the transcript
one symbol at a time, attending over the encoder's steps, until it writes the end symbol.
The data are ``AsrDataModule``'s as they are (same recordings, splits, strings and
normalisation): the decoder's vocabulary is the alphabet's ids 1..K as the data number
them, with 0 as padding and two ids added after the alphabet for the start and end
symbols. Trained with token cross-entropy under teacher forcing; validation decodes
greedily, the test with beam search when ``beam_size > 1``, and both are scored as CTC's
transcripts are (:mod:`rnnlab.tasks.transcription`). The test also logs a few attention
maps (output symbols against encoder steps, i.e. windows of ``subsample`` frames).

Unlike CTC, nothing forces the alignment to be monotonic, and the decoder has to learn
when to stop; a string of n symbols costs n + 1 decoder steps.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor, nn

from rnnlab.core.dist import gather_objects
from rnnlab.data.spec import TranscribeSpec
from rnnlab.models.seq2seq import Seq2Seq
from rnnlab.tasks.base import OptimizerFactory
from rnnlab.tasks.transcription import TranscriptionTask, subsample_frames
from rnnlab.tracking.artifacts import log_figure
from rnnlab.tracking.predictions import DEFAULT_MAX_ROWS

PAD = 0


def decoder_targets(y: Tensor, y_lengths: Tensor, bos_id: int, eos_id: int
                    ) -> tuple[Tensor, Tensor]:
    """Decoder inputs ``[BOS, y...]`` and outputs ``[y..., EOS]`` (padded with 0) of padded
    symbol ids ``y`` (B, L)."""
    y_in = F.pad(y, (1, 0), value=bos_id)
    y_out = F.pad(y, (0, 1), value=PAD)
    y_out[torch.arange(len(y_lengths), device=y.device), y_lengths.to(y.device)] = eos_id
    return y_in, y_out


def frame_attention_figure(weights: np.ndarray, out: list[str], subsample: int) -> Figure:
    """Rows: output symbols; columns: encoder steps (windows of ``subsample`` frames),
    numbered along the axis; darker = more weight."""
    fig, ax = plt.subplots(figsize=(min(14.0, 2.0 + 0.06 * weights.shape[1]),
                                    1.2 + 0.3 * len(out)))
    ax.imshow(weights, cmap="Greys", vmin=0, vmax=max(float(weights.max()), 1e-6),
              aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(out)), out)
    ax.set_xlabel("encoder step" + (f" ({subsample} frames each)" if subsample > 1 else
                                    " (frame)"))
    ax.set_ylabel("output")
    return fig


class AsrAttentionTask(TranscriptionTask):
    """Backbone encoder over frames -> recurrent decoder with attention -> symbols.

    ``attention`` and the decoder settings are :class:`~rnnlab.models.seq2seq.Seq2Seq`'s;
    ``teacher_forcing`` is the share of gold previous symbols fed in training (below 1
    the decoder is fed its own predictions otherwise); ``max_decode_len`` bounds a
    transcript's length in decoding."""

    def __init__(self, backbone: nn.Module, spec: TranscribeSpec, optimizer: OptimizerFactory,
                 scheduler: Any = None, monitor: str = "val/ler", subsample: int = 1,
                 beam_size: int = 1, attention: str = "bahdanau",
                 decoder_cell: str | None = None, decoder_hidden_size: int | None = None,
                 decoder_layers: int | None = None, embedding_dim: int = 32,
                 attention_size: int = 128, dropout: float = 0.2, encoder_dropout: float = 0.0,
                 teacher_forcing: float = 1.0, length_penalty: float = 1.0,
                 max_decode_len: int = 40, label_smoothing: float = 0.0, num_heatmaps: int = 4,
                 max_predictions: int = DEFAULT_MAX_ROWS) -> None:
        # the choices, rates and sizes are checked by the config schema
        super().__init__(backbone, spec, optimizer, scheduler, monitor, subsample, beam_size,
                         max_predictions)
        k = len(self.alphabet)
        self.bos_id, self.eos_id = k + 1, k + 2
        self.model = Seq2Seq(backbone, k + 3, self.bos_id, self.eos_id, PAD, attention,
                             decoder_cell=decoder_cell, decoder_hidden_size=decoder_hidden_size,
                             decoder_layers=decoder_layers, embedding_dim=embedding_dim,
                             attention_size=attention_size, dropout=dropout,
                             encoder_dropout=encoder_dropout)
        self.teacher_forcing = float(teacher_forcing)
        self.length_penalty = length_penalty
        self.max_decode_len = max_decode_len
        self.label_smoothing = label_smoothing
        self.num_heatmaps = num_heatmaps
        # ((position of the batch, row), weights, output symbols) per attention map
        self._heatmaps: list[tuple[tuple[int, int], np.ndarray, list[str]]] = []

    def _loss(self, x: Tensor, lengths: Tensor, batch: dict, ratio: float) -> Tensor:
        """Mean token cross-entropy of the transcripts (end symbol included) given the
        subsampled frames ``x``."""
        y_in, y_out = decoder_targets(batch["y"], batch["y_lengths"], self.bos_id, self.eos_id)
        logits, _ = self.model(x, lengths, y_in, ratio)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y_out.reshape(-1),
                               ignore_index=PAD, label_smoothing=self.label_smoothing)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        x, lengths = subsample_frames(batch["x"], batch["lengths"], self.subsample)
        loss = self._loss(x, lengths, batch, self.teacher_forcing)
        return self.log_train_loss(loss, len(batch["lengths"]))

    def _decode(self, x: Tensor, lengths: Tensor, beam: int) -> list[list[int]]:
        if beam <= 1:
            return self.model.greedy(x, lengths, self.max_decode_len)[0]
        return self.model.beam_search(x, lengths, beam, self.max_decode_len,
                                      self.length_penalty)

    def decode_frames(self, x: Tensor, lengths: Tensor, beam_size: int | None = None
                      ) -> list[list[int]]:
        x, lengths = subsample_frames(x, lengths, self.subsample)
        return self._decode(x, lengths, self.beam_size if beam_size is None else beam_size)

    def hypotheses(self, batch: dict, batch_idx: int, split: str
                   ) -> tuple[Tensor, list[list[int]], list[list[int]]]:
        """Also keeps the greedy attention maps of the first ``num_heatmaps`` test
        utterances."""
        x, lengths = subsample_frames(batch["x"], batch["lengths"], self.subsample)
        loss = self._loss(x, lengths, batch, 1.0)
        greedy, weights = self.model.greedy(x, lengths, self.max_decode_len)
        test = split == "test"
        hyps = self._decode(x, lengths, self.beam_size) if test and self.beam_size > 1 \
            else greedy
        if test and weights is not None:
            where = self.eval_position(batch_idx)
            for i in range(min(len(greedy), self.num_heatmaps - len(self._heatmaps))):
                # the end symbol's row too, unless decoding stopped at max_decode_len
                out = ([self.to_text([s]) for s in greedy[i]] + ["</s>"])[:weights.shape[1]]
                self._heatmaps.append(((where, i), weights[i, :len(out), :int(lengths[i])]
                                       .cpu().numpy(), out))
        return loss, greedy, hyps

    def on_test_epoch_start(self) -> None:
        self._heatmaps = []

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        heatmaps = sorted((h for part in gather_objects(self._heatmaps) for h in part),
                          key=lambda h: h[0])[: self.num_heatmaps]
        self._heatmaps = []
        for i, (_, weights, out) in enumerate(heatmaps):
            log_figure(self.trainer, frame_attention_figure(weights, out, self.subsample),
                       f"plots/attention_test_{i}.png")
