"""Word tokenization: small, dependency-free and the same for every model and baseline."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|n't|[^\sa-z0-9]", re.IGNORECASE)


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Split words, keep clitics ("it's", "don't" -> "don", "'t"), punctuation as tokens."""
    if lowercase:
        text = text.lower()
    return _TOKEN.findall(text)
