"""Flat CSV exports as offices save them.

- Encoding (transforms/readers/_text.py): UTF-8 with or without BOM, UTF-16 LE/BE with or without BOM,
  Windows-1258, UTF-8 damaged by a CP1252 round trip (repaired only if the repair works for the whole file).
  A guess (cp1258, mojibake, UTF-16 without BOM) must be confirmed by the header, else the file is rejected.
- Delimiter ``,``, ``;``, tab or ``|``, and the header line: among the first 60 lines (a title block such as
  'UBND TỈNH ...', 'DANH SÁCH HỒ SƠ', '' may come first), the line and delimiter under which the header names
  the most mapped columns (ties: the earliest line, then the most fields). Both are found from the file's first
  bytes by ``_csv_layout.sniff_layout``.
- Values: every column string, empty or blank cells null, NFC-normalised. Control characters other than tab,
  CR and LF (NUL, ESC, BEL) stay in the value they are in; staging quarantines that row (``control_character``).
  U+FFFD or C1 controls in the text mean a wrong encoding: the file is rejected naming the line and column.
- Rows: a blank row (every cell empty, or an empty line) is skipped and counted. After the last row carrying
  every key column (and not itself a footer row: a signature may fill the key columns), the rows left are
  looked at: from a footer row on (a row starting with 'Tổng', 'Cộng',
  'Người lập', 'Ghi chú', ... or holding one cell of text outside the key columns) they are the footer, not data,
  and are listed in ``ReadResult.skipped['footer']`` and the notes; rows before the footer are data. A line with
  the wrong number of fields is rejected with its line number, unless it is part of the footer.
- ``_source_line`` is the physical line (title block, blank lines and line breaks inside quoted cells counted;
  ``_csv_lines``).

UTF-8 files stream through ``pyarrow.csv.open_csv`` (bounded memory, no per-row Python); other encodings are
transcoded to UTF-8 once (in memory when small, else in a temporary file) and then streamed the same way. Each
batch pyarrow gives goes through the steps of ``_RowStream.batches``: its rows' physical lines, the text check,
blank rows out, the last data row found; the rows after it are held back (``_FooterWatch``) until a later data
row or the end of the file tells whether they are data or the footer.
"""

from __future__ import annotations

import csv
import io
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from transforms.readers._common import (
    HeaderMatch,
    ReadResult,
    arrow_to_batch,
    check_required,
    file_label,
    is_footer_start,
    key_columns,
    note_skipped,
    scan_text,
)
from transforms.readers._csv_layout import DELIMITER_NAMES, FMT, CsvFile, CsvHeader, sniff_layout
from transforms.readers._csv_lines import LineCounter
from transforms.readers._text import DecodeProblem, Encoding, first_bad_utf8, transcode

SAMPLE_BYTES = 1 << 20  # what encoding, delimiter and header sniffing look at
BLOCK_SIZE = 1 << 20  # pyarrow block size: measured fastest (1M rows: 0.9 s at 1 MB, 2.5 s at 16 MB)
TAIL_MAX = 1000  # rows without their key columns held back at the end of the file to look for a footer
# blank cells read as null without per-row work (pyarrow matches these exactly while parsing)
_NULL_VALUES = ["", *(" " * n for n in range(1, 9)), "\t"]

Lines = np.ndarray  # the physical line of each row of a batch (int64)


def read_csv(path: Path, source: str, entity: str, batch_rows: int, notes: list[str] | None = None) -> ReadResult:
    f = CsvFile(path, source, entity, file_label(path, source, entity))
    enc, found = sniff_layout(f, *_read_sample(path))
    hm = found.hm
    check_required(path, hm, source, entity, FMT, where=f" in the header (line {found.start_line})")
    stream_source, tmp = _utf8_source(f, enc)
    notes = notes if notes is not None else []
    skipped: dict[str, list[int]] = {}
    rows = _RowStream(f, enc, found, batch_rows, TAIL_MAX, notes, skipped)
    batches = rows.batches(stream_source, tmp)
    if tmp is not None:  # a result dropped before its batches were read still removes its transcoded copy
        weakref.finalize(batches, _discard, stream_source, tmp)
    return ReadResult(path=path, source=source, entity=entity, format=FMT, file_kind="csv", encoding=enc.label,
                      delimiter=found.delim, header_rows=[found.start_line], first_data_line=found.end_line + 1,
                      columns=hm.columns, unknown_columns=hm.unknown_columns,
                      batches=batches, notes=notes, skipped=skipped)


