"""rnnlab.report.stats: metrics from per-example statistics, intervals and tests on known cases."""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest
import torch

from rnnlab.report.stats import (
    align,
    average_ranks,
    bootstrap_interval,
    cd_diagram,
    cliques,
    friedman,
    metric_value,
    nemenyi_cd,
    randomisation_test,
    t_interval,
)

ACC = {"kind": "mean", "column": "score"}


def _correct(n: int, share: float, seed: int = 0) -> np.ndarray:
    """0/1 outcomes with exactly round(share * n) ones, in random order."""
    x = np.zeros(n)
    x[: round(share * n)] = 1
    np.random.default_rng(seed).shuffle(x)
    return x


def test_span_f1_from_sentence_counts_equals_the_scorer() -> None:
    from rnnlab.metrics.spans import SpanScorer
    from rnnlab.tasks.tagging import PREDICTION_METRICS, sentence_counts

    rng = random.Random(0)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    gold = [[rng.choice(tags) for _ in range(rng.randint(1, 12))] for _ in range(200)]
    pred = [[t if rng.random() < 0.8 else rng.choice(tags) for t in g] for g in gold]
    scorer = SpanScorer()
    scorer.update(gold, pred)
    expected = scorer.compute()
    table = pd.DataFrame([sentence_counts(g, p) for g, p in zip(gold, pred, strict=True)])
    for name, spec in PREDICTION_METRICS.items():
        assert metric_value(table, spec) == pytest.approx(expected[name.split("/")[1]]), name


def test_corpus_bleu_from_sentence_statistics_equals_sacrebleu() -> None:
    from rnnlab.metrics.seq2seq import translation_scores
    from rnnlab.tasks.seq2seq import sentence_bleu_stats

    rng = random.Random(1)
    words = ["le", "chat", "chien", "voit", "mange", "oiseau", "gros", "petit", "rouge", "un"]
    refs = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 9))) for _ in range(60)]
    hyps = [" ".join(w if rng.random() < 0.7 else rng.choice(words) for w in r.split())
            for r in refs]
    table = pd.DataFrame([sentence_bleu_stats(h, r) for h, r in zip(hyps, refs, strict=True)])
    expected = translation_scores(hyps, refs)["bleu"]
    assert 5 < expected < 95
    assert metric_value(table, {"kind": "bleu"}) == pytest.approx(expected)


def test_macro_f1_equals_torchmetrics() -> None:
    from rnnlab.metrics.classification import classification_metrics

    rng = np.random.default_rng(2)
    gold = rng.integers(0, 4, 300)
    pred = np.where(rng.random(300) < 0.6, gold, rng.integers(0, 4, 300))
    pred[pred == 3] = 2  # a class that is never predicted
    expected = classification_metrics(4)(torch.as_tensor(pred), torch.as_tensor(gold))
    table = pd.DataFrame({"gold": gold.astype(str), "prediction": pred.astype(str)})
    assert metric_value(table, {"kind": "macro_f1"}) == pytest.approx(float(expected["f1"]))


def test_bootstrap_interval_matches_the_binomial_standard_error() -> None:
    table = pd.DataFrame({"score": _correct(1275, 0.77)})
    ci = bootstrap_interval(table, ACC, n_boot=2000)
    se = math.sqrt(0.77 * 0.23 / 1275)  # the "±1.2 points on 1,275 snippets"
    assert ci.value == pytest.approx(0.77, abs=1e-3) and ci.n == 1275
    assert ci.low < ci.value < ci.high
    assert (ci.high - ci.low) / 2 == pytest.approx(1.96 * se, rel=0.12)


def test_span_f1_interval_resamples_sentences() -> None:
    """Sentences with many entities weigh more: the interval comes from summed counts."""
    rng = np.random.default_rng(3)
    tp = rng.integers(0, 5, 400)
    table = pd.DataFrame({"tp": tp, "fp": rng.integers(0, 2, 400), "fn": rng.integers(0, 2, 400)})
    spec = {"kind": "f1"}
    ci = bootstrap_interval(table, spec)
    assert ci.value == pytest.approx(2 * tp.sum() / (2 * tp.sum() + table.fp.sum() + table.fn.sum()))
    assert ci.low < ci.value < ci.high and ci.high - ci.low < 0.1


def test_randomisation_test_on_planted_differences() -> None:
    base = _correct(500, 0.80, seed=4)
    worse = base.copy()
    worse[np.flatnonzero(base)[:50]] = 0  # ten points worse on the same examples
    close = base.copy()
    close[np.flatnonzero(base)[:2]] = 0  # two examples worse, one better
    close[np.flatnonzero(base == 0)[:1]] = 1
    a = pd.DataFrame({"score": base})
    big = randomisation_test(a, pd.DataFrame({"score": worse}), ACC, n_shuffles=2000)
    assert big.difference == pytest.approx(0.10) and big.p_value < 0.001
    small = randomisation_test(a, pd.DataFrame({"score": close}), ACC, n_shuffles=2000)
    assert small.difference == pytest.approx(0.002) and small.p_value > 0.5
    same = randomisation_test(a, a, ACC, n_shuffles=200)
    assert same.p_value == 1.0


def test_align_pairs_rows_by_example() -> None:
    a = pd.DataFrame({"example": [3, 1, 2], "score": [1.0, 0.0, 1.0]})
    b = pd.DataFrame({"example": [1, 2, 4], "score": [1.0, 1.0, 0.0]})
    ra, rb, dropped = align(a, b)
    assert list(ra["example"]) == list(rb["example"]) == [1, 2] and dropped == 2
    assert list(ra["score"]) == [0.0, 1.0] and list(rb["score"]) == [1.0, 1.0]


def test_t_interval_over_seeds() -> None:
    ci = t_interval([0.78, 0.80, 0.79])
    half = 4.302652729911275 * 0.01 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert ci.value == pytest.approx(0.79) and ci.high - ci.value == pytest.approx(half)
    assert t_interval([0.8]) is None


def test_friedman_and_nemenyi_match_demsar() -> None:
    from scipy.stats import friedmanchisquare

    assert nemenyi_cd(4, 14) == pytest.approx(1.25, abs=0.005)  # Demšar 2006, section 3.2.2
    assert nemenyi_cd(3, 5) == pytest.approx(2.343 * math.sqrt(12 / 30), abs=1e-3)
    rng = np.random.default_rng(5)
    scores = rng.random((8, 4)) + np.array([0.3, 0.2, 0.0, 0.1])
    ranks = average_ranks(scores, [True] * 8)
    fr = friedman(ranks)
    assert fr.statistic == pytest.approx(friedmanchisquare(*scores.T).statistic)
    assert fr.p_value == pytest.approx(friedmanchisquare(*scores.T).pvalue)
    lower_better = average_ranks(-scores, [False] * 8)
    assert np.array_equal(lower_better, ranks)


def test_cliques_and_cd_diagram() -> None:
    names = ["a", "b", "c", "d"]
    groups = cliques(names, [1.0, 1.5, 3.2, 3.6], cd=1.0)
    assert groups == [["a", "b"], ["c", "d"]]
    fig = cd_diagram(names, [1.0, 1.5, 3.2, 3.6], 1.0, "test")
    assert len(fig.axes[0].texts) >= 6  # tick labels, CD label, model names
