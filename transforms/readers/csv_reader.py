"""Flat CSV exports as offices save them.

- Encoding (transforms/readers/_text.py): UTF-8 with or without BOM, UTF-16 LE/BE with or without BOM,
  Windows-1258, UTF-8 damaged by a CP1252 round trip (repaired only if the repair works for the whole file).
  A guess (cp1258, mojibake, UTF-16 without BOM) must be confirmed by the header, else the file is rejected.
- Delimiter ``,``, ``;``, tab or ``|``, and the header line: among the first 60 lines (a title block such as
  'UBND TỈNH ...', 'DANH SÁCH HỒ SƠ', '' may come first), the line and delimiter under which the header names
  the most mapped columns (ties: the earliest line, then the most fields).
- Values: every column string, empty or blank cells null, NFC-normalised. Control characters other than tab,
  CR and LF (NUL, ESC, BEL) stay in the value they are in; staging quarantines that row (``control_character``).
  U+FFFD or C1 controls in the text mean a wrong encoding: the file is rejected naming the line and column.
- Rows: a blank row (every cell empty, or an empty line) is skipped and counted. After the last row carrying
  every key column (and not itself a footer row: a signature may fill the key columns), the rows left are
  looked at: from a footer row on (a row starting with 'Tổng', 'Cộng',
  'Người lập', 'Ghi chú', ... or holding one cell of text outside the key columns) they are the footer, not data,
  and are listed in ``ReadResult.skipped['footer']`` and the notes; rows before the footer are data. A line with
  the wrong number of fields is rejected with its line number, unless it is part of the footer.
- ``_source_line`` is the physical line (title block, blank lines and line breaks inside quoted cells counted).

UTF-8 files stream through ``pyarrow.csv.open_csv`` (bounded memory, no per-row Python); other encodings are
transcoded to UTF-8 once (in memory when small, else in a temporary file) and then streamed the same way.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from transforms.readers._common import (
    FileRejected,
    HeaderMatch,
    ReadResult,
    arrow_to_batch,
    check_required,
    display_header,
    file_label,
    is_footer_start,
    key_columns,
    match_headers,
    note_skipped,
    required_columns,
    scan_text,
)
from transforms.readers._text import (
    DecodeProblem,
    Encoding,
    decode_sample,
    first_bad_utf8,
    looks_like_mojibake,
    repair_mojibake,
    transcode,
)

SAMPLE_BYTES = 1 << 20  # what encoding, delimiter and header sniffing look at
HEADER_SCAN_ROWS = 60  # the header must be among the first lines (as for XLSX)
DELIMITERS = (",", ";", "\t", "|")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "vertical bar"}
BLOCK_SIZE = 1 << 20  # pyarrow block size: measured fastest (1M rows: 0.9 s at 1 MB, 2.5 s at 16 MB)
TAIL_MAX = 1000  # rows without their key columns held back at the end of the file to look for a footer
# blank cells read as null without per-row work (pyarrow matches these exactly while parsing)
_NULL_VALUES = ["", *(" " * n for n in range(1, 9)), "\t"]


class _Header:
    def __init__(self, delim: str, row_index: int, start_line: int, end_line: int, hm: HeaderMatch):
        self.delim, self.row_index, self.start_line, self.end_line, self.hm = delim, row_index, start_line, \
            end_line, hm


def _find_header(text: str, fmt: str, entity: str) -> _Header | None:
    """The header among the first rows of ``text``: the best-matching row under the best delimiter."""
    best: tuple[tuple[int, int, int], _Header] | None = None
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
                    best = (key, _Header(delim, idx, start, prev_end, hm))
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


def _newlines_per_row(batch: pa.RecordBatch) -> np.ndarray | None:
    """Line breaks inside quoted cells, per row (None when the batch has none: the usual, cheap case)."""
    per_row = None
    for col in batch.columns:
        bufs = col.buffers()
        if len(bufs) < 3 or bufs[2] is None or col.null_count == len(col):
            continue
        if not (np.frombuffer(bufs[2], dtype=np.uint8) == 10).any():
            continue  # no line break anywhere in this column's data: nothing to count
        counts = pc.fill_null(pc.count_substring(col, "\n"), 0).to_numpy(zero_copy_only=False).astype(np.int64)
        per_row = counts if per_row is None else per_row + counts
    return per_row


def read_csv(path: Path, source: str, entity: str, batch_rows: int, notes: list[str] | None = None) -> ReadResult:
    fmt = "flat_export"
    name = file_label(path, source, entity)

    def reject(msg: str) -> FileRejected:
        return FileRejected(path, f"file {name}: {msg}")

    size = path.stat().st_size
    with path.open("rb") as fh:
        sample = fh.read(SAMPLE_BYTES)
    complete = size <= SAMPLE_BYTES
    try:
        enc, text = decode_sample(sample, complete)
    except DecodeProblem as p:
        raise reject(f"line {p.line}: {p.detail}; the text encoding cannot be determined with certainty: save "
                     "the export as UTF-8 and drop it again") from None
    if not text.strip("\ufeff \t\r\n"):
        raise reject("the file is empty (no header line)")
    found = _find_header(text, fmt, entity)
    if enc.kind == "utf-8":
        # the text (or at least its first lines) shows the round-trip damage: the header may still match through
        # an ASCII alias, or the damage may be partial (then the whole-file repair while transcoding rejects it)
        score = found.hm.score if found else 0
        if looks_like_mojibake(text):
            f2 = _find_header(repair_mojibake(text), fmt, entity)
            if f2 and f2.hm.score >= score:
                enc, found = Encoding("mojibake", enc.bom, certain=False), f2
        if enc.kind == "utf-8":  # each of the first lines repaired where it can be: a damaged header shows
            head = [repair_mojibake(ln) if looks_like_mojibake(ln) else ln
                    for ln in _first_lines(text, HEADER_SCAN_ROWS).split("\n")]
            f2 = _find_header("\n".join(head), fmt, entity)
            if f2 and f2.hm.score > score:
                enc, found = Encoding("mojibake", enc.bom, certain=False), f2
    if not enc.certain and not (found and _has_required(found.hm, source, entity, fmt)):
        missing = [display_header(fmt, entity, c) for c in required_columns(source, entity, fmt)
                   if not found or c not in found.hm.columns]
        raise reject(f"the text encoding cannot be determined with certainty: read as {enc.describe}, no line "
                     "of its start is a header with the expected columns"
                     + (f" (missing: {', '.join(repr(m) for m in missing)})" if missing else "")
                     + "; save the export as UTF-8 and drop it again")
    if found is None:
        examples = ", ".join(f"'{display_header(fmt, entity, c)}'" for c in required_columns(source, entity, fmt)[:4])
        raise reject(f"no header found: none of the first {HEADER_SCAN_ROWS} lines names a known {entity} column "
                     f"(with a comma, semicolon, tab or '|' between columns); expected headers such as "
                     f"{examples} (transforms/mappings/flat_export.yaml)")
    hm, delim = found.hm, found.delim
    check_required(path, hm, source, entity, fmt, where=f" in the header (line {found.start_line})")

    ncols = len(hm.headers)
    names = [f"c{i}" for i in range(ncols)]
    invalid: list[tuple[int, str]] = []  # (pyarrow row number, text) of rows with the wrong number of fields

    def on_invalid(row) -> str:
        invalid.append((row.number, row.text))
        return "skip"

    # pyarrow skips physical lines (a quoted line break in a title counts as one), and numbers the rows it
    # reports (bad ones) from the first line on: row numbers + line breaks inside cells = physical lines
    skip_rows = found.end_line
    read_opts = pacsv.ReadOptions(column_names=names, skip_rows=skip_rows, block_size=BLOCK_SIZE, encoding="utf8",
                                  use_threads=False)  # row numbers of bad rows are known single-threaded only
    parse_opts = pacsv.ParseOptions(delimiter=delim, newlines_in_values=True, quote_char='"', double_quote=True,
                                    ignore_empty_lines=False, invalid_row_handler=on_invalid)
    conv_opts = pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=True,
                                     null_values=_NULL_VALUES, quoted_strings_can_be_null=True)
    if enc.kind == "utf-8":
        stream_source: pa.NativeFile | None = None
        tmp: Path | None = None
    else:
        try:
            stream_source, tmp = transcode(path, enc)  # rejects the file now if any part is not clean
        except DecodeProblem as p:
            raise reject(f"line {p.line}: {p.detail}; the text encoding ({enc.describe}) cannot be read with "
                         "certainty: save the export as UTF-8 and drop it again") from None

    keys = set(key_columns(source, entity))
    key_idx = [i for i, c in enumerate(hm.canonical) if c in keys]
    notes = notes if notes is not None else []
    skipped: dict[str, list[int]] = {}
    where = f"file {name}"

    key_set = set(key_idx)

    def with_keys(batch: pa.RecordBatch) -> np.ndarray:
        """Indices of the rows whose key columns are all filled."""
        has_keys = np.ones(batch.num_rows, dtype=bool)
        for i in key_idx:
            has_keys &= batch.column(i).is_valid().to_numpy(zero_copy_only=False)
        return np.flatnonzero(has_keys)

    def row_cells(batch: pa.RecordBatch, j: int) -> list[str | None]:
        return [batch.column(i)[j].as_py() for i in range(ncols)]

    def _cells(text: str) -> list[str | None]:
        cells = next(csv.reader(io.StringIO(text, newline=""), delimiter=delim), [])
        return [c if c.strip() else None for c in cells]

    def field_count_problem(line: int, text: str) -> FileRejected:
        got = len(next(csv.reader([text], delimiter=delim), []))
        return reject(f"cannot be read as CSV: line {line} has {got} field{'s' if got != 1 else ''} where the "
                      f"header (line {found.start_line}) has {ncols} ({DELIMITER_NAMES[delim]}-separated); a value "
                      "holding the delimiter needs double quotes, and the file may have been cut short or edited by "
                      "hand")

    def place(r: np.ndarray, nl: np.ndarray | None, base: int, cands: list[tuple[int, str]]
              ) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """Physical lines of a batch's rows (pyarrow row numbers ``r``, shifted in place past the bad rows
        ``cands`` that fall among them) and of those bad rows; ``base``: line breaks inside cells before the
        batch. Bad rows after the batch are left out."""
        placed: list[tuple[int, str]] = []
        for x, text in cands:  # ascending
            if not r.size or x > r[-1]:
                break
            r[r >= x] += 1
            placed.append((x, text))
        lines = r + base
        cum = None
        if nl is not None:
            cum = np.cumsum(nl)
            lines += cum - nl
        out: list[tuple[int, str]] = []
        inv_nl = 0
        for x, text in placed:
            before = int(np.searchsorted(r, x))
            out.append((x + base + inv_nl + (int(cum[before - 1]) if cum is not None and before else 0), text))
            k = text.count("\n")
            if k:  # a bad row's own line breaks move the rows after it
                lines[r > x] += k
                inv_nl += k
        return lines, out

    def batches() -> Iterator[pa.RecordBatch]:
        from transforms.staging import ingest_memory_pool

        src = stream_source if stream_source is not None else pa.OSFile(str(path), "rb")
        out_row = 1  # _source_row of the next row given out
        valid_seen = 0  # rows pyarrow gave so far
        inv_used = 0  # bad rows placed so far
        extra_lines = 0  # line breaks inside quoted cells of the rows so far
        pending: list[tuple[pa.RecordBatch, np.ndarray]] = []  # rows after the last row carrying its keys
        pending_n = 0
        bad_rows: list[tuple[int, str]] = []  # (line, text) of rows with the wrong field count, not yet judged
        last_line = found.end_line  # the last line read

        def emit(part: pa.RecordBatch, lines: np.ndarray) -> Iterator[pa.RecordBatch]:
            nonlocal out_row
            for off in range(0, part.num_rows, batch_rows):
                piece = part.slice(off, batch_rows) if part.num_rows > batch_rows else part
                if piece.num_rows:
                    yield arrow_to_batch(source, entity, hm, piece, out_row,
                                         pa.array(lines[off:off + piece.num_rows], pa.int64()), normalized=True)
                    out_row += piece.num_rows

        def data_up_to(line: int) -> None:
            """Rows up to ``line`` are data. A bad row before it is a footer row when it is a footer start or
            follows one (a footer inside the data, data after it), else it is a malformed data row: rejected."""
            in_footer = False
            for bad_line, text in sorted(bad_rows):
                if bad_line >= line:
                    break
                if in_footer or is_footer_start(_cells(text), key_set):
                    in_footer = True
                    skipped.setdefault("footer", []).append(bad_line)
                else:
                    raise field_count_problem(bad_line, text)

        try:
            try:
                reader = pacsv.open_csv(src, read_options=read_opts, parse_options=parse_opts,
                                        convert_options=conv_opts, memory_pool=ingest_memory_pool())
            except pa.ArrowInvalid as e:
                raise _arrow_problem(e, found.end_line + 1) from e
            if not reader.schema.names:
                return
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                except pa.ArrowInvalid as e:
                    raise _arrow_problem(e, last_line + 1) from e
                n = batch.num_rows
                if n == 0:
                    continue
                r = skip_rows + 1 + valid_seen + inv_used + np.arange(n, dtype=np.int64)
                nl = _newlines_per_row(batch)
                lines, placed = place(r, nl, extra_lines, sorted(invalid[inv_used:]))
                inv_used += len(placed)
                valid_seen += n
                extra_lines += (int(nl.sum()) if nl is not None else 0) + sum(t.count("\n") for _, t in placed)
                bad_rows.extend(placed)
                last_line = int(lines[-1])
                # NFC, and U+FFFD or C1 controls (a wrong encoding; transcoded text was checked while transcoding)
                cols = []
                for col, arr in enumerate(batch.columns):
                    arr, row, ch = scan_text(arr)
                    if row is not None:
                        head = hm.headers[col] or f"column {col + 1}"
                        what = ("U+FFFD (the replacement character �): characters were lost when the file was "
                                "converted" if ch == "\ufffd" else
                                f"U+{ord(ch):04X}, a C1 control character: the text was decoded with the wrong "
                                "code page")
                        raise reject(f"line {int(lines[row])}, column '{head}': {what}; the text encoding is "
                                     "wrong: export the file again as UTF-8")
                    cols.append(arr)
                batch = pa.RecordBatch.from_arrays(cols, names=batch.schema.names)
                if all(c.null_count for c in batch.columns):  # blank rows (every cell empty) are skipped
                    blank = np.ones(n, dtype=bool)
                    for c in batch.columns:
                        blank &= c.is_null().to_numpy(zero_copy_only=False)
                    if blank.any():
                        skipped.setdefault("blank", []).extend(int(x) for x in lines[blank])
                        keep = np.flatnonzero(~blank)
                        batch, lines, n = batch.take(pa.array(keep)), lines[keep], len(keep)
                        if n == 0:
                            continue
                # the last row carrying every key column and not itself a footer row (a signature line may
                # fill the key columns): the rows after it may be a footer
                idx = None
                if not key_idx or all(batch.column(i)[n - 1].is_valid for i in key_idx):
                    last = n - 1
                else:
                    idx = with_keys(batch)
                    last = int(idx[-1]) if idx.size else -1
                while last >= 0 and is_footer_start(row_cells(batch, last), key_set):
                    idx = with_keys(batch) if idx is None else idx
                    earlier = idx[idx < last]
                    last = int(earlier[-1]) if earlier.size else -1
                if last >= 0:
                    data_up_to(int(lines[last]))
                    for part, ln in pending:
                        yield from emit(part, ln)
                    pending.clear()
                    pending_n = 0
                    yield from emit(batch.slice(0, last + 1), lines[:last + 1])
                    bad_rows[:] = [b for b in bad_rows if b[0] > lines[last]]
                if last + 1 < n:
                    pending.append((batch.slice(last + 1), lines[last + 1:]))
                    pending_n += n - last - 1
                while pending_n > TAIL_MAX and len(pending) > 1:  # too long for a footer: data after all
                    part, ln = pending.pop(0)
                    pending_n -= part.num_rows
                    data_up_to(int(ln[-1]))
                    yield from emit(part, ln)
            # bad rows after the last row pyarrow gave
            rest = sorted(invalid[inv_used:])
            inv_nl = 0
            for x, text in rest:
                bad_rows.append((x + extra_lines + inv_nl, text))
                inv_nl += text.count("\n")
            # the end of the file: the rows after the last one carrying its keys, in line order
            tail: list[tuple[int, list[str | None], str | None]] = []
            for part, ln in pending:
                cols = [part.column(i).to_pylist() for i in range(ncols)]
                tail.extend((int(ln[j]), [c[j] for c in cols], None) for j in range(part.num_rows))
            for line, text in bad_rows:
                tail.append((line, _cells(text), text))
            tail.sort(key=lambda t: t[0])
            footer = next((k for k, t in enumerate(tail) if is_footer_start(t[1], key_set)), len(tail))
            for line, _row, what in tail[:footer]:
                if isinstance(what, str):
                    raise field_count_problem(line, what)
            left = footer  # the rows before the footer are the first pending rows, in order
            for part, ln in pending:
                take = min(left, part.num_rows)
                if take:
                    yield from emit(part.slice(0, take), ln[:take])
                left -= take
            if footer < len(tail):
                skipped.setdefault("footer", []).extend(t[0] for t in tail[footer:])
            for k in skipped:
                skipped[k].sort()
            note_skipped(notes, skipped, where, "line")
            if out_row == 1:
                notes.append(f"{where}: no data rows below the header (line {found.start_line})")
        finally:
            src.close()
            if tmp is not None:
                tmp.unlink(missing_ok=True)

    def _arrow_problem(e: Exception, near_line: int) -> FileRejected:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "UTF8" in msg or "UTF-8" in msg:
            p = first_bad_utf8(path, enc.bom)
            if p is not None:
                return reject(f"line {p.line}: {p.detail}; save the export as UTF-8 and drop it again")
        if "straddling" in msg or "block" in msg:
            return reject(f"from line {near_line} on, a cell opened with a double quote (\") is never closed, or a "
                          f"row is longer than {BLOCK_SIZE >> 20} MB; check the quotes around that line")
        return reject(f"cannot be read as CSV after line {near_line - 1}: {msg}")

    return ReadResult(path=path, source=source, entity=entity, format=fmt, file_kind="csv", encoding=enc.label,
                      delimiter=delim, header_rows=[found.start_line], first_data_line=found.end_line + 1,
                      columns=hm.columns, unknown_columns=hm.unknown_columns, batches=batches(), notes=notes,
                      skipped=skipped)
