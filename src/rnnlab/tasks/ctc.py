"""Transcription with connectionist temporal classification (N->M, alignment unknown).

Any ``model=`` backbone (bidirectional allowed: a transcript is produced after the whole
utterance is heard) reads the frames; a linear layer gives every frame a distribution over
the alphabet plus the CTC blank (id 0), and ``torch.nn.CTCLoss`` sums over every
alignment of the transcript to the real frames (padding excluded by the lengths). Frames
may first be averaged in windows of ``subsample`` (the lengths shrink with them), which
shortens the recurrence; CTC needs at least one frame per symbol (two between repeats),
so too coarse a window makes some transcripts impossible (their loss is then zeroed,
``zero_infinity``, and they count as errors).

Validation decodes greedily (the best path); the test decodes with prefix beam search when
``beam_size > 1``. Scores, prediction rows and ``transcribe`` are every transcriber's
(:mod:`rnnlab.tasks.transcription`): ``ler``, ``seq_acc`` and, at the test, the greedy
figures beside the beam's.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.data.spec import TranscribeSpec
from rnnlab.metrics.ctc import BLANK, beam_decode, greedy_decode
from rnnlab.tasks.base import OptimizerFactory
from rnnlab.tasks.transcription import TranscriptionTask, subsample_frames
from rnnlab.tracking.predictions import DEFAULT_MAX_ROWS

# subsample_frames stays importable from here, where task=asr introduced it
__all__ = ["CTCTask", "subsample_frames"]


class CTCTask(TranscriptionTask):
    """Backbone -> per-frame log-probabilities over blank + alphabet, trained with CTC."""

    def __init__(self, backbone: nn.Module, spec: TranscribeSpec, optimizer: OptimizerFactory,
                 scheduler: Any = None, monitor: str = "val/ler", dropout: float = 0.0,
                 subsample: int = 1, beam_size: int = 1,
                 max_predictions: int = DEFAULT_MAX_ROWS) -> None:
        super().__init__(backbone, spec, optimizer, scheduler, monitor, subsample, beam_size,
                         max_predictions)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.output_size, len(self.alphabet) + 1)
        self.ctc = nn.CTCLoss(blank=BLANK, reduction="sum", zero_infinity=True)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T', C) log-probabilities per (subsampled) frame, and the frame counts T'."""
        x, lengths = subsample_frames(x, lengths, self.subsample)
        enc = self.backbone(x, lengths)
        return F.log_softmax(self.head(self.dropout(enc.outputs)).float(), dim=-1), lengths

    def _loss(self, batch: dict) -> tuple[Tensor, Tensor, Tensor]:
        log_probs, lengths = self(batch["x"], batch["lengths"])
        # CTC's sum over alignments, per utterance (not per symbol): the usual scale
        loss = self.ctc(log_probs.transpose(0, 1), batch["y"], lengths.cpu(),
                        batch["y_lengths"].cpu()) / len(lengths)
        return loss, log_probs, lengths

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss, _, _ = self._loss(batch)
        return self.log_train_loss(loss, len(batch["lengths"]))

    def decode(self, log_probs: Tensor, lengths: Tensor, beam_size: int | None = None
               ) -> list[list[int]]:
        """Symbol ids (1..K) per utterance: greedy at ``beam_size`` 1, else prefix beam."""
        beam = self.beam_size if beam_size is None else beam_size
        if beam <= 1:
            return greedy_decode(log_probs, lengths)
        return beam_decode(log_probs, lengths, beam)

    def decode_frames(self, x: Tensor, lengths: Tensor, beam_size: int | None = None
                      ) -> list[list[int]]:
        log_probs, steps = self(x, lengths)
        return self.decode(log_probs, steps.cpu(), beam_size)

    def hypotheses(self, batch: dict, batch_idx: int, split: str
                   ) -> tuple[Tensor, list[list[int]], list[list[int]]]:
        loss, log_probs, lengths = self._loss(batch)
        lengths = lengths.cpu()
        greedy = greedy_decode(log_probs, lengths)
        hyps = greedy if split == "val" or self.beam_size <= 1 else \
            beam_decode(log_probs, lengths, self.beam_size)
        return loss, greedy, hyps
