"""The CoNLL reader: the three tag schemes, -DOCSTART-, columns, and its error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from rnnlab.core.errors import DataError
from rnnlab.data.conll import parse_conll, read_conll, read_prepared, to_iob2, write_conll

# CoNLL-2003 English as distributed: 4 columns, IOB1, -DOCSTART- documents
CONLL03 = """-DOCSTART- -X- -X- O

EU NNP B-NP I-ORG
rejects VBZ B-VP O
German JJ B-NP I-MISC
call NN I-NP O
. . O O

Peter NNP B-NP I-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

In IN B-PP O
Paris NNP B-NP I-LOC
Berlin NNP I-NP B-LOC
"""


def test_conll2003_iob1_four_columns(tmp_path: Path) -> None:
    path = tmp_path / "eng.train"
    path.write_text(CONLL03)
    sents, scheme = read_conll(path)
    assert scheme == "IOB1"
    assert [s.tokens for s in sents] == [["EU", "rejects", "German", "call", "."],
                                         ["Peter", "Blackburn"], ["In", "Paris", "Berlin"]]
    assert sents[0].tags == ["B-ORG", "O", "B-MISC", "O", "O"]
    assert sents[1].tags == ["B-PER", "I-PER"]
    assert sents[2].tags == ["O", "B-LOC", "B-LOC"]  # B- separates two adjacent LOCs
    assert sents[0].line == 3 and sents[2].line == 14


def test_iob2_tab_columns_and_tag_column(tmp_path: Path) -> None:
    text = "New York\tNNP\tB-LOC\ncity\tNN\tO\n\nAnn\tNNP\tB-PER\n"
    sents, scheme = parse_conll(text, "x")
    assert scheme == "IOB2" and sents[0].tokens == ["New York", "city"]
    sents, _ = parse_conll("a B-PER X\nb I-PER Y\n", "x", tag_column=1)
    assert sents[0].tags == ["B-PER", "I-PER"]


def test_bioes_converted_to_iob2() -> None:
    text = "Ann S-PER\nin O\nNew B-LOC\nYork I-LOC\nCity E-LOC\n"
    sents, scheme = parse_conll(text, "x")
    assert scheme == "BIOES"
    assert sents[0].tags == ["B-PER", "O", "B-LOC", "I-LOC", "I-LOC"]
    assert to_iob2(["U-PER", "B-LOC", "L-LOC"], "BIOES") == ["B-PER", "B-LOC", "I-LOC"]


def test_prepared_round_trip(tmp_path: Path) -> None:
    sents, _ = parse_conll(CONLL03, "x")
    (tmp_path / "p.txt").write_text(write_conll(sents))
    back = read_prepared(tmp_path / "p.txt")
    assert [(s.tokens, s.tags) for s in back] == [(s.tokens, s.tags) for s in sents]


@pytest.mark.parametrize(("content", "message"), [
    ("a B-PER\nb c I-PER\n", r"f\.txt, line 2: 3 columns where line 1 has 2"),
    ("a\tO\n\tB-PER\n", r"f\.txt, line 2: the token is empty"),
    ("a O\nlonely\n", r"f\.txt, line 2: expected a token and a tag"),
    ("a O\nb PER\n", r"f\.txt, line 2: tag 'PER' is not O or B-/I-/E-/S-<type>"),
    ("a B-PER\nb LOC\n", r"f\.txt, line 2: tag 'LOC' has no B-/I- prefix .* mixes tag schemes"),
    ("a S-PER\n\nb O\nc I-LOC\n", r"f\.txt, line 4: 'I-LOC' does not continue .* mixes tag"),
    ("", r"f\.txt holds no tagged sentences"),
    ("-DOCSTART- O\n\n\n", r"f\.txt holds no tagged sentences"),
    ("a O\n", r"f\.txt, line 1: task.data.tag_column=5 is outside"),
])
def test_bad_files_name_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "f.txt"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_conll(path, tag_column=5 if "tag_column" in message else None)


def test_non_utf8_names_line(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(b"a O\n\nb\xff\xfe B-PER\n")
    with pytest.raises(DataError, match=r"f\.txt, line 3: the file is not valid UTF-8"):
        read_conll(path)