def _discard(src: pa.NativeFile | None, tmp: Path) -> None:
    """Close and delete a transcoded copy (mode 0600, it holds the export's personal data)."""
    if src is not None:
        src.close()
    tmp.unlink(missing_ok=True)


def _read_sample(path: Path) -> tuple[bytes, bool]:
    """The first ``SAMPLE_BYTES`` of the file, and whether they are the whole file."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        sample = fh.read(SAMPLE_BYTES)
    return sample, size <= SAMPLE_BYTES


def _utf8_source(f: CsvFile, enc: Encoding) -> tuple[pa.NativeFile | None, Path | None]:
    """(None, None) for a UTF-8 file (streamed as it is); else the whole file transcoded to UTF-8 and its
    temporary file, if any. Rejects the file now if any part of it is not clean."""
    if enc.kind == "utf-8":
        return None, None
    try:
        return transcode(f.path, enc)
    except DecodeProblem as p:
        raise f.reject(f"line {p.line}: {p.detail}; the text encoding ({enc.describe}) cannot be read with "
                       "certainty: save the export as UTF-8 and drop it again") from None


def _arrow_options(header: CsvHeader, on_invalid) -> tuple[pacsv.ReadOptions, pacsv.ParseOptions,
                                                             pacsv.ConvertOptions]:
    """pyarrow's options: every column a string named by position, the lines up to the header's end skipped."""
    names = [f"c{i}" for i in range(len(header.hm.headers))]
    read_opts = pacsv.ReadOptions(column_names=names, skip_rows=header.end_line, block_size=BLOCK_SIZE,
                                  encoding="utf8", use_threads=False)  # row numbers of bad rows: single-threaded only
    parse_opts = pacsv.ParseOptions(delimiter=header.delim, newlines_in_values=True, quote_char='"', double_quote=True,
                                    ignore_empty_lines=False, invalid_row_handler=on_invalid)
    conv_opts = pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=True,
                                     null_values=_NULL_VALUES, quoted_strings_can_be_null=True)
    return read_opts, parse_opts, conv_opts


# --------------------------------------------------------------------------------------------- one batch
def _check_text(f: CsvFile, batch: pa.RecordBatch, lines: Lines, headers: list[str]) -> pa.RecordBatch:
    """The batch NFC-normalised; rejects the file at U+FFFD or a C1 control (a wrong encoding; transcoded text
    was checked while transcoding)."""
    cols = []
    for col, arr in enumerate(batch.columns):
        arr, row, ch = scan_text(arr)
        if row is not None:
            head = headers[col] or f"column {col + 1}"
            what = ("U+FFFD (the replacement character �): characters were lost when the file was "
                    "converted" if ch == "\ufffd" else
                    f"U+{ord(ch):04X}, a C1 control character: the text was decoded with the wrong "
                    "code page")
            raise f.reject(f"line {int(lines[row])}, column '{head}': {what}; the text encoding is "
                           "wrong: export the file again as UTF-8")
        cols.append(arr)
    return pa.RecordBatch.from_arrays(cols, names=batch.schema.names)


def _drop_blank(batch: pa.RecordBatch, lines: Lines, skipped: dict[str, list[int]]
                ) -> tuple[pa.RecordBatch, Lines]:
    """The batch without its blank rows (every cell empty), their lines listed in ``skipped['blank']``."""
    if not all(c.null_count for c in batch.columns):
        return batch, lines  # some column is filled on every row: no row is blank
    blank = np.ones(batch.num_rows, dtype=bool)
    for c in batch.columns:
        blank &= c.is_null().to_numpy(zero_copy_only=False)
    if not blank.any():
        return batch, lines
    skipped.setdefault("blank", []).extend(int(x) for x in lines[blank])
    keep = np.flatnonzero(~blank)
    return batch.take(pa.array(keep)), lines[keep]


def _with_keys(batch: pa.RecordBatch, key_idx: list[int]) -> np.ndarray:
    """Indices of the rows whose key columns are all filled."""
    has_keys = np.ones(batch.num_rows, dtype=bool)
    for i in key_idx:
        has_keys &= batch.column(i).is_valid().to_numpy(zero_copy_only=False)
    return np.flatnonzero(has_keys)


def _row_cells(batch: pa.RecordBatch, j: int) -> list[str | None]:
    return [batch.column(i)[j].as_py() for i in range(batch.num_columns)]


def _last_data_row(batch: pa.RecordBatch, key_idx: list[int]) -> int:
    """The last row carrying every key column and not itself a footer row (a signature line may fill the key
    columns), -1 when none: the rows after it may be a footer."""
    key_set = set(key_idx)
    n = batch.num_rows
    idx = None
    if not key_idx or all(batch.column(i)[n - 1].is_valid for i in key_idx):
        last = n - 1
    else:
        idx = _with_keys(batch, key_idx)
        last = int(idx[-1]) if idx.size else -1
    while last >= 0 and is_footer_start(_row_cells(batch, last), key_set):
        idx = _with_keys(batch, key_idx) if idx is None else idx
        earlier = idx[idx < last]
        last = int(earlier[-1]) if earlier.size else -1
    return last


# --------------------------------------------------------------------------------------------- held rows
@dataclass
class _FooterWatch:
    """The rows after the last data row so far, held back (they may be the footer), and the rows with the wrong
    number of fields not yet judged (a footer row may have any number of fields; a data row may not)."""

    f: CsvFile
    header: CsvHeader
    key_set: set[int]
    tail_max: int  # held rows beyond this many are data after all (too long for a footer)
    skipped: dict[str, list[int]]
    pending: list[tuple[pa.RecordBatch, Lines]] = field(default_factory=list)
    pending_n: int = 0
    bad_rows: list[tuple[int, str]] = field(default_factory=list)  # (line, text), not yet judged

    def _cells(self, text: str) -> list[str | None]:
        cells = next(csv.reader(io.StringIO(text, newline=""), delimiter=self.header.delim), [])
        return [c if c.strip() else None for c in cells]

    def _field_count_problem(self, line: int, text: str):
        delim, ncols = self.header.delim, len(self.header.hm.headers)
        got = len(next(csv.reader([text], delimiter=delim), []))
        return self.f.reject(f"cannot be read as CSV: line {line} has {got} field{'s' if got != 1 else ''} where "
                             f"the header (line {self.header.start_line}) has {ncols} ({DELIMITER_NAMES[delim]}-"
                             "separated); a value holding the delimiter needs double quotes, and the file may have "
                             "been cut short or edited by hand")

    def _data_up_to(self, line: int) -> None:
        """Rows up to ``line`` are data. A bad row before it is a footer row when it is a footer start or
        follows one (a footer inside the data, data after it), else it is a malformed data row: rejected."""
        in_footer = False
        for bad_line, text in sorted(self.bad_rows):
            if bad_line >= line:
                break
            if in_footer or is_footer_start(self._cells(text), self.key_set):
                in_footer = True
                self.skipped.setdefault("footer", []).append(bad_line)
            else:
                raise self._field_count_problem(bad_line, text)

    def take(self, batch: pa.RecordBatch, lines: Lines, last: int) -> Iterator[tuple[pa.RecordBatch, Lines]]:
        """The rows that are data now, in order (held rows, then the batch up to ``last``, its last data row);
        the rows after ``last`` are held."""
        if last >= 0:
            self._data_up_to(int(lines[last]))
            yield from self.pending
            self.pending.clear()
            self.pending_n = 0
            yield batch.slice(0, last + 1), lines[:last + 1]
            self.bad_rows[:] = [b for b in self.bad_rows if b[0] > lines[last]]
        n = batch.num_rows
        if last + 1 < n:
            self.pending.append((batch.slice(last + 1), lines[last + 1:]))
            self.pending_n += n - last - 1
        while self.pending_n > self.tail_max and len(self.pending) > 1:  # too long for a footer: data after all
            part, ln = self.pending.pop(0)
            self.pending_n -= part.num_rows
            self._data_up_to(int(ln[-1]))
            yield part, ln

    def finish(self) -> Iterator[tuple[pa.RecordBatch, Lines]]:
        """The end of the file: of the held rows and bad rows, in line order, those before the first footer row
        are data (a bad one is rejected), the rest the footer."""
        ncols = len(self.header.hm.headers)
        tail: list[tuple[int, list[str | None], str | None]] = []
        for part, ln in self.pending:
            cols = [part.column(i).to_pylist() for i in range(ncols)]
            tail.extend((int(ln[j]), [c[j] for c in cols], None) for j in range(part.num_rows))
        for line, text in self.bad_rows:
            tail.append((line, self._cells(text), text))
        tail.sort(key=lambda t: t[0])
        footer = next((k for k, t in enumerate(tail) if is_footer_start(t[1], self.key_set)), len(tail))
        for line, _row, what in tail[:footer]:
            if isinstance(what, str):
                raise self._field_count_problem(line, what)
        left = footer  # the rows before the footer are the first pending rows, in order
        for part, ln in self.pending:
            take = min(left, part.num_rows)
            if take:
                yield part.slice(0, take), ln[:take]
            left -= take
        if footer < len(tail):
            self.skipped.setdefault("footer", []).extend(t[0] for t in tail[footer:])


# --------------------------------------------------------------------------------------------- the stream
@dataclass
class _Emitter:
    """Gives data rows out as raw batches of at most ``batch_rows`` rows, numbering them (``_source_row``)."""

    source: str
    entity: str
    hm: HeaderMatch
    batch_rows: int
    out_row: int = 1  # _source_row of the next row given out

    def emit(self, part: pa.RecordBatch, lines: Lines) -> Iterator[pa.RecordBatch]:
        for off in range(0, part.num_rows, self.batch_rows):
            piece = part.slice(off, self.batch_rows) if part.num_rows > self.batch_rows else part
            if piece.num_rows:
                yield arrow_to_batch(self.source, self.entity, self.hm, piece, self.out_row,
                                     pa.array(lines[off:off + piece.num_rows], pa.int64()), normalized=True)
                self.out_row += piece.num_rows


class _RowStream:
    """The rows below the header, streamed: pyarrow's batches, each through the steps of ``batches``."""

    def __init__(self, f: CsvFile, enc: Encoding, header: CsvHeader, batch_rows: int, tail_max: int,
                 notes: list[str], skipped: dict[str, list[int]]):
        self.f, self.enc, self.header, self.notes, self.skipped = f, enc, header, notes, skipped
        keys = set(key_columns(f.source, f.entity))
        self.key_idx = [i for i, c in enumerate(header.hm.canonical) if c in keys]
        self.lines = LineCounter(skip_rows=header.end_line, last_line=header.end_line)
        self.watch = _FooterWatch(f, header, set(self.key_idx), tail_max, skipped)
        self.out = _Emitter(f.source, f.entity, header.hm, batch_rows)

    def batches(self, stream_source: pa.NativeFile | None, tmp: Path | None) -> Iterator[pa.RecordBatch]:
        src = stream_source if stream_source is not None else pa.OSFile(str(self.f.path), "rb")
        try:
            reader = self._open(src)
            if not reader.schema.names:
                return
            for batch in self._parsed(reader):
                lines, placed = self.lines.place(batch)
                self.watch.bad_rows.extend(placed)
                batch = _check_text(self.f, batch, lines, self.header.hm.headers)
                batch, lines = _drop_blank(batch, lines, self.skipped)
                if batch.num_rows == 0:
                    continue
                for part, ln in self.watch.take(batch, lines, _last_data_row(batch, self.key_idx)):
                    yield from self.out.emit(part, ln)
            self.watch.bad_rows.extend(self.lines.bad_rows_left())  # after the last row pyarrow gave
            for part, ln in self.watch.finish():
                yield from self.out.emit(part, ln)
            self._note_end()
        finally:
            src.close()
            if tmp is not None:
                tmp.unlink(missing_ok=True)

    def _open(self, src: pa.NativeFile) -> pacsv.CSVStreamingReader:
        from transforms.staging import ingest_memory_pool

        read_opts, parse_opts, conv_opts = _arrow_options(self.header, self.lines.on_invalid)
        try:
            return pacsv.open_csv(src, read_options=read_opts, parse_options=parse_opts,
                                  convert_options=conv_opts, memory_pool=ingest_memory_pool())
        except pa.ArrowInvalid as e:
            raise self._arrow_problem(e, self.header.end_line + 1) from e

    def _parsed(self, reader: pacsv.CSVStreamingReader) -> Iterator[pa.RecordBatch]:
        """pyarrow's non-empty batches; a parse error names the line after the last one read."""
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowInvalid as e:
                raise self._arrow_problem(e, self.lines.last_line + 1) from e
            if batch.num_rows:
                yield batch

    def _arrow_problem(self, e: Exception, near_line: int):
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "UTF8" in msg or "UTF-8" in msg:
            p = first_bad_utf8(self.f.path, self.enc.bom)
            if p is not None:
                return self.f.reject(f"line {p.line}: {p.detail}; save the export as UTF-8 and drop it again")
        if "straddling" in msg or "block" in msg:
            return self.f.reject(f"from line {near_line} on, a cell opened with a double quote (\") is never "
                                 f"closed, or a row is longer than {BLOCK_SIZE >> 20} MB; check the quotes around "
                                 "that line")
        return self.f.reject(f"cannot be read as CSV after line {near_line - 1}: {msg}")

    def _note_end(self) -> None:
        """The notes on what was skipped, once the rows are all given out."""
        where = f"file {self.f.name}"
        for k in self.skipped:
            self.skipped[k].sort()
        note_skipped(self.notes, self.skipped, where, "line")
        if self.out.out_row == 1:
            self.notes.append(f"{where}: no data rows below the header (line {self.header.start_line})")
