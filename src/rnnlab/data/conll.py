"""Reading CoNLL-style tagged files: one token per line, tag in a column, blank lines between
sentences.

The same reader serves the built-in corpora (MSRA, WNUT-16) and the user's own files, so
every mistake in a file is reported the same way: one sentence with the file and line.
Three tag schemes are accepted and converted to IOB2 (BIO), the one the models, the CRF
constraints and the span metric use:

* IOB2 / BIO: every entity starts with ``B-``.
* IOB1 (original CoNLL-2003 English): ``I-`` starts an entity, ``B-`` only separates two
  adjacent entities of the same type. An ``I-X`` that does not continue an ``X`` becomes
  ``B-X``; since that rewrite leaves valid IOB2 untouched, IOB1 and IOB2 share one path.
* BIOES (also read as BILOU): ``S-`` -> ``B-``, ``E-`` -> ``I-`` after checking that every
  ``I-``/``E-`` continues an entity of its type (otherwise the file mixes schemes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from rnnlab.core.errors import DataError
from rnnlab.data.tables import read_text_file

TAG_RE = re.compile(r"^([BIESLU])-(\S+)$")


@dataclass
class Sentence:
    """Tokens and their IOB2 tags; ``line`` is where the sentence starts (for messages)."""

    tokens: list[str]
    tags: list[str]
    line: int = 0
    lines: list[int] = field(default_factory=list, repr=False)


def _parse(text: str, label: str, tag_column: int | None) -> list[Sentence]:
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    lines: list[int] = []
    width: tuple[int, int] | None = None  # (column count, first line with that count)
    col = -1 if tag_column is None else int(tag_column)

    def flush() -> None:
        if tokens:
            sentences.append(Sentence(list(tokens), list(tags), lines[0], list(lines)))
        tokens.clear()
        tags.clear()
        lines.clear()

    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw or raw.isspace():
            flush()
            continue
        if raw.startswith("-DOCSTART-") or (raw[0].isspace() and raw.lstrip().startswith("-DOCSTART-")):
            flush()
            continue
        if "\t" in raw:  # tab-separated: a token may contain spaces
            cols = raw.split("\t")
            if not cols[-1]:
                cols = raw.rstrip("\t").split("\t")
        else:
            cols = raw.split()
        if len(cols) < 2:
            raise DataError(f"{label}, line {number}: expected a token and a tag separated by "
                            f"whitespace, found {raw.strip()[:40]!r}; every non-blank line needs "
                            f"both.")
        if width is None:
            width = (len(cols), number)
            if not -len(cols) <= col < len(cols):
                raise DataError(f"{label}, line {number}: task.data.tag_column={col} is outside "
                                f"the {len(cols)} columns of the file; give a column index in "
                                f"range.")
        elif len(cols) != width[0]:
            raise DataError(f"{label}, line {number}: {len(cols)} columns where line {width[1]} "
                            f"has {width[0]}; every token line must have the same columns.")
        token, tag = cols[0].strip(), cols[col].strip()
        if not token:
            raise DataError(f"{label}, line {number}: the token is empty; remove the line or "
                            f"give the token.")
        if not tag:
            raise DataError(f"{label}, line {number}: the tag is empty; every token needs a tag.")
        tokens.append(token)
        tags.append(tag)
        lines.append(number)
    flush()
    if not sentences:
        raise DataError(f"{label} holds no tagged sentences; give a file with one 'token tag' "
                        f"line per token and blank lines between sentences.")
    return sentences


def detect_scheme(sentences: list[Sentence], label: str) -> str:
    """IOB1, IOB2 or BIOES, or a DataError naming the first tag that fits none (or mixes)."""
    bare = prefixed = None  # (tag, line) of the first plain label / prefixed tag seen
    bioes = iob1 = False
    for sent in sentences:
        prev = "O"
        for tag, line in zip(sent.tags, sent.lines, strict=True):
            if tag == "O":
                prev = tag
                continue
            m = TAG_RE.match(tag)
            if m is None:
                bare = bare or (tag, line)
            else:
                prefixed = prefixed or (tag, line)
                kind, typ = m.groups()
                if kind in "ESLU":
                    bioes = True
                elif kind == "I" and prev[2:] != typ:
                    iob1 = True
            prev = tag
    if bare and prefixed:
        raise DataError(f"{label}, line {bare[1]}: tag {bare[0]!r} has no B-/I- prefix while line "
                        f"{prefixed[1]} has {prefixed[0]!r}; the file mixes tag schemes, so use "
                        f"one (IOB1, IOB2/BIO or BIOES) throughout.")
    if bare:
        raise DataError(f"{label}, line {bare[1]}: tag {bare[0]!r} is not O or B-/I-/E-/S-<type>; "
                        f"the tag scheme is unknown, so convert the file to IOB1, IOB2/BIO or "
                        f"BIOES (or set task.data.tag_column if the tag is in another column).")
    if bioes:
        return "BIOES"
    return "IOB1" if iob1 else "IOB2"


def to_iob2(tags: list[str], scheme: str, label: str = "", lines: list[int] | None = None) -> list[str]:
    """Rewrite one sentence's tags from ``scheme`` into IOB2."""
    out: list[str] = []
    prev = "O"
    for i, tag in enumerate(tags):
        if tag == "O":
            out.append(tag)
            prev = tag
            continue
        kind, typ = tag[0], tag[2:]
        continues = prev != "O" and prev[0] in "BI" and prev[2:] == typ if scheme == "BIOES" \
            else prev != "O" and prev[2:] == typ
        if scheme == "BIOES":
            if kind in "IEL" and not continues:
                where = f"{label}, line {lines[i]}: " if lines else ""
                raise DataError(f"{where}{tag!r} does not continue a {typ} entity, which BIOES "
                                f"requires (the file uses S-/E- tags); the file mixes tag schemes, "
                                f"so use one scheme throughout.")
            out.append(f"B-{typ}" if kind in "BSU" else f"I-{typ}")
        else:
            out.append(f"I-{typ}" if kind == "I" and continues else f"B-{typ}" if kind in "BI"
                       else tag)
        prev = tag
    return out


def parse_conll(text: str, label: str, tag_column: int | None = None) -> tuple[list[Sentence], str]:
    """Sentences (tags converted to IOB2) and the scheme the text was written in."""
    sentences = _parse(text, label, tag_column)
    scheme = detect_scheme(sentences, label)
    if scheme != "IOB2":  # valid IOB2 is left unchanged by the rewrite: skip the work
        for sent in sentences:
            sent.tags = to_iob2(sent.tags, scheme, label, sent.lines)
    return sentences, scheme


def read_conll(path: str | Path, tag_column: int | None = None) -> tuple[list[Sentence], str]:
    """Read a user's CoNLL file (UTF-8); errors name the file and line."""
    return parse_conll(read_text_file(path), str(path), tag_column)


def read_prepared(path: str | Path) -> list[Sentence]:
    """Fast reader for files written by :func:`write_conll` (already checked, IOB2)."""
    text = Path(path).read_text(encoding="utf-8")
    out = []
    for block in text.split("\n\n"):
        if block.strip():
            tokens, tags = zip(*(ln.split("\t") for ln in block.strip("\n").split("\n")),
                               strict=True)
            out.append(Sentence(list(tokens), list(tags)))
    return out


def write_conll(sentences: list[Sentence]) -> str:
    """``token<TAB>tag`` lines with blank lines between sentences (prepared splits)."""
    return "".join("".join(f"{t}\t{g}\n" for t, g in zip(s.tokens, s.tags, strict=True)) + "\n"
                   for s in sentences)
