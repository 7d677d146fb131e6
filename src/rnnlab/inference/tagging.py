"""Raw text -> IOB2 tags with a trained tagger (``rnnlab-tag`` and the served tagger)."""

from __future__ import annotations

from typing import Any

from rnnlab.data.ner import SentenceEncoder


def split_text(text: str, char_level: bool) -> list[str]:
    return [c for c in text if not c.isspace()] if char_level else text.split()


def tag_sentences(module: Any, encoder: SentenceEncoder, sentences: list[list[str]],
                  batch_size: int = 64) -> list[list[str]]:
    """IOB2 tags for each non-empty tokenised sentence, encoded as in training (the
    checkpoint's :class:`SentenceEncoder`: vocabulary, lowercasing, token features)."""
    out: list[list[str]] = []
    for i in range(0, len(sentences), batch_size):
        out.extend(module.predict_tags(encoder.encode(sentences[i: i + batch_size])))
    return out
