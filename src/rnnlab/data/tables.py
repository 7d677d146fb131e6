"""Reading the user's own CSV/TSV files with errors that name the file and line."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rnnlab.core.errors import DataError


def read_text_file(path: str | Path) -> str:
    """Read a UTF-8 file, or fail with the file name and the byte offset of the bad bytes."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a directory; give the path of a file inside it in the task's "
                        f"data settings.")
    if not path.is_file():
        raise DataError(f"{path} does not exist; check the path given in the task's data settings.")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: the file is not valid UTF-8; convert it "
                        f"(e.g. iconv -t UTF-8) and run again.") from err


def text_lines(text: str) -> list[str]:
    """The lines of ``text`` split at ``\\n``, ``\\r\\n`` or ``\\r`` only, as a CSV reader
    splits them: ``str.splitlines`` also splits at U+2028, U+0085 and other separators that
    are ordinary characters inside a field. A final line ending adds no empty line."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _missing(cell: str) -> bool:
    """An empty cell, or the ``NaN`` a spreadsheet or pandas writes for a missing value."""
    return cell.strip().lower() in ("", "nan")


@contextmanager
def _large_fields() -> Iterator[None]:
    """Fields of any size (the csv module refuses those over 131,072 characters by default);
    the process-wide limit is put back afterwards."""
    before = csv.field_size_limit(sys.maxsize)
    try:
        yield
    finally:
        csv.field_size_limit(before)


def read_table(path: str | Path, columns: list[str], labels: Sequence[str] = ()
               ) -> list[dict[str, str]]:
    """Rows of a CSV (or .tsv / .tab: tab-separated) file that must contain ``columns``.

    Python's csv module reads the file as written: a quoted field keeps its newlines and
    any other character, and errors name the line where the record starts (the reader's
    own count, so a multi-line record does not shift the lines after it). A row whose
    ``labels`` cell is empty or ``NaN`` is dropped, and the count said once; any other
    empty cell is refused with its line."""
    path = Path(path)
    text = read_text_file(path)
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    rows: list[dict[str, str]] = []
    dropped: list[int] = []
    with _large_fields():
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        header = reader.fieldnames or []
        missing = [c for c in columns if c not in header]
        if missing:
            raise DataError(f"{path}, line 1: missing column(s) {', '.join(missing)}; the header "
                            f"has {', '.join(header) or 'nothing'} (set the column names in the "
                            f"task's data settings or rename the header).")
        line = reader.line_num + 1
        try:
            for row in reader:
                if None in row or any(row.get(c) is None for c in columns):
                    raise DataError(f"{path}, line {line}: expected {len(header)} fields, found "
                                    f"a different number; quote fields that contain the "
                                    f"delimiter.")
                if any(_missing(row[c]) for c in labels):
                    dropped.append(line)
                else:
                    empty = next((c for c in columns if not row[c].strip()), None)
                    if empty is not None:
                        raise DataError(f"{path}, line {line}: the {empty!r} field is empty; "
                                        f"fill it or remove the row.")
                    rows.append({c: row[c] for c in columns})
                line = reader.line_num + 1
        except csv.Error as err:
            raise DataError(f"{path}, line {line}: malformed CSV ({err}).") from err
    if dropped:
        shown = ", ".join(map(str, dropped[:5])) + (", ..." if len(dropped) > 5 else "")
        print(f"{path}: {len(dropped)} row(s) without a {' / '.join(map(repr, labels))} value "
              f"(empty or NaN) dropped (line {shown}).", file=sys.stderr)
    if not rows:
        raise DataError(f"{path} has a header but no rows; give it some data.")
    return rows
