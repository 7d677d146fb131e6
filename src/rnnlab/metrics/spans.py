"""Entity-level precision / recall / F1 over IOB2 tag sequences (the CoNLL measure).

An entity counts as found only if a predicted span has exactly the gold span's start,
end and type ("strict": no credit for overlap). Spans are read the way ``conlleval``
reads them, so numbers compare with the literature: ``B-X`` opens an entity, ``I-X``
extends an open ``X`` entity, and an ``I-X`` that follows ``O`` or another type opens a
new one (a softmax head can emit such sequences; the CRF head cannot).
Scores are micro-averaged over all entities; per-type scores come with them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from rnnlab.core.dist import gather_objects

Span = tuple[str, int, int]  # (type, start, end) with end exclusive


def bio_spans(tags: Sequence[str]) -> list[Span]:
    """The entities of one IOB2 sequence, conlleval-style."""
    spans: list[Span] = []
    typ: str | None = None
    start = 0
    for i, tag in enumerate(tags):
        kind, cur = (tag[0], tag[2:]) if tag != "O" and len(tag) > 2 and tag[1] == "-" else ("O", None)
        if typ is not None and (kind != "I" or cur != typ):
            spans.append((typ, start, i))
            typ = None
        if kind in ("B", "I") and typ is None:
            typ, start = cur, i
    if typ is not None:
        spans.append((typ, start, len(tags)))
    return spans


def prf(tp: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    """Precision, recall, F1 with the 0/0 = 0 convention."""
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


@dataclass
class SpanScorer:
    """Accumulates gold / predicted tag sequences; :meth:`compute` gives the scores."""

    tp: Counter = field(default_factory=Counter)
    pred: Counter = field(default_factory=Counter)
    gold: Counter = field(default_factory=Counter)
    tokens: int = 0
    correct_tokens: int = 0

    def update(self, gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> None:
        for g, p in zip(gold, pred, strict=True):
            if len(g) != len(p):
                raise ValueError(f"gold has {len(g)} tags and prediction {len(p)}")
            gs, ps = set(bio_spans(g)), set(bio_spans(p))
            self.gold.update(t for t, _, _ in gs)
            self.pred.update(t for t, _, _ in ps)
            self.tp.update(t for t, _, _ in gs & ps)
            self.tokens += len(g)
            self.correct_tokens += sum(a == b for a, b in zip(g, p, strict=True))

    def merge(self, other: SpanScorer) -> SpanScorer:
        """Add ``other``'s counts to this scorer (scores of the union of both inputs)."""
        self.tp.update(other.tp)
        self.pred.update(other.pred)
        self.gold.update(other.gold)
        self.tokens += other.tokens
        self.correct_tokens += other.correct_tokens
        return self

    def reduced(self) -> SpanScorer:
        """A new scorer holding the counts of every data-parallel rank (a collective: all
        ranks call it). F1 is not a mean of per-rank F1s, so the counts are merged, not the
        scores; in one process this is a copy."""
        total = SpanScorer()
        for part in gather_objects(self):
            total.merge(part)
        return total

    def reset(self) -> None:
        self.tp.clear()
        self.pred.clear()
        self.gold.clear()
        self.tokens = self.correct_tokens = 0

    def types(self) -> list[str]:
        return sorted(set(self.gold) | set(self.pred))

    def compute(self) -> dict[str, float]:
        """``precision``, ``recall``, ``f1`` (micro), ``acc`` (token accuracy), ``f1_<TYPE>``."""
        p, r, f = prf(sum(self.tp.values()), sum(self.pred.values()), sum(self.gold.values()))
        out = {"precision": p, "recall": r, "f1": f,
               "acc": self.correct_tokens / self.tokens if self.tokens else 0.0}
        for t in self.types():
            out[f"f1_{t}"] = prf(self.tp[t], self.pred[t], self.gold[t])[2]
        return out

    def table(self) -> str:
        """A plain-text per-type table (the MLflow artifact)."""
        rows = [f"{'type':<16}{'precision':>10}{'recall':>10}{'f1':>10}{'gold':>8}{'pred':>8}"]
        for t in self.types():
            p, r, f = prf(self.tp[t], self.pred[t], self.gold[t])
            rows.append(f"{t:<16}{p:>10.4f}{r:>10.4f}{f:>10.4f}{self.gold[t]:>8}{self.pred[t]:>8}")
        p, r, f = prf(sum(self.tp.values()), sum(self.pred.values()), sum(self.gold.values()))
        rows.append(f"{'micro':<16}{p:>10.4f}{r:>10.4f}{f:>10.4f}{sum(self.gold.values()):>8}"
                    f"{sum(self.pred.values()):>8}")
        acc = self.correct_tokens / self.tokens if self.tokens else 0.0
        rows.append(f"token accuracy {acc:.4f} over {self.tokens} tokens")
        return "\n".join(rows) + "\n"


def format_tagged(tokens: Sequence[str], tags: Sequence[str], gold: Sequence[str] | None = None,
                  joiner: str = " ") -> str:
    """A sentence with its entities bracketed, e.g. ``[PER John Smith] lives in [LOC Paris]``."""
    def render(seq: Sequence[str]) -> str:
        starts = {s: (t, e) for t, s, e in bio_spans(seq)}
        parts, i = [], 0
        while i < len(tokens):
            if i in starts:
                typ, end = starts[i]
                parts.append(f"[{typ} {joiner.join(tokens[i:end])}]")
                i = end
            else:
                parts.append(tokens[i])
                i += 1
        return joiner.join(parts)

    text = "pred: " + render(tags)
    return text if gold is None else text + "\ngold: " + render(gold)
