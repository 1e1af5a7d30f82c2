"""Flat XLSX exports, as an official downloads them from a system's screen.

The header row may follow a title block (unit, report name, date range, blank rows) and may be split over two
rows with merged cells: a group cell merged across several columns is not a column name (the lower cell names
the column), a column merged vertically over both rows keeps its upper text. The header is the row, or pair of
rows, matching the most mapped headers (the best sheet is read; other sheets holding anything are named in the
notes).

Data runs from the first non-blank row after the header to the end of the sheet. A blank row is skipped and
counted, it does not end the table. A footer is recognised by what it is (``_common.is_footer_start``): a row
whose first non-empty cell starts with 'Tổng', 'Cộng', 'Người lập', 'Ghi chú', 'Nơi nhận', 'Thủ trưởng', ...,
or a row holding a single non-empty text cell outside the key columns (a signature, 'Hà Nội, ngày ...'). From
the footer on, a row carrying every key column (Mã hồ sơ and Ngày cập nhật for dossiers) is still data; any
other row is footer, listed with its sheet row in ``ReadResult.skipped['footer']`` and the notes, never dropped
unseen. Before the footer every non-blank row is data (a row missing a key is staging's to quarantine).

A workbook whose parts unpack to more than 256 MB and over 200 times its own size is rejected before it is
opened (a ZIP bomb, or a sheet no office exports).

Cells: real Excel dates -> ``YYYY-MM-DD HH:MM:SS`` (``YYYY-MM-DD`` for a date-only format), integral numbers
without ``.0``, strings exactly as the cell holds them (leading zeros of IDs and phones kept).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import pyarrow as pa

from transforms.readers._common import (
    FileRejected,
    HeaderMatch,
    ReadResult,
    cell_text,
    check_required,
    columns_to_batch,
    file_label,
    is_footer_start,
    key_columns,
    match_headers,
    note_skipped,
)

FMT = "flat_export"  # the mapping file of XLSX exports
HEADER_SCAN_ROWS = 60  # the header must start within the first rows of the sheet
UNPACKED_MAX = 256 << 20  # a workbook unpacking to more than this ...
UNPACKED_RATIO_MAX = 200  # ... and to more than this many times its size is not read


def _unpacked_guard(path: Path, name: str) -> None:
    """Rejects a workbook whose ZIP directory announces far more data than any export holds."""
    try:
        with zipfile.ZipFile(path) as z:
            total = sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise FileRejected(path, f"file {name}: a damaged Excel workbook (its ZIP structure cannot be read: {e}); "
                                 "export it again") from e
    size = max(path.stat().st_size, 1)
    if total > UNPACKED_MAX and total > UNPACKED_RATIO_MAX * size:
        raise FileRejected(path, f"file {name}: the workbook ({size / 1e6:.1f} MB) would unpack to "
                                 f"{total / 1e6:,.0f} MB ({total / size:,.0f} times its size; at most "
                                 f"{UNPACKED_MAX >> 20} MB or {UNPACKED_RATIO_MAX} times is read); it is not a "
                                 "plain export: open it in Excel, keep the data sheet and save it again")


def _blank(row: list[Any]) -> bool:
    return all(cell_text(v) is None for v in row)


def _text(v: Any) -> str:
    t = cell_text(v)
    return "" if t is None else t


def _combine(upper: list[Any], lower: list[Any], vmerged: set[int]) -> list[str]:
    """Column names of a two-row header: the lower cell names a column; where it is empty (a column merged
    vertically over both rows) the upper text stays."""
    n = max(len(upper), len(lower))
    out = []
    for c in range(n):
        u = _text(upper[c]) if c < len(upper) else ""
        lo = _text(lower[c]) if c < len(lower) else ""
        out.append(u if c in vmerged or not lo else lo)
    return out


def _vertical_merges(merged: list, row0: int, col0: int) -> set[int]:
    """Columns (relative to the used range) whose cell in sheet row index row0 is merged down into row0 + 1."""
    cols: set[int] = set()
    for (r1, c1), (r2, c2) in merged or []:
        if r1 <= row0 < r2:  # spans row0 and the row below
            cols.update(range(c1 - col0, c2 - col0 + 1))
    return cols


def _find_header(rows: list[list[Any]], merged: list, col0: int, fmt: str, entity: str
                 ) -> tuple[list[int], HeaderMatch] | None:
    """(0-based row indices of the header, its match) for the row or row pair matching most mapped headers."""
    best: tuple[int, int, list[int], HeaderMatch] | None = None  # (score, -rows used, idx, match)
    for i, row in enumerate(rows):
        if _blank(row):
            continue
        single = match_headers([_text(v) for v in row], fmt, entity)
        cand = [(single.score, -1, [i], single)]
        if i + 1 < len(rows) and not _blank(rows[i + 1]):
            pair = match_headers(_combine(row, rows[i + 1], _vertical_merges(merged, i, col0)), fmt, entity)
            nxt = match_headers([_text(v) for v in rows[i + 1]], fmt, entity)
            # a genuine two-row header: the upper row adds names the lower row alone does not have
            if pair.score > max(single.score, nxt.score):
                cand.append((pair.score, -2, [i, i + 1], pair))
        for score, used, idx, hm in cand:
            if score > 0 and (best is None or (score, used) > (best[0], best[1])):
                best = (score, used, idx, hm)
    if best is None:
        return None
    return best[2], best[3]


@dataclass
class _Sheet:
    """A sheet holding cells, as far as it was read to look for the header."""

    name: str
    head: list[list[Any]]  # its first rows (sheet row 1 on; columns from the first used column)
    rest: Iterator[list[Any]]  # the rows after ``head``, not read yet
    found: tuple[list[int], HeaderMatch] | None  # (0-based header rows, their match), None: no header


def _open_workbook(path: Path, label: str) -> tuple[Any, list[str]]:
    """The workbook and its sheet names; rejects an empty, oversized or unreadable file."""
    from python_calamine import CalamineWorkbook

    if path.stat().st_size == 0:
        raise FileRejected(path, f"file {label}: the file is empty")
    _unpacked_guard(path, label)
    try:
        if path.suffix.lower() == ".xlsx":
            wb = CalamineWorkbook.from_path(str(path))
        else:  # a workbook under another name (the bytes said so): calamine goes by the name, so give it the bytes
            with path.open("rb") as fh:
                wb = CalamineWorkbook.from_filelike(fh)
        names = wb.sheet_names
    except Exception as e:  # noqa: BLE001 - any parse failure means the workbook is unreadable
        raise FileRejected(path, f"file {label}: not a readable XLSX workbook ({type(e).__name__}: {e})") from e
    return wb, names


def _read_head(path: Path, label: str, wb: Any, si: int, name: str, entity: str) -> _Sheet | None:
    """Sheet ``si`` read up to where its header may start, and the header found there; None for an empty sheet."""
    try:
        sheet = wb.get_sheet_by_index(si)
    except Exception as e:  # noqa: BLE001
        raise FileRejected(path, f"file {label}, sheet '{name}': cannot be read ({e})") from e
    if sheet.start is None:
        return None
    it = iter(sheet.iter_rows())  # rows from sheet row 1; columns from the first used column
    head: list[list[Any]] = []
    for row in it:
        head.append(list(row))
        if len(head) >= HEADER_SCAN_ROWS + 1:
            break
    col0 = sheet.start[1]
    found = _find_header(head[:HEADER_SCAN_ROWS + 1], sheet.merged_cell_ranges or [], col0, FMT, entity)
    return _Sheet(name, head, it, found)


def _choose_sheet(path: Path, label: str, wb: Any, names: list[str], entity: str) -> tuple[_Sheet, list[str]]:
    """The sheet whose header matches best (the first of equals), and the other sheets holding cells."""
    chosen: _Sheet | None = None
    used_sheets: list[str] = []
    for si, name in enumerate(names):
        sheet = _read_head(path, label, wb, si, name, entity)
        if sheet is None:
            continue
        used_sheets.append(name)
        if sheet.found and (chosen is None or sheet.found[1].score > chosen.found[1].score):
            chosen = sheet
    if chosen is None:
        raise FileRejected(path, f"file {label}: no header row found: no row in the first {HEADER_SCAN_ROWS} "
                                 f"rows of any sheet ({', '.join(repr(n) for n in names)}) names a known {entity} "
                                 "column (transforms/mappings/flat_export.yaml)")
    return chosen, [n for n in used_sheets if n != chosen.name]


def _note_other_sheets(notes: list[str], label: str, sheet_name: str, others: list[str]) -> None:
    if others:
        notes.append(f"file {label}: only sheet '{sheet_name}' was read (its header matches best); sheet"
                     f"{'s' if len(others) > 1 else ''} {', '.join(repr(n) for n in others)} also hold"
                     f"{'' if len(others) > 1 else 's'} cells and {'were' if len(others) > 1 else 'was'} not read")


def _table_header(path: Path, source: str, entity: str, sheet: _Sheet) -> tuple[HeaderMatch, list[int]]:
    """The header's match, cut at its last named column (a title block or footer may reach further right),
    and its 1-based sheet rows; rejects a header without the required columns."""
    hidx, hm = sheet.found
    last = max(i for i, h in enumerate(hm.headers) if h)
    if last + 1 < len(hm.headers):
        hm = match_headers(hm.headers[:last + 1], FMT, entity)
    header_rows = [i + 1 for i in hidx]
    where = f" in the header (sheet '{sheet.name}', row{'s' if len(header_rows) > 1 else ''} " \
            f"{', '.join(map(str, header_rows))})"
    check_required(path, hm, source, entity, FMT, where=where)
    return hm, header_rows


def _rows_below(sheet: _Sheet, header_idx: list[int]) -> Iterator[tuple[int, list[Any]]]:
    """(sheet row, cells) of every row below the header: the rows read while looking for it, then the rest."""
    for i in range(header_idx[-1] + 1, len(sheet.head)):
        yield i + 1, sheet.head[i]
    i = len(sheet.head)
    for row in sheet.rest:
        i += 1
        yield i, row


def _first_nonblank(rows: Iterator[tuple[int, list[Any]]]) -> tuple[int, list[Any]] | None:
    """The first row with a cell filled; the blank rows before it are part of the layout, not counted as
    skipped."""
    for line, row in rows:
        if not _blank(row):
            return line, row
    return None


@dataclass
class _RowSorter:
    """Tells data rows from blank and footer rows (those listed in ``skipped`` with their sheet row)."""

    key_idx: set[int]
    skipped: dict[str, list[int]]
    in_footer: bool = False  # a footer row was seen: from here on only rows carrying every key are data

    def data(self, line: int, row: list[Any]) -> list[str | None] | None:
        """The row's cell texts when it is a data row, else None."""
        texts = [cell_text(v) for v in row]
        if all(t is None for t in texts):
            self.skipped.setdefault("blank", []).append(line)
            return None
        has_keys = all(i < len(texts) and texts[i] is not None for i in self.key_idx)
        starts = is_footer_start(texts, self.key_idx, [isinstance(v, str) for v in row])
        if starts or (self.in_footer and not has_keys):
            self.in_footer = True
            self.skipped.setdefault("footer", []).append(line)
            return None
        return texts


