"""What a file reader returns (``ReadResult``) or raises (``FileRejected``), and how messages name a file."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

EXTRA = "_extra"
SOURCE_ROW = "_source_row"
SOURCE_LINE = "_source_line"


class FileRejected(Exception):
    """The whole file cannot be read. ``path`` is the file; ``reason`` (also the exception's text) says in plain
    words what is wrong: the file by its inbox name (``<source>/<entity>/<file>``, never the machine's absolute
    path), the line, sheet or row a person would look at, the column as headed in the file, what was expected."""

    def __init__(self, path: Path | str, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(reason)


def file_label(path: Path, source: str, entity: str) -> str:
    """How messages name a file: its inbox-relative name ``<source>/<entity>/<file>`` when it lies in such a
    folder, else its base name (no absolute path of the machine)."""
    path = Path(path)
    if path.parent.name == entity and path.parent.parent.name == source:
        return f"{source}/{entity}/{path.name}"
    return path.name


@dataclass
class ReadResult:
    path: Path
    source: str
    entity: str
    format: str  # 'flat_export' | 'national_sync'
    file_kind: str  # 'csv' | 'xlsx' | 'json' | 'jsonl': what the file's bytes are, whatever its extension
    encoding: str | None
    delimiter: str | None
    header_rows: list[int]  # 1-based sheet rows / lines of the header
    first_data_line: int | None
    columns: list[str]  # canonical names found in the file
    unknown_columns: list[str]  # original headers not in the mapping (values go to `_extra`)
    batches: Iterator[pa.RecordBatch] = field(repr=False)
    # What was read differently from what the name says, or seen and not taken as data, in sentences for the
    # report (a .xlsx holding CSV text, blank rows skipped, a footer and the rows after it, other sheets).
    # Filled while ``batches`` is iterated: complete once it is exhausted.
    notes: list[str] = field(default_factory=list)
    # rows seen and not taken as data, by kind ('blank', 'footer'): their lines (CSV/JSONL) or sheet rows (XLSX)
    skipped: dict[str, list[int]] = field(default_factory=dict)
