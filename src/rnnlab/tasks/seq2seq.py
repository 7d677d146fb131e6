"""Sequence-to-sequence (N->M): g2p and translation with an encoder-decoder.

Training minimises token cross-entropy with teacher forcing; the ratio may decay linearly
over the epochs (``teacher_forcing: {start: 1.0, end: 0.5}``), so the decoder learns to
recover from its own mistakes. Validation decodes greedily (the monitored metric is the
real one, not the loss); test decodes with beam search when ``beam_size > 1``, logs a
few decoded examples and attention heat maps as run artifacts. What differs between g2p
and translation (the scorer, how sources are shown) arrives as the ``PairSpec``'s ``scorer``
and ``joiner`` fields, declared by the datamodule; this module never asks which task it
serves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor, nn

from rnnlab.core.dist import gather_objects
from rnnlab.core.errors import ConfigError, UserError
from rnnlab.data.spec import PairSpec
from rnnlab.metrics.seq2seq import (
    closest_reference,
    g2p_scores,
    stressless_g2p_scores,
    strip_stress,
    translation_scores,
)
from rnnlab.models.ensemble import Ensemble
from rnnlab.models.seq2seq import Seq2Seq, beam_search
from rnnlab.tasks.base import OptimizerFactory, RnnlabTask
from rnnlab.tracking.artifacts import log_figure, log_text
from rnnlab.tracking.predictions import DEFAULT_MAX_ROWS

BLEU_ORDER = 4

_BLEU: Any = None


def sentence_bleu_stats(hyp: str, ref: str) -> dict[str, float]:
    """BLEU's sufficient statistics of one sentence (sacrebleu, as translation_scores
    tokenizes) and its own smoothed sentence BLEU as the score."""
    # sacrebleu: only for the BLEU of a test set
    from sacrebleu.metrics import BLEU

    global _BLEU
    if _BLEU is None:  # one scorer for every sentence (its tokenizer is built once)
        _BLEU = BLEU(force=True)
    b = _BLEU.corpus_score([hyp], [[ref]])
    row: dict[str, float] = {"bleu_sys_len": b.sys_len, "bleu_ref_len": b.ref_len}
    for i in range(BLEU_ORDER):
        row[f"bleu_correct_{i + 1}"] = b.counts[i]
        row[f"bleu_total_{i + 1}"] = b.totals[i]
    row["score"] = float(BLEU.compute_bleu(list(b.counts), list(b.totals), b.sys_len, b.ref_len,
                                           smooth_method="exp", effective_order=True).score)
    return row


Hyps = list[list[str]]
Refs = list[list[list[str]]]


def edit_scores(hyps: Hyps, refs: Refs, stress_marked: bool) -> dict[str, float]:
    """WER and PER against every accepted variant; with ARPAbet stress marks also the
    stress-free figures (how much of the error is stress placement alone)."""
    scores = g2p_scores(hyps, refs)
    if stress_marked:
        plain = stressless_g2p_scores(hyps, refs)
        scores.update(wer_stressless=plain["wer"], per_stressless=plain["per"])
    return scores


def edit_row(hyp: list[str], variants: list[list[str]]) -> dict[str, float]:
    """One word's prediction row: wrong (0/1), edits and length of the closest variant."""
    edits, length = closest_reference(hyp, variants)
    return {"score": float(edits > 0), "edits": edits, "ref_len": length}


def bleu_scores(hyps: Hyps, refs: Refs, stress_marked: bool) -> dict[str, float]:
    """Corpus BLEU and chrF against the first reference (stress marks mean nothing here)."""
    return translation_scores([" ".join(h) for h in hyps], [" ".join(r[0]) for r in refs])


def bleu_row(hyp: list[str], variants: list[list[str]]) -> dict[str, float]:
    """One sentence's prediction row: BLEU's statistics, which sum to corpus BLEU."""
    return sentence_bleu_stats(" ".join(hyp), " ".join(variants[0]))


@dataclass(frozen=True)
class Scorer:
    """One way to score decoded outputs, chosen by the spec's ``scorer`` field."""

    corpus: Callable[[Hyps, Refs, bool], dict[str, float]]  # split metrics, computed once
    row: Callable[[list[str], list[list[str]]], dict[str, float]]  # one example's columns
    # how rnnlab.report.stats recomputes the test metrics from predictions/test.parquet
    prediction_metrics: dict[str, dict[str, str]]


