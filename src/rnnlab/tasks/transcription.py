"""What every transcriber shares (N->M over real-valued frames: task=asr, task=asr_attention).

A transcriber reads normalised frames (``AsrDataModule``'s batches: ``x``, ``lengths``, ``y``
holding symbol ids 1..K, ``y_lengths``) and writes a string of ``spec.alphabet``. How it
gets there (CTC over frames, or an encoder-decoder with attention) is the subclass's
business; how it is scored is this module's, so the two decoders' figures are the same
computation and compare row by row:

* ``ler``: label error rate, summed symbol edit distance over summed reference length
  (reduced as two sums, so exact under DDP);
* ``seq_acc``: the share of utterances transcribed without an error;
* at the test, the scored hypotheses come from beam search when ``beam_size > 1`` and the
  greedy figures are logged beside them (``test/ler_greedy``, ``test/seq_acc_greedy``);
  validation is always greedy.

Frames may first be averaged in windows of ``subsample`` (:func:`subsample_frames`), which
shortens what the encoder reads.
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
from rnnlab.metrics.ctc import edit_counts
from rnnlab.metrics.distributed import Ratio, WeightedMean
from rnnlab.tasks.base import OptimizerFactory, RnnlabTask
from rnnlab.tracking.predictions import DEFAULT_MAX_ROWS

GREEDY = ("ler_greedy", "seq_acc_greedy")
#: how a decoded id outside the alphabet is shown (an encoder-decoder may, rarely, emit
#: its padding or start symbol; the id still counts as an edit)
NOT_A_SYMBOL = "?"


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


class TranscriptionTask(RnnlabTask):
    """Frames -> symbols of ``spec.alphabet`` (ids 1..K), scored by label error rate.

    A subclass supplies ``training_step``, :meth:`hypotheses` (a batch's loss, greedy
    hypotheses and the hypotheses scored) and :meth:`decode_frames` (what
    :meth:`transcribe` calls)."""

    MEANS: Mapping[str, Any] = MappingProxyType({
        "loss": WeightedMean, "ler": Ratio, "seq_acc": WeightedMean,
        "ler_greedy": Ratio, "seq_acc_greedy": WeightedMean})
    PROGRESS_BAR = ("loss", "ler")
    prediction_metrics = MappingProxyType({
        "test/ler": {"kind": "ratio", "num": "edits", "den": "ref_len"},
        "test/seq_acc": {"kind": "mean", "column": "score"}})

    def __init__(self, backbone: nn.Module, spec: TranscribeSpec, optimizer: OptimizerFactory,
                 scheduler: Any = None, monitor: str = "val/ler", subsample: int = 1,
                 beam_size: int = 1, max_predictions: int = DEFAULT_MAX_ROWS) -> None:
        super().__init__(backbone, optimizer, scheduler, monitor, max_predictions)
        require(isinstance(subsample, int) and subsample >= 1,
                f"task.module.subsample must be a positive integer, got {subsample!r}.")
        require(isinstance(beam_size, int) and beam_size >= 1,
                f"task.decode.beam_size must be at least 1 (1 = greedy), got {beam_size!r}.")
        self.alphabet = list(spec.alphabet)
        self.subsample = subsample
        self.beam_size = beam_size

    # ---- what a transcriber supplies -------------------------------------------------------
    def hypotheses(self, batch: dict, batch_idx: int, split: str
                   ) -> tuple[Tensor, list[list[int]], list[list[int]]]:
        """The batch's loss, its greedy hypotheses and the hypotheses scored (the greedy
        ones in validation, beam search's at the test when ``beam_size > 1``), as symbol
        ids 1..K."""
        raise NotImplementedError(f"{type(self).__name__} does not decode")

    def decode_frames(self, x: Tensor, lengths: Tensor, beam_size: int | None = None
                      ) -> list[list[int]]:
        """Symbol ids per utterance of a padded batch of normalised frames (``beam_size``
        None: the task's own, 1: greedy)."""
        raise NotImplementedError(f"{type(self).__name__} does not decode")

    # ---- shared ----------------------------------------------------------------------------
    def to_text(self, ids: list[int]) -> str:
        k = len(self.alphabet)
        return "".join(self.alphabet[i - 1] if 1 <= i <= k else NOT_A_SYMBOL for i in ids)

    @torch.no_grad()
    def transcribe(self, frames: list[Tensor], beam_size: int | None = None,
                   batch_size: int = 64) -> list[str]:
        """Transcripts of normalised frame sequences (what the CLI and server call)."""
        out: list[str] = []
        for start in range(0, len(frames), batch_size):
            x, lengths = pad_batch(frames[start:start + batch_size], 0.0)
            hyps = self.decode_frames(x.to(self.device), lengths.to(self.device), beam_size)
            out += [self.to_text(h) for h in hyps]
        return out

    @staticmethod
    def _refs(batch: dict) -> list[list[int]]:
        return [row[:n] for row, n in zip(batch["y"].tolist(), batch["y_lengths"].tolist(),
                                          strict=True)]

    def evaluate(self, batch: dict, batch_idx: int, split: str) -> dict[str, Any]:
        loss, greedy, hyps = self.hypotheses(batch, batch_idx, split)
        refs = self._refs(batch)
        n = len(refs)
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
        """loss, ler, seq_acc; at the test also the greedy figures."""
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
