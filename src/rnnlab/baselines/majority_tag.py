"""Most frequent tag per known token: the floor any tagger must clear.

Each token seen in training gets the tag it carried most often there (ties: the tag seen
first in the sorted tag list), every unknown token gets ``O``. It knows no context, so
multi-token entities come out right only when each of their tokens is unambiguous; the
gap to the networks measures what context buys.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from rnnlab.baselines.base import Baseline
from rnnlab.metrics.spans import SpanScorer, format_tagged
from rnnlab.tracking.artifacts import log_text


class MajorityTag(Baseline):
    families = ("tagging",)

    def __init__(self, num_examples: int = 8) -> None:
        self.num_examples = num_examples
        self.table: dict[str, str] = {}

    def fit(self, sentences: list[list[str]], tags: list[list[str]],
            lowercase: bool = False) -> MajorityTag:
        counts: dict[str, Counter] = defaultdict(Counter)
        for toks, tgs in zip(sentences, tags, strict=True):
            for tok, tag in zip(toks, tgs, strict=True):
                counts[tok.lower() if lowercase else tok][tag] += 1
        self.lowercase = lowercase
        self.table = {tok: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0]
                      for tok, c in counts.items()}
        return self

    def predict(self, sentences: list[list[str]]) -> list[list[str]]:
        low = getattr(self, "lowercase", False)
        return [[self.table.get(t.lower() if low else t, "O") for t in toks] for toks in sentences]

    def fit_evaluate(self, datamodule: Any, run: Any) -> dict[str, float]:
        self.fit(*datamodule.tagged("train"), lowercase=getattr(datamodule, "lowercase", False))
        metrics: dict[str, float] = {}
        for split in ("val", "test"):
            tokens, gold = datamodule.tagged(split)
            pred = self.predict(tokens)
            scorer = SpanScorer()
            scorer.update(gold, pred)
            scores = scorer.compute()
            metrics.update({f"{split}/{k}": v for k, v in scores.items()
                            if split == "test" or not k.startswith("f1_")})
        joiner = "" if datamodule.spec.char_level else " "
        examples = [format_tagged(t, p, g, joiner) for t, p, g in zip(tokens, pred, gold, strict=True)
                    if any(x != "O" for x in g)][: self.num_examples]
        log_text(run, "entity-level scores on test (majority_tag)\n" + scorer.table(),
                 "ner/test_per_type.txt")
        log_text(run, "\n\n".join(examples) + "\n", "ner/test_examples.txt")
        return metrics

    def num_parameters(self) -> int:
        return len(self.table)
