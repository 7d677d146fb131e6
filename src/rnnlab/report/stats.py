"""Is a difference larger than the noise? Intervals and tests for the comparison report.

Everything starts from a run's per-example predictions (``predictions/test.parquet``,
see :mod:`rnnlab.tracking.predictions`): each example carries the *sufficient
statistics* of the task's metric (correct 0/1; entity tp/fp/fn; edits and reference
length; BLEU n-gram matches and totals; nats and characters), and the corpus metric is a
function of their sums. So resampling examples and recomputing the metric from the
resampled sums is exact for every metric, including the ones that are not means (span F1,
corpus BLEU, PER): a sentence is resampled with all its entities or n-grams.

* :func:`bootstrap_interval`: the percentile bootstrap 95% interval of one run's metric
  (Efron & Tibshirani 1993), examples drawn with replacement.
* :func:`randomisation_test`: the paired approximate randomisation test (Noreen 1989;
  Riezler & Maxwell 2005) of two runs on the *same* test examples: under the null each
  example's two outputs are exchangeable, so their statistics are swapped at random and
  the metric difference recomputed; the p-value is the share of shuffles at least as
  extreme as the observed difference (with the +1 correction, so never 0).
* :func:`t_interval`: the Student t 95% interval of a mean over seeds.
* :func:`friedman` and :func:`nemenyi_cd`: the Friedman test over models' ranks across
  tasks and the Nemenyi critical difference (Demšar 2006), with :func:`cd_diagram`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import chi2, rankdata, studentized_range
from scipy.stats import t as student_t

from rnnlab.tracking.artifacts import plt

ALPHA = 0.05
N_BOOT = 1000
N_SHUFFLES = 2000
BLEU_ORDER = 4
_CHUNK_CELLS = 4_000_000  # replicates x examples per matrix product (memory bound)


class MetricSpec:
    """A metric as a function of per-example statistics: ``stats(table)`` gives the
    (n, k) matrix, ``from_sums`` maps the (r, k) column sums of r replicates to r values."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = dict(spec)
        self.kind = str(spec.get("kind"))
        if self.kind not in ("mean", "ratio", "f1", "precision", "recall", "macro_f1", "bleu"):
            raise ValueError(f"unknown metric kind {self.kind!r}")
        self.classes: list[str] = []

    def stats(self, table: Any) -> np.ndarray:
        s, col = self.spec, lambda c: np.asarray(table[c], dtype=np.float64)
        if self.kind == "mean":
            x = col(s["column"])
            return np.stack([x, np.ones_like(x)], axis=1)
        if self.kind == "ratio":
            return np.stack([col(s["num"]), col(s["den"])], axis=1)
        if self.kind in ("f1", "precision", "recall"):
            return np.stack([col(s.get("tp", "tp")), col(s.get("fp", "fp")),
                             col(s.get("fn", "fn"))], axis=1)
        if self.kind == "macro_f1":
            gold = np.asarray(table[s.get("gold", "gold")]).astype(str)
            pred = np.asarray(table[s.get("prediction", "prediction")]).astype(str)
            self.classes = sorted(set(gold) | set(pred))
            parts = []
            for c in self.classes:  # tp, fp, fn of each class
                parts += [(gold == c) & (pred == c), (gold != c) & (pred == c),
                          (gold == c) & (pred != c)]
            return np.stack(parts, axis=1).astype(np.float64)
        cols = ["bleu_sys_len", "bleu_ref_len",
                *(f"bleu_correct_{i}" for i in range(1, BLEU_ORDER + 1)),
                *(f"bleu_total_{i}" for i in range(1, BLEU_ORDER + 1))]
        return np.stack([col(c) for c in cols], axis=1)

    def from_sums(self, sums: np.ndarray) -> np.ndarray:
        sums = np.atleast_2d(np.asarray(sums, dtype=np.float64))
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.kind == "mean":
                return sums[:, 0] / sums[:, 1]
            if self.kind == "ratio":
                return float(self.spec.get("scale", 1.0)) * sums[:, 0] / np.maximum(sums[:, 1], 1e-300)
            tp, fp, fn = sums[:, 0], sums[:, 1], sums[:, 2]
            if self.kind == "f1":
                d = 2 * tp + fp + fn
                return np.where(d > 0, 2 * tp / np.where(d > 0, d, 1), 0.0)
            if self.kind == "precision":
                return np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-300), 0.0)
            if self.kind == "recall":
                return np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1e-300), 0.0)
            if self.kind == "macro_f1":
                k = sums.shape[1] // 3
                t = sums.reshape(len(sums), k, 3)
                d = 2 * t[..., 0] + t[..., 1] + t[..., 2]
                f1 = np.where(d > 0, 2 * t[..., 0] / np.where(d > 0, d, 1), 0.0)
                present = (d > 0).sum(1)  # classes never seen nor predicted do not count
                return np.where(present > 0, f1.sum(1) / np.maximum(present, 1), 0.0)
        return np.array([_bleu(row) for row in sums])


