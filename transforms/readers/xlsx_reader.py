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


def read_xlsx(path: Path, source: str, entity: str, batch_rows: int, notes: list[str] | None = None
              ) -> ReadResult:
    from python_calamine import CalamineWorkbook

    fmt = "flat_export"
    label = file_label(path, source, entity)
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

    chosen = None
    used_sheets: list[str] = []
    for si, name in enumerate(names):
        try:
            sheet = wb.get_sheet_by_index(si)
        except Exception as e:  # noqa: BLE001
            raise FileRejected(path, f"file {label}, sheet '{name}': cannot be read ({e})") from e
        if sheet.start is None:
            continue
        used_sheets.append(name)
        it = iter(sheet.iter_rows())  # rows from sheet row 1; columns from the first used column
        head: list[list[Any]] = []
        for row in it:
            head.append(list(row))
            if len(head) >= HEADER_SCAN_ROWS + 1:
                break
        col0 = sheet.start[1]
        found = _find_header(head[:HEADER_SCAN_ROWS + 1], sheet.merged_cell_ranges or [], col0, fmt, entity)
        if found and (chosen is None or found[1].score > chosen[3][1].score):
            chosen = (name, it, head, found)
    if chosen is None:
        raise FileRejected(path, f"file {label}: no header row found: no row in the first {HEADER_SCAN_ROWS} "
                                 f"rows of any sheet ({', '.join(repr(n) for n in names)}) names a known {entity} "
                                 "column (transforms/mappings/flat_export.yaml)")
    sheet_name, it, head, (hidx, hm) = chosen
    notes = notes if notes is not None else []
    others = [n for n in used_sheets if n != sheet_name]
    if others:
        notes.append(f"file {label}: only sheet '{sheet_name}' was read (its header matches best); sheet"
                     f"{'s' if len(others) > 1 else ''} {', '.join(repr(n) for n in others)} also hold"
                     f"{'' if len(others) > 1 else 's'} cells and {'were' if len(others) > 1 else 'was'} not read")
    # the table ends at its last named column (a title block or footer may reach further right)
    last = max(i for i, h in enumerate(hm.headers) if h)
    if last + 1 < len(hm.headers):
        hm = match_headers(hm.headers[:last + 1], fmt, entity)
    header_rows = [i + 1 for i in hidx]
    where = f" in the header (sheet '{sheet_name}', row{'s' if len(header_rows) > 1 else ''} " \
            f"{', '.join(map(str, header_rows))})"
    check_required(path, hm, source, entity, fmt, where=where)

    ncols = len(hm.headers)
    keys = set(key_columns(source, entity))
    key_idx = {i for i, c in enumerate(hm.canonical) if c in keys}
    skipped: dict[str, list[int]] = {}
    start = hidx[-1] + 1  # 0-based index of the first row after the header

    def all_rows() -> Iterator[tuple[int, list[Any]]]:
        for i in range(start, len(head)):
            yield i + 1, head[i]
        i = len(head)
        for row in it:
            i += 1
            yield i, row

    rows_iter = all_rows()
    # blank rows between header and data are not counted as skipped: they are part of the layout
    first: tuple[int, list[Any]] | None = None
    for line, row in rows_iter:
        if not _blank(row):
            first = (line, row)
            break
    first_line = first[0] if first else None

    def batches() -> Iterator[pa.RecordBatch]:
        if first is None:
            yield columns_to_batch(source, entity, hm, [[] for _ in range(ncols)], 1, [])
            notes.append(f"file {label}, sheet '{sheet_name}': no data rows below the header (row "
                         f"{header_rows[-1]})")
            return
        cols: list[list[str | None]] = [[] for _ in range(ncols)]
        lines: list[int] = []
        row_no = 1

        def flush():
            nonlocal cols, lines, row_no
            b = columns_to_batch(source, entity, hm, cols, row_no, lines)
            row_no += len(lines)
            cols = [[] for _ in range(ncols)]
            lines = []
            return b

        def rows():
            yield first
            yield from rows_iter

        in_footer = False
        for line, row in rows():
            texts = [cell_text(v) for v in row]
            if all(t is None for t in texts):
                skipped.setdefault("blank", []).append(line)
                continue
            has_keys = all(i < len(texts) and texts[i] is not None for i in key_idx)
            starts = is_footer_start(texts, key_idx, [isinstance(v, str) for v in row])
            if starts or (in_footer and not has_keys):
                in_footer = True
                skipped.setdefault("footer", []).append(line)
                continue
            texts = texts[:ncols] + [None] * (ncols - len(texts))
            for c in range(ncols):
                cols[c].append(texts[c])
            lines.append(line)
            if len(lines) >= batch_rows:
                yield flush()
        if lines or row_no == 1:
            yield flush()
        note_skipped(notes, skipped, f"file {label}, sheet '{sheet_name}'", "row")
        if row_no == 1:
            notes.append(f"file {label}, sheet '{sheet_name}': no data rows below the header (row "
                         f"{header_rows[-1]})")

    return ReadResult(path=path, source=source, entity=entity, format=fmt, file_kind="xlsx", encoding=None,
                      delimiter=None, header_rows=header_rows, first_data_line=first_line, columns=hm.columns,
                      unknown_columns=hm.unknown_columns, batches=batches(), notes=notes, skipped=skipped)
