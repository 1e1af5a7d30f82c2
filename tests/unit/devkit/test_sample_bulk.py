"""The bulk dossier CSV writer for benchmarks and the legacy-encoding helpers."""

from __future__ import annotations

import csv
import unicodedata

from devkit.sample.bulk import HEADERS, write_agencies_csv, write_dossier_csv
from devkit.sample.encodings import cp1252_mojibake, encode_cp1258, undo_cp1252_mojibake


def test_bulk_csv_rows_headers_and_agencies(tmp_path):
    p = write_dossier_csv(tmp_path / "d.csv", 1234, seed=3, chunk_rows=500)  # several chunks
    a = write_agencies_csv(tmp_path / "agencies.csv")
    with p.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == HEADERS
    body = rows[1:]
    assert len(body) == 1234
    with a.open(encoding="utf-8") as fh:
        codes = {r["agency_code"] for r in csv.DictReader(fh)}
    assert {r[5] for r in body} <= codes
    assert all(r[0].split("-")[0] == r[5] for r in body)
    assert {r[16] for r in body} <= {"Có", "Không"}
    assert any(r[3] == "" for r in body)  # some empty cells
    assert all(len(r[21]) == 12 and r[21][0] == "0" for r in body)
    assert all(len(r[8]) == 19 and r[8][2] == "/" and r[8][5] == "/" for r in body)
    assert len({r[0] for r in body}) < len(body)  # versions of the same dossier
    assert write_dossier_csv(tmp_path / "e.csv", 1234, seed=3, chunk_rows=500).read_bytes() == p.read_bytes()


def test_legacy_encodings_round_trip():
    s = "Đăng ký khai sinh; Nguyễn Thị Ưng; Hòa giải tranh chấp đất đai; ặ ữ ỵ"
    b = encode_cp1258(s)
    assert b"\xcc" in b or b"\xde" in b or b"\xf2" in b  # combining tone marks are used
    assert unicodedata.normalize("NFC", b.decode("cp1258")) == s
    m = cp1252_mojibake(s)
    assert m != s and undo_cp1252_mojibake(m) == s