@dataclass
class _Columns:
    """Data rows gathered column by column until a batch is full, given out as raw batches."""

    source: str
    entity: str
    hm: HeaderMatch
    row_no: int = 1  # _source_row of the first row gathered
    cols: list[list[str | None]] = field(init=False)
    lines: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cols = [[] for _ in self.hm.headers]

    def add(self, texts: list[str | None], line: int) -> None:
        ncols = len(self.cols)
        texts = texts[:ncols] + [None] * (ncols - len(texts))
        for c in range(ncols):
            self.cols[c].append(texts[c])
        self.lines.append(line)

    def flush(self) -> pa.RecordBatch:
        b = columns_to_batch(self.source, self.entity, self.hm, self.cols, self.row_no, self.lines)
        self.row_no += len(self.lines)
        self.cols = [[] for _ in self.hm.headers]
        self.lines = []
        return b


def _batches(rows: Iterator[tuple[int, list[Any]]], sorter: _RowSorter, out: _Columns, batch_rows: int,
             notes: list[str], where: str, header_row: int) -> Iterator[pa.RecordBatch]:
    """The data rows in batches of ``batch_rows`` (one empty batch when there are none), then the notes."""
    for line, row in rows:
        texts = sorter.data(line, row)
        if texts is None:
            continue
        out.add(texts, line)
        if len(out.lines) >= batch_rows:
            yield out.flush()
    if out.lines or out.row_no == 1:
        yield out.flush()
    note_skipped(notes, sorter.skipped, where, "row")
    if out.row_no == 1:
        notes.append(f"{where}: no data rows below the header (row {header_row})")


