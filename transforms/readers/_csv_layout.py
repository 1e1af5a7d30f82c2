"""What the start of a flat CSV export shows, before any row is streamed: its text encoding (confirmed by the
header when it is a guess), its delimiter and its header line below any title block.

``sniff_layout`` looks at the first bytes only (``csv_reader.SAMPLE_BYTES``): it decodes them
(``transforms.readers._text``), finds the line and delimiter under which the header names the most mapped
columns (among the first ``HEADER_SCAN_ROWS`` lines; ties: the earliest line, then the most fields), takes UTF-8
text showing CP1252 round-trip damage as that damage when the repaired text matches the header at least as well,
and rejects the file when the encoding is a guess no header confirms, or when no line is a header at all.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from transforms.readers._common import (
    FileRejected,
    HeaderMatch,
    display_header,
    match_headers,
    required_columns,
)
from transforms.readers._text import DecodeProblem, Encoding, decode_sample, looks_like_mojibake, repair_mojibake

FMT = "flat_export"  # the mapping file of CSV exports
HEADER_SCAN_ROWS = 60  # the header must be among the first lines (as for XLSX)
DELIMITERS = (",", ";", "\t", "|")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "vertical bar"}


@dataclass(frozen=True)
class CsvFile:
    """The file being read and how its messages name it (``file_label``)."""

    path: Path
    source: str
    entity: str
    name: str

    def reject(self, msg: str) -> FileRejected:
        return FileRejected(self.path, f"file {self.name}: {msg}")


@dataclass(frozen=True)
class CsvHeader:
    """The header line: its delimiter, its row among the parsed rows, its physical lines (a quoted line break
    makes it span several) and how its names map."""

    delim: str
    row_index: int
    start_line: int
    end_line: int
    hm: HeaderMatch


def find_header(text: str, fmt: str, entity: str) -> CsvHeader | None:
    """The header among the first rows of ``text``: the best-matching row under the best delimiter."""
    best: tuple[tuple[int, int, int], CsvHeader] | None = None
    for delim in DELIMITERS:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
        prev_end = 0
        try:
            for idx, row in enumerate(reader):
                if idx >= HEADER_SCAN_ROWS:
                    break
                start, prev_end = prev_end + 1, reader.line_num
                if not row:
                    continue
                hm = match_headers([c.strip() for c in row], fmt, entity)
                key = (hm.score, -idx, len(hm.headers))
                if hm.score and (best is None or key > best[0]):
                    best = (key, CsvHeader(delim, idx, start, prev_end, hm))
        except csv.Error:
            pass  # an unparseable line (a huge title): the rows before it were looked at
    return best[1] if best else None


def _first_lines(text: str, n: int) -> str:
    pos = 0
    for _ in range(n):
        nxt = text.find("\n", pos)
        if nxt < 0:
            return text
        pos = nxt + 1
    return text[:pos]


def _has_required(hm: HeaderMatch, source: str, entity: str, fmt: str) -> bool:
    return hm.score > 0 and all(c in hm.columns for c in required_columns(source, entity, fmt))


def _decode(f: CsvFile, sample: bytes, complete: bool) -> tuple[Encoding, str]:
    """The encoding and text of the sample; rejects text no encoding reads, and an empty file."""
    try:
        enc, text = decode_sample(sample, complete)
    except DecodeProblem as p:
        raise f.reject(f"line {p.line}: {p.detail}; the text encoding cannot be determined with certainty: save "
                       "the export as UTF-8 and drop it again") from None
    if not text.strip("\ufeff \t\r\n"):
        raise f.reject("the file is empty (no header line)")
    return enc, text


def _mojibake_header(text: str, enc: Encoding, found: CsvHeader | None, entity: str
                     ) -> tuple[Encoding, CsvHeader | None]:
    """UTF-8 text showing the CP1252 round-trip damage (or at least its first lines): the header may still match
    through an ASCII alias, or the damage may be partial (then the whole-file repair while transcoding rejects it).
    The damage is taken as such when the repaired text's header matches at least as well (the whole sample) or
    better (each of the first lines repaired where it can be)."""
    score = found.hm.score if found else 0
    if looks_like_mojibake(text):
        f2 = find_header(repair_mojibake(text), FMT, entity)
        if f2 and f2.hm.score >= score:
            enc, found = Encoding("mojibake", enc.bom, certain=False), f2
    if enc.kind == "utf-8":  # each of the first lines repaired where it can be: a damaged header shows
        head = [repair_mojibake(ln) if looks_like_mojibake(ln) else ln
                for ln in _first_lines(text, HEADER_SCAN_ROWS).split("\n")]
        f2 = find_header("\n".join(head), FMT, entity)
        if f2 and f2.hm.score > score:
            enc, found = Encoding("mojibake", enc.bom, certain=False), f2
    return enc, found


def _confirmed(f: CsvFile, enc: Encoding, found: CsvHeader | None) -> CsvHeader:
    """The header, when there is one and it confirms a guessed encoding; else the file is rejected."""
    source, entity = f.source, f.entity
    if not enc.certain and not (found and _has_required(found.hm, source, entity, FMT)):
        missing = [display_header(FMT, entity, c) for c in required_columns(source, entity, FMT)
                   if not found or c not in found.hm.columns]
        raise f.reject(f"the text encoding cannot be determined with certainty: read as {enc.describe}, no line "
                       "of its start is a header with the expected columns"
                       + (f" (missing: {', '.join(repr(m) for m in missing)})" if missing else "")
                       + "; save the export as UTF-8 and drop it again")
    if found is None:
        examples = ", ".join(f"'{display_header(FMT, entity, c)}'" for c in required_columns(source, entity, FMT)[:4])
        raise f.reject(f"no header found: none of the first {HEADER_SCAN_ROWS} lines names a known {entity} column "
                       f"(with a comma, semicolon, tab or '|' between columns); expected headers such as "
                       f"{examples} (transforms/mappings/flat_export.yaml)")
    return found


def sniff_layout(f: CsvFile, sample: bytes, complete: bool) -> tuple[Encoding, CsvHeader]:
    """The encoding and the header line of a CSV from its first bytes (``complete``: they are the whole file)."""
    enc, text = _decode(f, sample, complete)
    found = find_header(text, FMT, f.entity)
    if enc.kind == "utf-8":
        enc, found = _mojibake_header(text, enc, found, f.entity)
    return enc, _confirmed(f, enc, found)