def _bleu(row: np.ndarray) -> float:
    """Corpus BLEU (sacrebleu's own formula and default exp smoothing) from summed stats."""
    # sacrebleu: only for seq2seq tasks
    from sacrebleu.metrics import BLEU

    sys_len, ref_len = int(round(row[0])), int(round(row[1]))
    correct = [int(round(v)) for v in row[2: 2 + BLEU_ORDER]]
    total = [int(round(v)) for v in row[2 + BLEU_ORDER: 2 + 2 * BLEU_ORDER]]
    return float(BLEU.compute_bleu(correct, total, sys_len, ref_len, smooth_method="exp").score)


def metric_value(table: Any, spec: Mapping[str, Any]) -> float:
    """The metric ``spec`` describes, computed from all rows of ``table``."""
    m = MetricSpec(spec)
    return float(m.from_sums(m.stats(table).sum(0, keepdims=True))[0])


def _resampled(stats: np.ndarray, fn: Callable[[np.ndarray], np.ndarray], n_boot: int,
               rng: np.random.Generator) -> np.ndarray:
    """``fn`` of the column sums of ``n_boot`` bootstrap resamples of the rows."""
    n = len(stats)
    out = []
    chunk = max(1, _CHUNK_CELLS // max(n, 1))
    for start in range(0, n_boot, chunk):
        r = min(chunk, n_boot - start)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=r).astype(np.float64)
        out.append(fn(counts @ stats))
    return np.concatenate(out)


@dataclass
class Interval:
    value: float
    low: float
    high: float
    n: int

    def text(self, spec: str = ".4f") -> str:
        return f"{self.value:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"


def bootstrap_interval(table: Any, spec: Mapping[str, Any], n_boot: int = N_BOOT,
                       alpha: float = ALPHA, seed: int = 0) -> Interval:
    """Percentile bootstrap interval of the metric, resampling examples (sentences)."""
    m = MetricSpec(spec)
    stats = m.stats(table)
    value = float(m.from_sums(stats.sum(0, keepdims=True))[0])
    if len(stats) < 2:
        return Interval(value, value, value, len(stats))
    reps = _resampled(stats, m.from_sums, n_boot, np.random.default_rng(seed))
    low, high = np.nanquantile(reps, [alpha / 2, 1 - alpha / 2])
    return Interval(value, float(low), float(high), len(stats))


@dataclass
class PairedTest:
    a: float
    b: float
    difference: float  # a - b
    p_value: float
    n: int


