"""Reading the user's own CSV/TSV files with errors that name the file and line."""

from __future__ import annotations

import csv
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


def read_table(path: str | Path, columns: list[str]) -> list[dict[str, str]]:
    """Rows of a CSV (or .tsv / .tab: tab-separated) file that must contain ``columns``."""
    path = Path(path)
    text = read_text_file(path)
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    header = reader.fieldnames or []
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(f"{path}, line 1: missing column(s) {', '.join(missing)}; the header has "
                        f"{', '.join(header) or 'nothing'} (set the column names in the task's "
                        f"data settings or rename the header).")
    rows = []
    try:
        for row in reader:
            line = reader.line_num
            if None in row or any(row.get(c) is None for c in columns):
                raise DataError(f"{path}, line {line}: expected {len(header)} fields, found a "
                                f"different number; quote fields that contain the delimiter.")
            if any(not row[c].strip() for c in columns):
                empty = next(c for c in columns if not row[c].strip())
                raise DataError(f"{path}, line {line}: the {empty!r} field is empty; fill it or "
                                f"remove the row.")
            rows.append({c: row[c] for c in columns})
    except csv.Error as err:
        raise DataError(f"{path}, line {reader.line_num}: malformed CSV ({err}).") from err
    if not rows:
        raise DataError(f"{path} has a header but no rows; give it some data.")
    return rows
