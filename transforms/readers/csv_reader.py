"""Flat CSV exports: UTF-8 with or without BOM, delimiter ``,`` or ``;``, header on line 1.

UTF-8 files stream through ``pyarrow.csv.open_csv`` (every column string, empty cell null), so a file of
millions of rows is read in bounded memory without per-row Python. Files in a legacy encoding are decoded
with certainty or rejected, never loaded as garbled text:
- not valid UTF-8: tried as Windows-1258 (cp1258; the decoded text is NFC-normalised, since cp1258 writes tone
  marks as combining characters);
- valid UTF-8 showing CP1252 round-trip damage ("MÃ£ há»“ sÆ¡"): repaired by encoding back to cp1252 and
  decoding as UTF-8, only if that round trip succeeds for the whole file.
After decoding, the required headers must match the mapping and the text must hold no U+FFFD, C1 or other
control characters; otherwise the file is rejected. Legacy files are transcoded to UTF-8 once (in memory when
small, else in a temporary file) and then streamed like any other.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import tempfile
import unicodedata
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
    match_headers,
    required_columns,
)

SAMPLE_BYTES = 1 << 20  # what encoding and delimiter sniffing look at
IN_MEMORY_TRANSCODE_MAX = 256 << 20  # legacy files larger than this are transcoded into a temporary file
TRANSCODE_CHUNK = 8 << 20
BLOCK_SIZE = 1 << 20  # pyarrow block size: measured fastest (1M rows: 0.9 s at 1 MB, 2.5 s at 16 MB)
BOM = b"\xef\xbb\xbf"
# text that cannot be a real export: replacement character, C0 controls other than tab/CR/LF, DEL, C1 controls
_BAD_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]")
# blank cells read as null without per-row work (pyarrow matches these exactly while parsing)
_NULL_VALUES = ["", *(" " * n for n in range(1, 9)), "\t"]


def _c1_passthrough(err: UnicodeError):
    """cp1252 leaves 0x81, 0x8D, 0x8F, 0x90, 0x9D undefined; Windows maps them to U+0081.. when it damages
    text, so encoding back maps those C1 characters to the same byte."""
    if isinstance(err, UnicodeEncodeError):
        chunk = err.object[err.start:err.end]
        if all(0x80 <= ord(ch) <= 0x9F for ch in chunk):
            return bytes(ord(ch) for ch in chunk), err.end
    raise err


codecs.register_error("tthc_c1_passthrough", _c1_passthrough)


def repair_mojibake(text: str) -> str:
    """Undoes a CP1252 round trip ("Ä‘" -> "đ"); raises UnicodeError when the text is not such damage."""
    return text.encode("cp1252", errors="tthc_c1_passthrough").decode("utf-8")


def _decode_legacy(kind: str, text_or_bytes) -> str:
    if kind == "cp1258":
        return unicodedata.normalize("NFC", text_or_bytes.decode("cp1258"))
    # mojibake: bytes are valid UTF-8 whose text is damaged
    return repair_mojibake(text_or_bytes.decode("utf-8"))


def _first_line(text: str) -> str:
    i = text.find("\n")
    return (text if i < 0 else text[:i]).rstrip("\r").lstrip("\ufeff")


def _parse_header(line: str, delim: str) -> list[str]:
    row = next(csv.reader([line], delimiter=delim), [])
    return [c.strip() for c in row]


def _sniff(line: str, fmt: str, entity: str) -> tuple[str, HeaderMatch]:
    """Chooses the delimiter (``,`` or ``;``) under which the header matches the mapping best."""
    best: tuple[tuple[int, int], str, HeaderMatch] | None = None
    for delim in (",", ";"):
        hm = match_headers(_parse_header(line, delim), fmt, entity)
        key = (hm.score, len(hm.headers))
        if best is None or key > best[0]:
            best = (key, delim, hm)
    assert best is not None
    return best[1], best[2]


def _has_required(hm: HeaderMatch, source: str, entity: str, fmt: str) -> bool:
    return hm.score > 0 and all(c in hm.columns for c in required_columns(source, entity, fmt))


def _looks_like_mojibake(text: str) -> bool:
    """True when the text survives the CP1252 round trip and changes: real Vietnamese text cannot (its letters
    are outside CP1252), damaged text can."""
    try:
        fixed = repair_mojibake(text)
    except UnicodeError:
        return False
    return fixed != text


def _transcode(path: Path, kind: str) -> tuple[pa.NativeFile, Path | None]:
    """Decodes the whole file (cp1258 or mojibake repair) into UTF-8, checking every piece; line-aligned
    chunks keep multi-byte and combining sequences whole. Returns a readable stream and a temp file to delete."""
    size = path.stat().st_size
    tmp_path: Path | None = None
    if size <= IN_MEMORY_TRANSCODE_MAX:
        out: io.BufferedIOBase = io.BytesIO()
    else:
        fd, name = tempfile.mkstemp(prefix=".tthc-transcode-", suffix=".csv")
        os.chmod(name, 0o600)  # may hold personal data
        tmp_path = Path(name)
        out = os.fdopen(fd, "wb")
    line_no = 1
    try:
        with path.open("rb") as fh:
            rest = b""
            first = True
            while True:
                chunk = fh.read(TRANSCODE_CHUNK)
                data = rest + chunk
                if not chunk:
                    piece, rest = data, b""
                else:
                    cut = data.rfind(b"\n")
                    if cut < 0:
                        rest = data
                        continue
                    piece, rest = data[:cut + 1], data[cut + 1:]
                if first:
                    piece = piece.removeprefix(BOM)
                    first = False
                if piece:
                    try:
                        text = _decode_legacy(kind, piece)
                    except UnicodeError as e:
                        bad_line = line_no + piece[: getattr(e, "start", 0)].count(b"\n")
                        raise FileRejected(path, _uncertain(path, kind, f"undecodable text near line {bad_line}"))
                    if kind == "mojibake":
                        text = text.removeprefix("\ufeff")
                    m = _BAD_CHARS.search(text)
                    if m:
                        bad_line = line_no + text.count("\n", 0, m.start())
                        raise FileRejected(path, _uncertain(
                            path, kind, f"control or replacement character U+{ord(m.group()):04X} on line {bad_line}"))
                    out.write(text.encode("utf-8"))
                    line_no += piece.count(b"\n")
                if not chunk:
                    break
        if tmp_path is None:
            assert isinstance(out, io.BytesIO)
            return pa.BufferReader(pa.py_buffer(out.getvalue())), None
        out.close()
        return pa.OSFile(str(tmp_path), "rb"), tmp_path
    except BaseException:
        if tmp_path is not None:
            out.close()
            tmp_path.unlink(missing_ok=True)
        raise


def _uncertain(path: Path, kind: str, detail: str) -> str:
    what = {"cp1258": "Windows-1258 (cp1258)", "mojibake": "UTF-8 damaged by a CP1252 round trip"}[kind]
    return (f"file {path.name}: the text encoding could not be determined with certainty (not valid UTF-8 "
            f"and not clean {what}: {detail}); save the export as UTF-8 and drop it again"
            if kind == "cp1258" else
            f"file {path.name}: the text encoding could not be determined with certainty (it looks like "
            f"{what}, but the repair fails: {detail}); save the export as UTF-8 and drop it again")


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


def read_csv(path: Path, source: str, entity: str, batch_rows: int) -> ReadResult:
    fmt = "flat_export"
    size = path.stat().st_size
    with path.open("rb") as fh:
        sample = fh.read(SAMPLE_BYTES)
    if not sample.removeprefix(BOM).strip():
        raise FileRejected(path, f"file {path.name}: the file is empty (no header line)")
    bom = sample.startswith(BOM)
    body = sample[len(BOM):] if bom else sample
    complete = size <= SAMPLE_BYTES
    if not complete:  # judge whole lines only
        cut = body.rfind(b"\n")
        body = body[:cut + 1] if cut > 0 else body
    kind = "utf-8"
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(body, final=complete)
    except UnicodeDecodeError:
        kind = "cp1258"
        try:
            text = _decode_legacy("cp1258", body)
        except UnicodeDecodeError as e:
            raise FileRejected(path, _uncertain(path, "cp1258", f"byte 0x{body[e.start]:02X} at offset {e.start} is "
                                                                "not Windows-1258 text either"))
    delim, hm = _sniff(_first_line(text), fmt, entity)
    if kind == "utf-8":
        # the text (or at least its header) shows the round-trip damage: the header may still match through
        # an ASCII alias, or the damage may be partial (then the whole-file repair below rejects the file)
        for probe in (text, _first_line(text)):
            if _looks_like_mojibake(probe):
                d2, hm2 = _sniff(_first_line(repair_mojibake(probe)), fmt, entity)
                if hm2.score >= hm.score and (probe is text or hm2.score > hm.score):
                    kind, delim, hm = "mojibake", d2, hm2
                    break
    if kind != "utf-8":
        if not _has_required(hm, source, entity, fmt):  # the certainty test, part 1 (part 2: _transcode)
            missing = [c for c in required_columns(source, entity, fmt) if c not in hm.columns]
            raise FileRejected(path, _uncertain(
                path, kind, "after decoding, the header does not match the expected columns"
                + (f" (missing: {', '.join(missing)})" if missing else "")))
    if hm.score == 0:
        raise FileRejected(path, f"file {path.name}: no header found on line 1: none of its columns is a known "
                                 f"{entity} column (expected headers such as the ones in transforms/mappings/"
                                 f"flat_export.yaml)")
    check_required(path, hm, source, entity, fmt, where=" in the header (line 1)")

    encoding = {"utf-8": "utf-8-sig" if bom else "utf-8", "cp1258": "cp1258",
                "mojibake": "cp1252-mojibake-repaired"}[kind]
    ncols = len(hm.headers)
    names = [f"c{i}" for i in range(ncols)]
    read_opts = pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=BLOCK_SIZE, encoding="utf8")
    parse_opts = pacsv.ParseOptions(delimiter=delim, newlines_in_values=True, quote_char='"', double_quote=True)
    conv_opts = pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=True,
                                     null_values=_NULL_VALUES, quoted_strings_can_be_null=True)
    if kind == "utf-8":
        stream_source: pa.NativeFile | None = None
        tmp: Path | None = None
    else:
        stream_source, tmp = _transcode(path, kind)  # rejects the file now if any part is not clean

    def batches() -> Iterator[pa.RecordBatch]:
        from transforms.staging import ingest_memory_pool

        src = stream_source if stream_source is not None else pa.OSFile(str(path), "rb")
        row = 1
        extra_lines = 0  # line breaks inside quoted cells so far
        try:
            try:
                reader = pacsv.open_csv(src, read_options=read_opts, parse_options=parse_opts,
                                        convert_options=conv_opts, memory_pool=ingest_memory_pool())
            except pa.ArrowInvalid as e:
                raise FileRejected(path, _arrow_reason(path, e)) from e
            if not reader.schema.names:
                return
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                except pa.ArrowInvalid as e:
                    raise FileRejected(path, _arrow_reason(path, e, row)) from e
                for off in range(0, batch.num_rows, batch_rows):
                    part = batch.slice(off, batch_rows) if batch.num_rows > batch_rows else batch
                    n = part.num_rows
                    if n == 0:
                        continue
                    idx = np.arange(row, row + n, dtype=np.int64)
                    nl = _newlines_per_row(part)
                    if nl is None:
                        lines = idx + 1 + extra_lines
                    else:
                        before = np.cumsum(nl) - nl
                        lines = idx + 1 + extra_lines + before
                        extra_lines += int(nl.sum())
                    yield arrow_to_batch(source, entity, hm, part, row, pa.array(lines, pa.int64()))
                    row += n
        finally:
            src.close()
            if tmp is not None:
                tmp.unlink(missing_ok=True)

    return ReadResult(path=path, source=source, entity=entity, format=fmt, file_kind="csv", encoding=encoding,
                      delimiter=delim, header_rows=[1], first_data_line=2, columns=hm.columns,
                      unknown_columns=hm.unknown_columns, batches=batches())


def _arrow_reason(path: Path, e: Exception, row: int | None = None) -> str:
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    where = f" after data row {row - 1}" if row and row > 1 else ""
    if "invalid UTF8" in msg or "UTF8" in msg:
        return (f"file {path.name}: not valid UTF-8 text{where} although its start is; mixed encodings cannot "
                f"be read with certainty ({msg})")
    return f"file {path.name}: cannot be read as CSV{where}: {msg} (every line must have as many fields as the header)"
