"""The sample generator: deterministic, every variant present, manifest consistent with the files it wrote."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import unicodedata
from pathlib import Path

import openpyxl
import pytest

from devkit.sample import generate_inbox
from devkit.sample.encodings import undo_cp1252_mojibake

SCALE = 0.12


@pytest.fixture(scope="module")
def inbox(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("inbox")
    return out, generate_inbox(out, seed=11, scale=SCALE, include_undecodable=True)


def _decode(path: Path, variant: str) -> str:
    raw = path.read_bytes()
    if variant == "csv_cp1258":
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")
        return unicodedata.normalize("NFC", raw.decode("cp1258"))
    text = raw.decode("utf-8")
    if variant == "csv_cp1252_mojibake":
        assert "Ã" in text  # damaged as the variant says
        return undo_cp1252_mojibake(text)
    return text.removeprefix("\ufeff")


def read_back(root: Path, f: dict) -> tuple[list, list[list]]:
    """(header, data rows) of one file as a person reads it; rows are lists of cell values."""
    path = root / f["path"]
    v = f["variant"]
    if f["path"].endswith(".xlsx"):
        ws = openpyxl.load_workbook(path).active
        hdr = [c.value for c in ws[f["header_rows"][-1]]]
        if len(f["header_rows"]) == 2:  # merged vertically: the upper cell names the column
            top = [c.value for c in ws[f["header_rows"][0]]]
            hdr = [h if h is not None else t for h, t in zip(hdr, top)]
        last = (min(f["footer_rows"]) - 2) if f["footer_rows"] else ws.max_row
        rows = [list(r) for r in ws.iter_rows(min_row=f["first_data_row"], max_row=last, values_only=True)]
        return hdr, rows
    if f["path"].endswith(".jsonl"):
        recs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        return list(recs[0]), recs
    if f["path"].endswith(".json"):
        payload = json.loads(path.read_text(encoding="utf-8"))
        recs = payload["data"] if v == "json_data" else payload
        assert isinstance(recs, list)
        return list(recs[0]), recs
    text = _decode(path, v)
    delim = ";" if v == "csv_semicolon" else ","
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delim))
    return rows[0], rows[1:]


def _norm(h: str) -> str:
    s = unicodedata.normalize("NFC", str(h)).strip().lower().removesuffix("(*)").strip()
    return " ".join(s.split())


def test_same_seed_same_files_other_seed_differs(inbox, tmp_path):
    root, manifest = inbox
    again = generate_inbox(tmp_path / "a", seed=11, scale=SCALE, include_undecodable=True)
    assert [f["sha256"] for f in again["files"]] == [f["sha256"] for f in manifest["files"]]
    other = generate_inbox(tmp_path / "b", seed=12, scale=SCALE)
    assert {f["sha256"] for f in other["files"]} != {f["sha256"] for f in manifest["files"]}


def test_every_variant_and_entity_present(inbox):
    root, manifest = inbox
    variants = {f["variant"] for f in manifest["files"] if f["entity"] == "dossiers"}
    assert {"xlsx_title_two_row_header", "xlsx_plain", "csv_utf8_bom_extra_column", "csv_semicolon",
            "csv_nfd_odd_headers", "csv_labels", "csv_cp1258", "csv_cp1252_mojibake", "jsonl", "json_data",
            "json_array", "csv_undecodable"} <= variants
    assert {f["entity"] for f in manifest["files"]} == {
        "dossiers", "procedures", "payments", "ratings", "feedback", "e_certifications"}
    assert sum(f["entity"] == "procedures" for f in manifest["files"]) == 2
    for f in manifest["files"]:
        p = root / f["path"]
        assert p.parts[-3:-1] == tuple(f["path"].split("/")[:2])
        assert hashlib.sha256(p.read_bytes()).hexdigest() == f["sha256"]
    with (root / "agencies.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["agency_code", "agency_name", "level", "parent_code", "valid_from", "valid_to",
                             "successor_code", "legal_basis"]
    assert {r["level"] for r in rows} == {"province", "district", "commune", "department"}
    assert any(r["valid_to"] == "2025-06-30" and r["successor_code"] for r in rows)


def test_manifest_counts_match_files(inbox):
    root, manifest = inbox
    for f in manifest["files"]:
        if f["variant"] == "csv_undecodable":
            with pytest.raises(UnicodeDecodeError):
                (root / f["path"]).read_bytes().decode("utf-8")
            continue
        hdr, rows = read_back(root, f)
        assert len(rows) == f["data_rows"], f["path"]
        assert all(any(c not in (None, "") for c in (r.values() if isinstance(r, dict) else r)) for r in rows)
        inv = [i for i in manifest["invalid_rows"] if i["path"] == f["path"]]
        assert len(inv) == f["invalid_rows"]


def test_two_row_header_and_footer(inbox):
    root, manifest = inbox
    f = next(f for f in manifest["files"] if f["variant"] == "xlsx_title_two_row_header")
    ws = openpyxl.load_workbook(root / f["path"]).active
    top, low = f["header_rows"]
    merged = {str(r) for r in ws.merged_cells.ranges}
    assert any(ws.cell(top, c).value == "Thời gian" for c in range(1, 30))
    assert f"A{top}:A{low}" in merged  # Mã hồ sơ merged vertically
    assert f["footer_rows"] and ws.cell(min(f["footer_rows"]) - 1, 1).value is None  # blank row before footer
    assert str(ws.cell(min(f["footer_rows"]), 1).value).startswith("Tổng cộng")
    hdr, rows = read_back(root, f)
    i = hdr.index("Ngày tiếp nhận")
    assert any(type(r[i]).__name__ == "datetime" for r in rows)  # real Excel dates
    j = hdr.index("Ngày hẹn trả")
    assert any(isinstance(r[j], str) for r in rows)  # text dates


def test_headers_match_after_normalisation(inbox):
    root, manifest = inbox
    plain = next(f for f in manifest["files"] if f["variant"] == "csv_semicolon")
    odd = next(f for f in manifest["files"] if f["variant"] == "csv_nfd_odd_headers")
    h1, _ = read_back(root, plain)
    h2, _ = read_back(root, odd)
    assert h1 != h2 and [_norm(h) for h in h1] == [_norm(h) for h in h2]
    assert any(unicodedata.is_normalized("NFC", h) is False for h in h2)
    assert any(h.endswith("(*)") for h in h2)
    bom = next(f for f in manifest["files"] if f["variant"] == "csv_utf8_bom_extra_column")
    assert (root / bom["path"]).read_bytes().startswith(b"\xef\xbb\xbf")
    h3, _ = read_back(root, bom)
    assert len(h3) == len(h1) + 1  # the unknown extra column


def test_labels_variant(inbox):
    root, manifest = inbox
    f = next(f for f in manifest["files"] if f["variant"] == "csv_labels")
    hdr, rows = read_back(root, f)
    col = {h: [r[i] for r in rows] for i, h in enumerate(hdr)}
    assert "Đã trả kết quả" in col["Trạng thái"]
    assert set(col["Kênh thực hiện"]) <= {"Trực tiếp", "Trực tuyến", "Bưu chính công ích"}
    assert set(col["Có thành phần số hóa"]) == {"Có", "Không"}
    assert set(col["Có kết quả điện tử"]) <= {"x", ""}
    assert any(v.endswith(" đ") and "." in v for v in col["Lệ phí"])


def test_pii_keeps_leading_zeros(inbox):
    root, manifest = inbox
    ids, phones = [], []
    for f in manifest["files"]:
        if f["entity"] != "dossiers" or f["variant"] == "csv_undecodable":
            continue
        hdr, rows = read_back(root, f)
        if isinstance(rows[0], dict):
            ids += [r["SoGiayToChuHoSo"] for r in rows]
            phones += [r["SoDienThoai"] for r in rows]
        else:
            hn = [_norm(h) for h in hdr]
            ids += [r[hn.index("số giấy tờ chủ hồ sơ")] for r in rows]
            phones += [r[hn.index("số điện thoại")] for r in rows]
    assert all(isinstance(x, str) and len(x) == 12 and x.isdigit() for x in ids)
    assert all(isinstance(x, str) and len(x) == 10 and x.startswith("0") for x in phones)
    assert sum(x.startswith("0") for x in ids) > len(ids) * 0.5


def test_invalid_rows_are_where_manifest_says(inbox):
    root, manifest = inbox
    kinds = {i["kind"] for i in manifest["invalid_rows"]}
    assert kinds == {"empty_dossier_id", "impossible_date", "unknown_status", "unknown_agency"}
    assert {i["entity"] for i in manifest["invalid_rows"] if i["kind"] == "unknown_agency"} >= {
        "dossiers", "feedback", "e_certifications"}
    files = {f["path"]: f for f in manifest["files"]}
    agencies = {line.split(",")[0] for line in (root / "agencies.csv").read_text(encoding="utf-8").splitlines()}
    for inv in manifest["invalid_rows"]:
        f = files[inv["path"]]
        hdr, rows = read_back(root, f)
        rec = rows[inv["data_row"] - 1]
        if isinstance(rec, dict):
            assert str(rec[inv["column"]]) == inv["value"]
        else:
            cells = ["" if c is None else str(c) for c in rec]
            assert cells[[_norm(h) for h in hdr].index(_norm(inv["column"]))] == inv["value"]
            if f["path"].endswith(".xlsx"):
                ws = openpyxl.load_workbook(root / f["path"]).active
                assert [c.value for c in ws[inv["row"]]] == list(rec)
        if inv["kind"] == "unknown_agency":
            assert inv["value"] not in agencies
        # the copy's id (unless it is the broken cell) is the record it copies, and its update is the latest
        same = [r for r in rows if (r.get("MaHoSo") if isinstance(r, dict) else r[0]) == inv["copy_of"]]
        if inv["kind"] != "empty_dossier_id":
            assert same


def test_realism_markers(inbox):
    root, manifest = inbox
    f = next(f for f in manifest["files"] if f["variant"] == "jsonl")
    _hdr, recs = read_back(root, f)
    ids = [r["MaHoSo"] for r in recs]
    assert len(ids) > len(set(ids))  # state changes of one dossier in the sync feed
    assert all(set(r) >= {"TaiLieuNop", "DanhSachLePhi", "DanhSachHoSoBoSung", "DanhSachGiayToKetQua"} for r in recs)
    assert all(len(r["NgayCapNhat"]) == 14 for r in recs)
    f2 = next(f for f in manifest["files"] if f["variant"] == "json_data")
    _h, recs2 = read_back(root, f2)
    assert recs2[0]["NgayCapNhat"].endswith("+07:00")
    # re-exports: a dossier id appears in more than one file
    assert manifest["rows_repeated_in_other_files"] > 0
