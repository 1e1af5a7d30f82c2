"""File readers: one inbox file -> raw record batches (every value text) under canonical column names.

The mapping files in transforms/mappings/ (data, not code) say which header or field name means which
canonical column. Every batch has exactly ``raw_schema(source, entity)``: all canonical names of every mapping
file of the entity (missing ones all-null), ``_extra`` (JSON object text of the values of unmapped columns,
null when none), ``_source_row`` (1-based data record ordinal in the file) and ``_source_line`` (what a person
looks up: the sheet row of an XLSX, the physical line of a CSV with the header on line 1, the line of a JSONL,
the 1-based element index of a JSON array). Empty or blank cells are null.

A file that cannot be read as a whole raises ``FileRejected`` with a plain-words reason. Most problems are
found by ``read_file`` itself; damage far into a large file (a CSV whose start is valid UTF-8 but a later part is
not, a row with the wrong number of fields, a malformed JSONL line after the first batch) is found while
``batches`` is iterated and raises ``FileRejected`` from there: discard the partial batch. The reader never
modifies or moves the input file.

Caveat for ``_source_line`` of CSV files: a quoted cell holding line breaks moves the following rows' lines
down, which is counted (``\\n`` inside cells); blank lines in the middle of a CSV are skipped by the parser and
are not counted.
"""

from __future__ import annotations

from pathlib import Path

from transforms.readers._common import (
    FileRejected,
    ReadResult,
    mapping,
    normalize_header,
    raw_schema,
)
from transforms.readers.json_reader import records_to_raw_batch

__all__ = [
    "FileRejected",
    "ReadResult",
    "mapping",
    "normalize_header",
    "raw_schema",
    "read_file",
    "records_to_raw_batch",
]

KINDS = {".csv": "csv", ".xlsx": "xlsx", ".json": "json", ".jsonl": "jsonl"}


def read_file(path: Path, source: str, entity: str, batch_rows: int = 500_000) -> ReadResult:
    """Opens one inbox file of ``<source>/<entity>/`` and returns what it holds; batches are produced lazily."""
    path = Path(path)
    if batch_rows < 1:
        raise ValueError("batch_rows must be at least 1")
    raw_schema(source, entity)  # an unknown entity is a programming error, not a bad file
    kind = KINDS.get(path.suffix.lower())
    if kind is None:
        raise FileRejected(path, f"file {path.name}: unsupported file type '{path.suffix}'; expected one of "
                                 f"{', '.join(KINDS)}")
    if not path.is_file():
        raise FileRejected(path, f"file {path.name}: not found or not a regular file")
    if kind == "csv":
        from transforms.readers.csv_reader import read_csv

        return read_csv(path, source, entity, batch_rows)
    if kind == "xlsx":
        from transforms.readers.xlsx_reader import read_xlsx

        return read_xlsx(path, source, entity, batch_rows)
    from transforms.readers.json_reader import read_json, read_jsonl

    if kind == "json":
        return read_json(path, source, entity, batch_rows)
    return read_jsonl(path, source, entity, batch_rows)
