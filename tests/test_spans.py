"""Entity-level span metric against hand-worked examples."""

from __future__ import annotations

import pytest

from rnnlab.metrics.spans import SpanScorer, bio_spans, format_tagged, prf


def test_spans_of_iob2_sequences() -> None:
    tags = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "O", "B-ORG"]
    assert bio_spans(tags) == [("PER", 0, 2), ("LOC", 3, 4), ("LOC", 4, 6), ("ORG", 7, 8)]
    assert bio_spans(["O", "O"]) == []
    assert bio_spans([]) == []


def test_stray_inside_tags_open_an_entity_like_conlleval() -> None:
    assert bio_spans(["O", "I-PER", "I-PER"]) == [("PER", 1, 3)]
    assert bio_spans(["B-PER", "I-LOC", "I-LOC"]) == [("PER", 0, 1), ("LOC", 1, 3)]


def test_micro_scores_hand_worked() -> None:
    # gold: PER(0,2) LOC(3,4) | ORG(0,3)
    # pred: PER(0,2) LOC(3,5) [boundary wrong] | ORG(0,3) PER(4,5) [spurious]
    gold = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-ORG", "I-ORG", "I-ORG", "O", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC"], ["B-ORG", "I-ORG", "I-ORG", "O", "B-PER"]]
    s = SpanScorer()
    s.update(gold, pred)
    out = s.compute()
    # tp=2 (PER, ORG), predicted 4, gold 3
    assert out["precision"] == pytest.approx(2 / 4)
    assert out["recall"] == pytest.approx(2 / 3)
    assert out["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    # PER: tp 1, pred 2, gold 1 -> p .5 r 1 f 2/3; LOC: 0; ORG: 1
    assert out["f1_PER"] == pytest.approx(2 / 3)
    assert out["f1_LOC"] == 0.0 and out["f1_ORG"] == 1.0
    assert out["acc"] == pytest.approx(8 / 10)
    table = s.table()
    assert "PER" in table and "micro" in table


def test_type_must_match_and_empty_cases() -> None:
    s = SpanScorer()
    s.update([["B-PER", "I-PER"]], [["B-LOC", "I-LOC"]])
    assert s.compute()["f1"] == 0.0
    assert prf(0, 0, 0) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        s.update([["O"]], [["O", "O"]])


def test_format_tagged_brackets_entities() -> None:
    text = format_tagged(["John", "lives", "in", "New", "York"],
                         ["B-PER", "O", "O", "B-LOC", "I-LOC"])
    assert text == "pred: [PER John] lives in [LOC New York]"