SCORERS = {
    # per word: wrong 0/1, edits against the closest variant
    "edits": Scorer(edit_scores, edit_row,
                    {"test/wer": {"kind": "mean", "column": "score"},
                     "test/per": {"kind": "ratio", "num": "edits", "den": "ref_len"}}),
    # per sentence: BLEU's n-gram matches and totals, summed over the resampled sentences
    # before BLEU is computed
    "bleu": Scorer(bleu_scores, bleu_row, {"test/bleu": {"kind": "bleu"}}),
}

def scorer_of(spec: PairSpec) -> Scorer:
    """The spec's scorer (old checkpoints' task names are mapped by
    :func:`rnnlab.data.spec.spec_from_dict`); an unknown one is refused."""
    if spec.scorer not in SCORERS:
        raise ConfigError(f"the data spec names scorer {spec.scorer!r}, which this "
                          f"version of rnnlab does not know ({', '.join(SCORERS)}); use the "
                          f"rnnlab version that wrote the checkpoint.")
    return SCORERS[spec.scorer]


def teacher_forcing_schedule(value: float | Mapping[str, float]) -> tuple[float, float]:
    """``0.9`` or ``{start: 1.0, end: 0.5}`` -> (start, end) (keys and ranges are checked
    by the config schema)."""
    if isinstance(value, Mapping):
        start = float(value.get("start", 1.0))
        return start, float(value.get("end", start))
    return float(value), float(value)


def attention_figure(weights: np.ndarray, src: list[str], out: list[str]) -> Figure:
    """Rows: output tokens; columns: source tokens; darker = more weight."""
    fig, ax = plt.subplots(figsize=(1.5 + 0.35 * len(src), 1.2 + 0.3 * len(out)))
    ax.imshow(weights, cmap="Greys", vmin=0, vmax=max(float(weights.max()), 1e-6), aspect="auto")
    ax.set_xticks(range(len(src)), src, rotation=90 if max(map(len, src or [""])) > 2 else 0)
    ax.set_yticks(range(len(out)), out)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    return fig


def load_members(paths: Sequence[str | Path], data_state: Mapping[str, Any],
                 loader: Callable[[str], Any], key: str = "task.module.ensemble"
                 ) -> list[Seq2Seq]:
    """Encoder-decoders from other checkpoints, checked to share ``data_state``'s
    vocabularies (same task, same training data), so their scores can be averaged.
    ``loader`` rebuilds a checkpoint (the build layer's, passed down: a task never
    imports the layers above it)."""
    members = []
    for i, path in enumerate(paths):
        try:
            loaded = loader(path)
        except UserError as err:
            raise ConfigError(f"{key}[{i}]: {err}") from err
        state = loaded.data_state
        if state.get("kind") != data_state.get("kind") or not isinstance(
                getattr(loaded.module, "model", None), Seq2Seq):
            raise ConfigError(f"{key}[{i}]: {path} is not a task={data_state.get('kind')} "
                              f"checkpoint; ensemble only checkpoints of the same task.")
        for side, name in (("src_vocab", "source"), ("tgt_vocab", "target")):
            if state.get(side) != data_state.get(side):
                raise ConfigError(f"{key}[{i}]: {path} was trained with a different {name} "
                                  f"vocabulary; ensemble only checkpoints trained on the same "
                                  f"data and split.")
        members.append(loaded.module.model)
    return members


