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
``beam_size > 1`` and logs the greedy figures beside it (``test/ler_greedy``,
``test/seq_acc_greedy``). Scores: ``ler`` (label error rate: summed symbol edit distance
over summed reference length, reduced as two sums, so exact under DDP) and ``seq_acc``
(share of utterances transcribed without an error).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.core.errors import require
from rnnlab.data.batching import pad_batch
from rnnlab.data.spec import TranscribeSpec
from rnnlab.metrics.ctc import BLANK, beam_decode, edit_counts, greedy_decode
from rnnlab.metrics.distributed import Ratio, WeightedMean
from rnnlab.tasks.base import OptimizerFactory, RnnlabTask
from rnnlab.tracking.predictions import DEFAULT_MAX_ROWS

GREEDY = ("ler_greedy", "seq_acc_greedy")


def subsample_frames(x: Tensor, lengths: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Frames averaged in windows of ``k`` (a last partial window over its real frames
    only), and the new lengths ``ceil(length / k)``."""
    if k == 1:
        return x, lengths
    b, t, f = x.shape
    pad = (-t) % k
    mask = (torch.arange(t + pad, device=x.device)[None, :] < lengths[:, None]).to(x.dtype)
    x = F.pad(x, (0, 0, 0, pad)) * mask[..., None]
    sums = x.view(b, (t + pad) // k, k, f).sum(2)
    counts = mask.view(b, (t + pad) // k, k).sum(2).clamp(min=1)
    return sums / counts[..., None], (lengths + k - 1) // k


class CTCTask(RnnlabTask):
    """Backbone -> per-frame log-probabilities over blank + alphabet, trained with CTC."""

    MEANS: Mapping[str, Any] = MappingProxyType({
        "loss": WeightedMean, "ler": Ratio, "seq_acc": WeightedMean,
        "ler_greedy": Ratio, "seq_acc_greedy": WeightedMean})
    PROGRESS_BAR = ("loss", "ler")
    prediction_metrics = MappingProxyType({
        "test/ler": {"kind": "ratio", "num": "edits", "den": "ref_len"},
        "test/seq_acc": {"kind": "mean", "column": "score"}})

    def __init__(self, backbone: nn.Module, spec: TranscribeSpec, optimizer: OptimizerFactory,
                 scheduler: Any = None, monitor: str = "val/ler", dropout: float = 0.0,
                 subsample: int = 1, beam_size: int = 1,
                 max_predictions: int = DEFAULT_MAX_ROWS) -> None:
        super().__init__(backbone, optimizer, scheduler, monitor, max_predictions)
        require(isinstance(subsample, int) and subsample >= 1,
                f"task.module.subsample must be a positive integer, got {subsample!r}.")
        require(isinstance(beam_size, int) and beam_size >= 1,
                f"task.decode.beam_size must be at least 1 (1 = greedy), got {beam_size!r}.")
        self.alphabet = list(spec.alphabet)
        self.subsample = subsample
        self.beam_size = beam_size
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

    def to_text(self, ids: list[int]) -> str:
        return "".join(self.alphabet[i - 1] for i in ids)

    @torch.no_grad()
    def transcribe(self, frames: list[Tensor], beam_size: int | None = None,
                   batch_size: int = 64) -> list[str]:
        """Transcripts of normalised frame sequences (what the CLI and server call)."""
        out: list[str] = []
        for start in range(0, len(frames), batch_size):
            x, lengths = pad_batch(frames[start:start + batch_size], 0.0)
            log_probs, steps = self(x.to(self.device), lengths.to(self.device))
            out += [self.to_text(h) for h in self.decode(log_probs, steps.cpu(), beam_size)]
        return out

    @staticmethod
    def _refs(batch: dict) -> list[list[int]]:
        return [row[:n] for row, n in zip(batch["y"].tolist(), batch["y_lengths"].tolist(),
                                          strict=True)]

    def evaluate(self, batch: dict, batch_idx: int, split: str) -> dict[str, Any]:
        loss, log_probs, lengths = self._loss(batch)
        refs = self._refs(batch)
        n = len(refs)
        lengths = lengths.cpu()
        greedy = greedy_decode(log_probs, lengths)
        hyps = greedy if split == "val" or self.beam_size <= 1 else \
            beam_decode(log_probs, lengths, self.beam_size)
        edits, ref_len = edit_counts(hyps, refs)
        out: dict[str, Any] = {
            "loss": (loss, n), "ler": (sum(edits), sum(ref_len)),
            "seq_acc": (sum(e == 0 for e in edits) / n, n),
            "hyps": hyps, "refs": refs, "edits": edits}
        if split == "test":
            g_edits, _ = edit_counts(greedy, refs)
            out.update(ler_greedy=(sum(g_edits), sum(ref_len)),
                       seq_acc_greedy=(sum(e == 0 for e in g_edits) / n, n))
        return out

    def epoch_values(self, split: str) -> dict[str, Any]:
        """loss, ler, seq_acc; at the test also the greedy figures when beam search ran."""
        names = ["loss", "ler", "seq_acc"]
        if split == "test":
            names += GREEDY
        return {name: self.mean(split, name) for name in names}

    def prediction_rows(self, batch: dict, out: dict[str, Any],
                        ids: list[int] | None) -> list[dict[str, Any]]:
        """One row per utterance: gold and decoded transcript, correct (0/1), symbol edits
        and reference length (test/ler = sum(edits) / sum(ref_len))."""
        return [{"gold": self.to_text(r), "prediction": self.to_text(h), "score": float(e == 0),
                 "edits": e, "ref_len": len(r), "frames": int(n)}
                for h, r, e, n in zip(out["hyps"], out["refs"], out["edits"],
                                      batch["lengths"].tolist(), strict=True)]