def randomisation_test(table_a: Any, table_b: Any, spec: Mapping[str, Any],
                       n_shuffles: int = N_SHUFFLES, seed: int = 0) -> PairedTest:
    """Paired approximate randomisation test of metric(a) - metric(b): the two tables
    hold the same examples in the same order (align them first, :func:`align`)."""
    m = MetricSpec(spec)
    if m.kind == "macro_f1":  # classes from both tables, so the columns line up
        both = pd.concat([pd.DataFrame({"gold": np.asarray(table_a[spec.get("gold", "gold")]),
                                        "prediction": np.asarray(table_a[spec.get("prediction", "prediction")])}),
                          pd.DataFrame({"gold": np.asarray(table_b[spec.get("gold", "gold")]),
                                        "prediction": np.asarray(table_b[spec.get("prediction", "prediction")])})])
        stats = m.stats(both)
        sa, sb = stats[: len(table_a)], stats[len(table_a):]
    else:
        sa, sb = m.stats(table_a), m.stats(table_b)
    if sa.shape != sb.shape:
        raise ValueError(f"paired tables differ in size ({len(sa)} and {len(sb)} examples)")
    total_a, total_b = sa.sum(0), sb.sum(0)
    a = float(m.from_sums(total_a[None])[0])
    b = float(m.from_sums(total_b[None])[0])
    observed = abs(a - b)
    diff = sb - sa
    n = len(sa)
    rng = np.random.default_rng(seed)
    extreme = 0
    chunk = max(1, _CHUNK_CELLS // max(n, 1))
    for start in range(0, n_shuffles, chunk):
        r = min(chunk, n_shuffles - start)
        swap = (rng.random((r, n)) < 0.5).astype(np.float64) @ diff
        da = m.from_sums(total_a[None] + swap) - m.from_sums(total_b[None] - swap)
        # a tolerance so that float noise in equal sums never counts as "less extreme"
        extreme += int(np.sum(np.abs(da) >= observed - 1e-12 * max(1.0, observed)))
    return PairedTest(a, b, a - b, (extreme + 1) / (n_shuffles + 1), n)


def align(table_a: Any, table_b: Any, key: str = "example") -> tuple[Any, Any, int]:
    """The rows of both tables that hold the same examples (by ``key``), in one order,
    and how many examples were left out because only one table has them."""
    ka, kb = list(table_a[key]), list(table_b[key])
    common = sorted(set(ka) & set(kb))
    ia = {k: i for i, k in enumerate(ka)}
    ib = {k: i for i, k in enumerate(kb)}
    a = table_a.iloc[[ia[k] for k in common]].reset_index(drop=True)
    b = table_b.iloc[[ib[k] for k in common]].reset_index(drop=True)
    return a, b, len(set(ka) | set(kb)) - len(common)


def t_interval(values: Sequence[float], alpha: float = ALPHA) -> Interval | None:
    """Mean and Student t interval over independent runs (seeds); None for fewer than 2."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if len(x) < 2:
        return None
    mean, sem = float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x)))
    half = float(student_t.ppf(1 - alpha / 2, len(x) - 1)) * sem
    return Interval(mean, mean - half, mean + half, len(x))


def average_ranks(scores: np.ndarray, maximise: Sequence[bool]) -> np.ndarray:
    """(tasks, models) scores -> ranks within each task (1 = best, ties averaged)."""
    out = np.empty_like(scores, dtype=np.float64)
    for i, row in enumerate(scores):
        out[i] = rankdata(-row if maximise[i] else row, method="average")
    return out


@dataclass
class Friedman:
    statistic: float
    p_value: float
    n_tasks: int
    n_models: int
    mean_ranks: np.ndarray
    cd: float


def friedman(ranks: np.ndarray, alpha: float = ALPHA) -> Friedman:
    """Friedman's chi-square over a (tasks, models) rank matrix (Demšar 2006, eq. 1)
    and the Nemenyi critical difference of the mean ranks."""
    n, k = ranks.shape
    r = ranks.mean(0)
    stat = 12 * n / (k * (k + 1)) * (float(np.sum(r ** 2)) - k * (k + 1) ** 2 / 4)
    p = float(chi2.sf(stat, k - 1)) if k > 1 else 1.0
    return Friedman(stat, p, n, k, r, nemenyi_cd(k, n, alpha))


def nemenyi_cd(k: int, n: int, alpha: float = ALPHA) -> float:
    """Critical difference of mean ranks: q_alpha sqrt(k(k+1) / 6N), with q_alpha the
    studentized range quantile over sqrt(2) (Demšar 2006, Table 5a)."""
    if k < 2 or n < 1:
        return float("nan")
    q = float(studentized_range.ppf(1 - alpha, k, np.inf)) / math.sqrt(2)
    return q * math.sqrt(k * (k + 1) / (6 * n))


def cliques(names: Sequence[str], mean_ranks: Sequence[float], cd: float) -> list[list[str]]:
    """Maximal groups of models (sorted by rank) whose mean ranks lie within ``cd``:
    no difference inside a group is significant."""
    order = sorted(range(len(names)), key=lambda i: mean_ranks[i])
    groups: list[list[int]] = []
    for i, start in enumerate(order):
        group = [j for j in order[i:] if mean_ranks[j] - mean_ranks[start] <= cd + 1e-12]
        if len(group) > 1 and not any(set(group) <= set(g) for g in groups):
            groups.append(group)
    return [[names[j] for j in g] for g in groups]


def cd_diagram(names: Sequence[str], mean_ranks: Sequence[float], cd: float, title: str = ""):
    """Demšar's critical-difference diagram: the rank axis, each model at its mean rank,
    the CD as a bar, and a thick line under each group that does not differ significantly."""
    k = len(names)
    order = sorted(range(k), key=lambda i: mean_ranks[i])
    half = (k + 1) // 2
    height = 1.2 + 0.32 * half
    fig, ax = plt.subplots(figsize=(7.5, height + 0.6))
    lo, hi = 1, max(k, 2)
    ax.set_xlim(lo - 0.6, hi + 0.6)
    ax.set_ylim(-height, 1.1)
    ax.axis("off")
    ax.hlines(0, lo, hi, color="black", lw=1)
    for t in range(lo, hi + 1):
        ax.vlines(t, 0, 0.08, color="black", lw=1)
        ax.text(t, 0.15, str(t), ha="center", va="bottom", fontsize=9)
    if math.isfinite(cd):
        ax.hlines(0.75, lo, lo + cd, color="black", lw=1.5)
        ax.vlines([lo, lo + cd], 0.68, 0.82, color="black", lw=1.5)
        ax.text(lo + cd / 2, 0.85, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=9)
    for pos, i in enumerate(order):
        left = pos < half
        row = pos if left else k - 1 - pos
        y = -0.35 - 0.32 * row
        x_end = lo - 0.45 if left else hi + 0.45
        ax.plot([mean_ranks[i], mean_ranks[i], x_end], [0, y, y], color="0.3", lw=0.9)
        ax.text(x_end + (-0.05 if left else 0.05), y, f"{names[i]} ({mean_ranks[i]:.2f})",
                ha="right" if left else "left", va="center", fontsize=9)
    for g, group in enumerate(cliques(list(names), list(mean_ranks), cd)):
        ranks = [mean_ranks[list(names).index(n)] for n in group]
        y = -0.18 - 0.1 * g
        ax.hlines(y, min(ranks) - 0.03, max(ranks) + 0.03, color="tab:red", lw=3)
    if title:
        ax.set_title(title, fontsize=10)
    return fig
