"""File readers: one inbox file -> raw record batches (every value text) under canonical column names.

The mapping files in transforms/mappings/ (data, not code) say which header or field name means which
canonical column. Every batch has exactly ``raw_schema(source, entity)``: all canonical names of every mapping
file of the entity (missing ones all-null), ``_extra`` (JSON object text of the values of unmapped columns,
null when none), ``_source_row`` (1-based data record ordinal in the file) and ``_source_line`` (what a person
looks up: the sheet row of an XLSX, the physical line of a CSV (title block, blank lines and line breaks inside
quoted cells counted), the line of a JSONL, the 1-based element index of a JSON array). Empty or blank cells are
null; text is NFC-normalised.

A file is read by what its bytes are, whatever its extension (``sniff_kind``): a ZIP holding a workbook is an
XLSX, text is CSV, JSON or JSONL by its content. A file read as another kind than its name says gets a sentence
in ``ReadResult.notes``; bytes that are none of these (a PDF, an old .xls, an HTML page) are rejected saying
exactly what the file is.

A file that cannot be read as a whole raises ``FileRejected`` with a plain-words reason. Most problems are
found by ``read_file`` itself; damage far into a large file (a CSV whose start is valid UTF-8 but a later part is
not, a row with the wrong number of fields, a malformed JSONL line after the first batch) is found while
``batches`` is iterated and raises ``FileRejected`` from there: discard the partial batch. The reader never
modifies or moves the input file.

Rows a reader sees and does not take as data (blank rows; a footer below the data and the rows after it that do
not carry the key columns) are listed in ``ReadResult.skipped`` with their lines and in ``ReadResult.notes``
once ``batches`` is exhausted; every other row is a data row (a row breaking a rule is staging's to quarantine).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from transforms.readers._common import (
    FileRejected,
    ReadResult,
    file_label,
    mapping,
    normalize_header,
    raw_schema,
)
from transforms.readers._text import bom_of, utf16_without_bom
from transforms.readers.json_reader import records_to_raw_batch

__all__ = [
    "FileRejected",
    "ReadResult",
    "mapping",
    "normalize_header",
    "raw_schema",
    "read_file",
    "records_to_raw_batch",
    "sniff_kind",
]

KINDS = {".csv": "csv", ".xlsx": "xlsx", ".json": "json", ".jsonl": "jsonl"}
KIND_NAMES = {"csv": "a CSV text file", "xlsx": "an Excel workbook (.xlsx)", "json": "a JSON file",
              "jsonl": "a JSON Lines file"}
HEAD_BYTES = 64 << 10

_MAGIC = [
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"{\\rtf", "an RTF document"),
]
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def _utf16(s: str) -> bytes:
    return s.encode("utf-16-le")


def _zip_kind(path: Path) -> tuple[str | None, str]:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            mimetype = z.read("mimetype")[:100].decode("ascii", "replace") if "mimetype" in names else ""
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return None, "a damaged ZIP file (an Excel workbook cut short, e.g. an interrupted download?)"
    if "xl/workbook.xml" in names:
        return "xlsx", "an Excel workbook"
    if "xl/workbook.bin" in names:
        return None, "an Excel binary workbook (.xlsb); save it as .xlsx"
    if "word/document.xml" in names:
        return None, "a Word document (.docx)"
    if any(n.startswith("ppt/") for n in names):
        return None, "a PowerPoint presentation (.pptx)"
    if "opendocument.spreadsheet" in mimetype:
        return None, "an OpenDocument spreadsheet (.ods); save it as .xlsx"
    shown = ", ".join(names[:5]) + (f", ... ({len(names)} files)" if len(names) > 5 else "")
    return None, f"a ZIP archive (holding {shown or 'nothing'}); unpack it and drop the export itself"


def _head_text(head: bytes) -> str | None:
    """The first bytes as text when they are text (any encoding the readers know), else None."""
    enc = bom_of(head)
    kind = enc.kind if enc else utf16_without_bom(head)
    body = head[enc.bom:] if enc else head
    text = None
    if kind and kind.startswith("utf-16"):
        text = body[:len(body) & ~1].decode(kind, errors="replace")
    else:
        import codecs

        try:
            text = codecs.getincrementaldecoder("utf-8")().decode(body, final=False)
        except UnicodeDecodeError:
            try:
                text = body.decode("cp1258")
            except UnicodeDecodeError:
                text = body.decode("cp1258", errors="replace")
    if not text:
        return text
    controls = sum(1 for ch in text if (ord(ch) < 32 and ch not in "\t\r\n") or ch == "\ufffd")
    return None if controls > max(4, len(text) // 20) else text


def sniff_kind(path: Path, ext_kind: str | None = None) -> tuple[str | None, str]:
    """(kind, what the file is): kind 'xlsx' | 'csv' | 'json' | 'jsonl' when the bytes are one of these, else None
    and a description of what they are ('a PDF document', 'an old Excel 97-2003 workbook (.xls) ...')."""
    with Path(path).open("rb") as fh:
        head = fh.read(HEAD_BYTES)
    if not head:
        return None, "empty (0 bytes)"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        return _zip_kind(path)
    if head.startswith(_OLE2):
        if _utf16("EncryptionInfo") in head or _utf16("EncryptedPackage") in head:
            return None, "a password-protected Excel workbook; save it without a password"
        if _utf16("WordDocument") in head:
            return None, "an old Word document (.doc)"
        return None, "an old Excel 97-2003 workbook (.xls); open it in Excel and save it as .xlsx"
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return None, what
    text = _head_text(head)
    if text is None:
        return None, f"binary data of no known export format (it starts with bytes {head[:8].hex(' ')})"
    t = text.lstrip("\ufeff \t\r\n")
    low = t[:400].lower()
    if low.startswith(("<!doctype html", "<html", "<table", "<head", "<body", "<meta")):
        return None, "an HTML page (a web report saved under a spreadsheet name?); export it as .xlsx or .csv"
    if low.startswith("<?xml") or low.startswith("<"):
        if "urn:schemas-microsoft-com:office:spreadsheet" in text or "excel.sheet" in low:
            return None, "an Excel 2003 XML spreadsheet; open it in Excel and save it as .xlsx"
        return None, "an XML document"
    if t.startswith("["):
        return "json", "JSON text"
    if t.startswith("{"):
        lines = [ln.strip() for ln in t.split("\n") if ln.strip()]
        if ext_kind == "jsonl" or (len(lines) > 1 and lines[1].startswith("{") and lines[0].endswith("}")):
            return "jsonl", "JSON Lines text"
        return "json", "JSON text"
    if not t:
        return None, "empty (only blank lines)"
    return "csv", "text (a CSV?)"


def read_file(path: Path, source: str, entity: str, batch_rows: int = 500_000) -> ReadResult:
    """Opens one inbox file of ``<source>/<entity>/`` and returns what it holds; batches are produced lazily."""
    path = Path(path)
    if batch_rows < 1:
        raise ValueError("batch_rows must be at least 1")
    raw_schema(source, entity)  # an unknown entity is a programming error, not a bad file
    name = file_label(path, source, entity)
    ext_kind = KINDS.get(path.suffix.lower())
    if ext_kind is None:
        raise FileRejected(path, f"file {name}: unsupported file type '{path.suffix}'; expected one of "
                                 f"{', '.join(KINDS)}")
    if not path.is_file():
        raise FileRejected(path, f"file {name}: not found or not a regular file")
    try:
        kind, what = sniff_kind(path, ext_kind)
    except PermissionError as e:  # other I/O trouble (a network share) propagates: the caller may retry
        raise FileRejected(path, f"file {name}: cannot be opened ({e.strerror or 'permission denied'}); check that "
                                 "the pipeline's user may read it") from e
    if kind is None:
        if what.startswith("empty"):
            raise FileRejected(path, f"file {name}: the file is {what}")
        raise FileRejected(path, f"file {name} is not {KIND_NAMES[ext_kind]}: it is {what}")
    notes: list[str] = []
    if kind != ext_kind:
        notes.append(f"file {name} is not {KIND_NAMES[ext_kind]}: it holds {what}; it was read as "
                     f"{KIND_NAMES[kind]}")
    try:
        if kind == "csv":
            from transforms.readers.csv_reader import read_csv

            return read_csv(path, source, entity, batch_rows, notes=notes)
        if kind == "xlsx":
            from transforms.readers.xlsx_reader import read_xlsx

            return read_xlsx(path, source, entity, batch_rows, notes=notes)
        from transforms.readers.json_reader import read_json, read_jsonl

        if kind == "json":
            return read_json(path, source, entity, batch_rows, notes=notes)
        return read_jsonl(path, source, entity, batch_rows, notes=notes)
    except FileRejected as e:
        if kind == ext_kind:
            raise
        detail = e.reason.removeprefix(f"file {name}: ").removeprefix(f"file {name}, ")
        raise FileRejected(path, f"file {name} is not {KIND_NAMES[ext_kind]}: it holds {what}, and read as "
                                 f"{KIND_NAMES[kind]} it fails: {detail}") from e