class Seq2SeqTask(RnnlabTask):
    """Backbone encoder -> bridged recurrent decoder with attention -> output tokens."""

    PROGRESS_BAR = ("loss", "wer", "per", "bleu", "chrf")  # not the stress-free figures

    def __init__(self, backbone: nn.Module, spec: PairSpec, optimizer: OptimizerFactory,
                 scheduler: Any = None, monitor: str = "val/wer", attention: str = "bahdanau",
                 context: str = "last", context_feed: str = "both", encoder_dropout: float = 0.0,
                 decoder_cell: str | None = None,
                 decoder_hidden_size: int | None = None, decoder_layers: int | None = None,
                 embedding_dim: int = 128, attention_size: int = 128, dropout: float = 0.2,
                 teacher_forcing: float | Mapping[str, float] = 1.0,
                 decay_epochs: int | None = None, beam_size: int = 1,
                 length_penalty: float = 1.0, max_decode_len: int = 40,
                 label_smoothing: float = 0.0, num_examples: int = 25,
                 num_heatmaps: int = 4, ensemble: Sequence[str] | None = None,
                 max_predictions: int = DEFAULT_MAX_ROWS) -> None:
        # beam_size, max_decode_len and teacher_forcing are checked by the config schema
        super().__init__(backbone, optimizer, scheduler, monitor, max_predictions)
        self.tf_start, self.tf_end = teacher_forcing_schedule(teacher_forcing)
        self.decay_epochs = decay_epochs
        self.beam_size, self.length_penalty = beam_size, length_penalty
        self.max_decode_len = max_decode_len
        self.label_smoothing = label_smoothing
        self.num_examples, self.num_heatmaps = num_examples, num_heatmaps
        self.scorer = scorer_of(spec)
        self.prediction_metrics = self.scorer.prediction_metrics
        self.joiner = spec.joiner  # how source tokens are shown
        self.tgt_itos = list(spec.tgt_itos)
        # ARPAbet-style targets (CMUdict) mark stress with a trailing digit on vowels
        self.has_stress = strip_stress(self.tgt_itos) != self.tgt_itos
        self.pad_id = 0
        self.model = Seq2Seq(backbone, spec.tgt_vocab_size, spec.bos_id,
                             spec.eos_id, self.pad_id, attention, context, decoder_cell,
                             decoder_hidden_size, decoder_layers, embedding_dim, attention_size,
                             dropout, context_feed, encoder_dropout)
        # other checkpoints whose models join this one at test time (a plain list, so
        # they stay out of this module's parameters and checkpoint)
        self.ensemble_paths = [str(p) for p in (ensemble or [])]
        for i, path in enumerate(self.ensemble_paths):  # fail before any run is recorded
            if not Path(path).is_file():
                raise ConfigError(f"task.module.ensemble[{i}]: checkpoint {path} does not "
                                  f"exist; give the best.ckpt paths of runs of this task.")
        self._members: list[Seq2Seq] = []
        self._outputs: dict[str, list] = {"val": [], "test": []}
        self.test_outputs: list[tuple[list[str], list[list[str]], list[str]]] = []
        self._heatmaps: list[tuple[int, np.ndarray, list[str], list[str]]] = []

    # ---- helpers ----------------------------------------------------------------------
    def teacher_forcing_ratio(self) -> float:
        """Linear from start (first epoch) to end (last epoch, or ``decay_epochs``)."""
        trainer = getattr(self, "_trainer", None)
        if trainer is None or self.tf_start == self.tf_end:
            return self.tf_start
        span = self.decay_epochs or trainer.max_epochs or 1
        progress = min(1.0, trainer.current_epoch / max(1, span - 1))
        return self.tf_start + (self.tf_end - self.tf_start) * progress

    def _loss(self, batch: dict, ratio: float) -> Tensor:
        logits, _ = self.model(batch["x"], batch["lengths"], batch["y_in"], ratio)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["y"].reshape(-1),
                               ignore_index=self.pad_id, label_smoothing=self.label_smoothing)

    def tokens(self, ids: list[int]) -> list[str]:
        return [self.tgt_itos[i] for i in ids]

    def use_ensemble(self, members: Sequence[Seq2Seq]) -> None:
        """Decode (test, conversion) with this model and ``members`` averaged step by step."""
        self._members = list(members)
        for m in self._members:
            m.eval()

    def setup(self, stage: str) -> None:
        if stage == "test" and self.ensemble_paths and not self._members:
            self.use_ensemble(load_members(self.ensemble_paths,
                                           self.trainer.datamodule.checkpoint_state(),
                                           self.checkpoint_loader))

    def decode(self, x: Tensor, lengths: Tensor, beam_size: int | None = None,
               alone: bool = False) -> list[list[str]]:
        """Output tokens for a padded batch: greedy for beam 1, beam search otherwise;
        with the ensemble members unless ``alone`` (validation watches this model only)."""
        beam = self.beam_size if beam_size is None else beam_size
        if beam < 1:
            raise ConfigError(f"beam size must be at least 1, got {beam}.")
        if self._members and not alone:
            members = [m.to(x.device) for m in self._members]
            ids = beam_search(Ensemble([self.model, *members]), x, lengths, beam,
                              self.max_decode_len, self.length_penalty)
        elif beam == 1:
            ids, _ = self.model.greedy(x, lengths, self.max_decode_len)
        else:
            ids = self.model.beam_search(x, lengths, beam, self.max_decode_len,
                                         self.length_penalty)
        return [self.tokens(row) for row in ids]

    def score(self, hyps: Hyps, refs: Refs) -> dict[str, float]:
        return self.scorer.corpus(hyps, refs, self.has_stress)

    # ---- steps --------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        ratio = self.teacher_forcing_ratio()
        loss = self._loss(batch, ratio)
        n = len(batch["lengths"])
        self.log_train_loss(loss, n)
        self.log("train/teacher_forcing", ratio, on_step=False, on_epoch=True, batch_size=n)
        return loss

    def evaluate(self, batch: dict, batch_idx: int, split: str) -> dict[str, Any]:
        """Loss, decoded outputs (with their single-process position) and, on test, the
        first heat maps; nothing is scored until the epoch end has every rank's outputs."""
        loss = self._loss(batch, 1.0)
        test = split == "test"
        hyps = self.decode(batch["x"], batch["lengths"], beam_size=None if test else 1,
                           alone=not test)
        where = self.eval_position(batch_idx)
        self._outputs[split].extend(((where, i), hyp, refs, src) for i, (hyp, refs, src) in
                                    enumerate(zip(hyps, batch["refs"], batch["src_tokens"],
                                                  strict=True)))
        if test and len(self._heatmaps) < self.num_heatmaps and self.model.attention is not None:
            ids, weights = self.model.greedy(batch["x"][:1], batch["lengths"][:1],
                                             self.max_decode_len)
            out = self.tokens(ids[0]) + ["</s>"]
            src = batch["src_tokens"][0]
            self._heatmaps.append((where, weights[0, : len(out), : len(src)].cpu().numpy(),
                                   src, out))
        return {"loss": (loss, len(batch["lengths"])), "hyps": hyps}

    def prediction_rows(self, batch: dict, out: dict[str, Any],
                        ids: list[int] | None) -> list[dict[str, Any]]:
        """One row per example with the scorer's columns (a word's edits, a sentence's
        BLEU statistics)."""
        return [{"input": self.joiner.join(src),
                 "gold": " | ".join(" ".join(r) for r in variants),
                 "prediction": " ".join(hyp), **self.scorer.row(hyp, variants)}
                for hyp, variants, src in zip(out["hyps"], batch["refs"], batch["src_tokens"],
                                              strict=True)]

    def _gathered(self, split: str) -> list[tuple[list[str], list[list[str]], list[str]]]:
        """(hypothesis, references, source) of every rank, in single-process order."""
        outputs, self._outputs[split] = self._outputs[split], []
        merged = sorted((o for part in gather_objects(outputs) for o in part),
                        key=lambda o: o[0])
        return [(hyp, refs, src) for _, hyp, refs, src in merged]

    def epoch_values(self, split: str) -> dict[str, Any]:
        """Score the gathered outputs (WER/PER or BLEU/chrF are corpus-level: computed
        once over all examples, never averaged over ranks); nothing without outputs."""
        outputs = self._gathered(split)
        loss = self.mean(split, "loss")
        if split == "test":
            self.test_outputs = outputs
        if not outputs:
            return {}
        scores = self.score([h for h, _, _ in outputs], [r for _, r, _ in outputs])
        return {"loss": loss, **scores}

    def on_test_epoch_start(self) -> None:
        self._heatmaps = []

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        outputs, self.test_outputs = self.test_outputs, []
        heatmaps = sorted((h for part in gather_objects(self._heatmaps) for h in part),
                          key=lambda h: h[0])[: self.num_heatmaps]
        if not outputs:
            return
        step = max(1, len(outputs) // max(1, self.num_examples))
        lines = ["source\tprediction\treference(s)\tcorrect"]
        for hyp, refs, src in outputs[::step][: self.num_examples]:
            lines.append(f"{self.joiner.join(src)}\t{' '.join(hyp)}\t"
                         f"{' | '.join(' '.join(r) for r in refs)}\t{hyp in refs}")
        log_text(self.trainer, "\n".join(lines) + "\n", "examples/test_examples.tsv")
        for i, (_, weights, src, out) in enumerate(heatmaps):
            log_figure(self.trainer, attention_figure(weights, src, out),
                       f"plots/attention_test_{i}.png")
