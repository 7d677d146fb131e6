"""Decoding and scoring connectionist temporal classification (CTC; Graves et al. 2006).

A CTC model emits, per frame, a distribution over the alphabet plus a *blank* (id 0 here).
A path (one symbol per frame) maps to a labelling by merging repeats and then dropping
blanks; the probability of a labelling is the sum over all its paths.

* :func:`greedy_decode`: the single most probable path, collapsed (best-path decoding).
  Fast, and what validation uses.
* :func:`prefix_beam_search`: keeps the ``beam_size`` most probable *labellings* (prefixes),
  each with the probability of its paths ending in blank and in its last symbol, so many
  paths of one labelling add up instead of competing (Hannun et al. 2014, without a
  language model). With a beam as large as the number of prefixes it is exact.
* :func:`brute_force_decode`: every path enumerated; for the tests on tiny inputs only.

Scores: the label error rate is the edit distance over symbols summed over examples
divided by the summed reference lengths (so it is exact under DDP when both sums are
reduced), and sequence accuracy is the share of examples decoded without an error.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from torch import Tensor

from rnnlab.metrics.seq2seq import edit_distance

BLANK = 0
NEG_INF = -math.inf

__all__ = ["BLANK", "beam_decode", "brute_force_decode", "collapse", "edit_counts",
           "edit_distance", "greedy_decode", "prefix_beam_search"]


def collapse(path: Sequence[int], blank: int = BLANK) -> list[int]:
    """The labelling of a path: repeats merged, then blanks dropped."""
    out: list[int] = []
    prev = None
    for s in path:
        if s != prev and s != blank:
            out.append(int(s))
        prev = s
    return out


def greedy_decode(log_probs: Tensor, lengths: Tensor, blank: int = BLANK) -> list[list[int]]:
    """Best-path decoding of a batch: ``log_probs`` (B, T, C), ``lengths`` (B,) real frames."""
    best = log_probs.argmax(-1).tolist()
    return [collapse(row[:n], blank) for row, n in zip(best, lengths.tolist(), strict=True)]


def _logadd(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    hi, lo = (a, b) if a > b else (b, a)
    return hi + math.log1p(math.exp(lo - hi))


def prefix_beam_search(log_probs: Tensor | np.ndarray, beam_size: int,
                       blank: int = BLANK) -> tuple[list[int], float]:
    """The most probable labelling of one utterance's (T, C) log-probabilities found by CTC
    prefix beam search, and its log-probability (exact while no prefix was pruned).

    Each prefix carries ``(p_blank, p_symbol)``: the log-probabilities of its paths that end
    in blank and in its last symbol. Repeating the last symbol extends the prefix only after a
    blank; otherwise it stays the same labelling."""
    lp = log_probs.detach().float().cpu().numpy() if isinstance(log_probs, Tensor) \
        else np.asarray(log_probs, dtype=np.float64)
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}
    for frame in lp.tolist():
        nxt: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [NEG_INF, NEG_INF])
        for prefix, (pb, ps) in beams.items():
            total = _logadd(pb, ps)
            # blank: the labelling stays, now ending in blank
            entry = nxt[prefix]
            entry[0] = _logadd(entry[0], total + frame[blank])
            last = prefix[-1] if prefix else None
            for c, lc in enumerate(frame):
                if c == blank:
                    continue
                if c == last:
                    # the repeated symbol without a blank between merges into the prefix ...
                    entry[1] = _logadd(entry[1], ps + lc)
                    # ... and after a blank it is a new symbol
                    ext = nxt[(*prefix, c)]
                    ext[1] = _logadd(ext[1], pb + lc)
                else:
                    ext = nxt[(*prefix, c)]
                    ext[1] = _logadd(ext[1], total + lc)
        ranked = sorted(nxt.items(), key=lambda kv: _logadd(*kv[1]), reverse=True)
        beams = {k: (v[0], v[1]) for k, v in ranked[:beam_size]}
    best, (pb, ps) = max(beams.items(), key=lambda kv: _logadd(*kv[1]))
    return list(best), _logadd(pb, ps)


def beam_decode(log_probs: Tensor, lengths: Tensor, beam_size: int,
                blank: int = BLANK) -> list[list[int]]:
    """Prefix beam search for each utterance of a batch (``beam_size`` 1 or more)."""
    lp = log_probs.detach().float().cpu()
    return [prefix_beam_search(lp[i, :n], beam_size, blank)[0]
            for i, n in enumerate(lengths.tolist())]


def brute_force_decode(log_probs: Tensor | np.ndarray, blank: int = BLANK
                       ) -> tuple[list[int], float, list[int]]:
    """Every path of a tiny (T, C) input enumerated: the most probable labelling, its
    log-probability, and the collapsed best path. C ** T paths: tests only."""
    lp = np.asarray(log_probs.detach().double().cpu().numpy() if isinstance(log_probs, Tensor)
                    else log_probs, dtype=np.float64)
    steps, classes = lp.shape
    totals: dict[tuple[int, ...], float] = defaultdict(lambda: NEG_INF)
    best_path, best_path_score = None, NEG_INF
    for path in itertools.product(range(classes), repeat=steps):
        score = float(lp[np.arange(steps), list(path)].sum())
        label = tuple(collapse(path, blank))
        totals[label] = _logadd(totals[label], score)
        if score > best_path_score:
            best_path, best_path_score = path, score
    label, score = max(totals.items(), key=lambda kv: kv[1])
    return list(label), score, collapse(best_path or (), blank)


def edit_counts(hyps: Sequence[Sequence[int]], refs: Sequence[Sequence[int]]
                ) -> tuple[list[int], list[int]]:
    """Per example: symbol edits of the hypothesis against the reference, and the
    reference length (the label error rate is sum(edits) / sum(lengths))."""
    edits = [edit_distance([str(s) for s in h], [str(s) for s in r])
             for h, r in zip(hyps, refs, strict=True)]
    return edits, [len(r) for r in refs]
