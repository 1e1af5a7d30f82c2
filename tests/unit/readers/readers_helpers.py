"""Builders of small inbox files for the reader tests (written into tmp_path, never shipped)."""

from __future__ import annotations

import hashlib
import unicodedata
from pathlib import Path

import pyarrow as pa

from transforms.readers import ReadResult, raw_schema

DOSSIER_HEADERS = ["Mã hồ sơ", "Mã TTHC", "Tên TTHC", "Mã đơn vị", "Trạng thái", "Ngày tiếp nhận",
                   "Số điện thoại", "Ngày cập nhật"]
DOSSIER_ROWS = [
    ["H19.26293-230105-0001", "1.001612", "Đăng ký kết hôn", "H19.26293", "10", "05/01/2023 08:00:00",
     "0912345678", "06/01/2023 09:00:00"],
    ["H19.26293-230105-0002", "2.000815", "Chứng thực bản sao", "", "4", "05/01/2023 09:30:00",
     "", "05/01/2023 10:00:00"],
    ["H19.26296-230106-0001", "1.001193", "Đăng ký khai sinh", "H19.26296", "Đã trả kết quả",
     "06/01/2023", "0387000111", "07/01/2023 11:00:00"],
]


def csv_text(headers, rows, delim=",") -> str:
    def q(v: str) -> str:
        if any(ch in v for ch in (delim, '"', "\n", "\r")):
            return '"' + v.replace('"', '""') + '"'
        return v

    return "\n".join(delim.join(q(v) for v in r) for r in [headers, *rows]) + "\n"


def table(res: ReadResult) -> pa.Table:
    schema = raw_schema(res.source, res.entity)
    batches = list(res.batches)
    for b in batches:
        assert b.schema.equals(schema), "every batch must have exactly the raw schema"
    return pa.Table.from_batches(batches, schema=schema)


def rows(res: ReadResult) -> list[dict]:
    return table(res).to_pylist()


def fingerprint(p: Path) -> tuple[str, int]:
    st = p.stat()
    return hashlib.sha256(p.read_bytes()).hexdigest(), st.st_mtime_ns


def to_cp1258(text: str) -> bytes:
    """Encodes Vietnamese text the way Windows-1258 writes it: base letters with circumflex/breve/horn are
    precomposed where the code page has them, tone marks follow as combining characters."""
    out = bytearray()
    for ch in text:
        try:
            out += ch.encode("cp1258")
            continue
        except UnicodeEncodeError:
            pass
        d = unicodedata.normalize("NFD", ch)
        base, marks = d[0], list(d[1:])
        for m in list(marks):
            composed = unicodedata.normalize("NFC", base + m)
            if len(composed) == 1:
                try:
                    composed.encode("cp1258")
                except UnicodeEncodeError:
                    continue
                base = composed
                marks.remove(m)
                break
        out += (base + "".join(marks)).encode("cp1258")
    return bytes(out)


def to_mojibake(text: str) -> str:
    """UTF-8 bytes read as CP1252 (bytes CP1252 leaves undefined become C1 characters, as Windows does)."""
    out = []
    for b in text.encode("utf-8"):
        try:
            out.append(bytes([b]).decode("cp1252"))
        except UnicodeDecodeError:
            out.append(chr(b))
    return "".join(out)