def read_xlsx(path: Path, source: str, entity: str, batch_rows: int, notes: list[str] | None = None
              ) -> ReadResult:
    label = file_label(path, source, entity)
    wb, names = _open_workbook(path, label)
    sheet, others = _choose_sheet(path, label, wb, names, entity)
    notes = notes if notes is not None else []
    _note_other_sheets(notes, label, sheet.name, others)
    hm, header_rows = _table_header(path, source, entity, sheet)
    keys = set(key_columns(source, entity))
    sorter = _RowSorter({i for i, c in enumerate(hm.canonical) if c in keys}, {})
    below = _rows_below(sheet, sheet.found[0])
    first = _first_nonblank(below)  # read now: ReadResult.first_data_line
    rows = chain([first], below) if first is not None else iter(())
    batches = _batches(rows, sorter, _Columns(source, entity, hm), batch_rows, notes,
                       f"file {label}, sheet '{sheet.name}'", header_rows[-1])
    return ReadResult(path=path, source=source, entity=entity, format=FMT, file_kind="xlsx", encoding=None,
                      delimiter=None, header_rows=header_rows, first_data_line=first[0] if first else None,
                      columns=hm.columns, unknown_columns=hm.unknown_columns, batches=batches, notes=notes,
                      skipped=sorter.skipped)
