"""JSON / JSONL reader and records_to_raw_batch (used by the HTTP and SQL pulls too)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from readers_helpers import fingerprint, rows
from transforms.readers import FileRejected, raw_schema, read_file, records_to_raw_batch


def dossier(i: int, **over) -> dict:
    rec = {
        "MaHoSo": f"H19.26380-251123-{i:04d}", "MaTTHC": "2.000815", "TenTTHC": "Chứng thực bản sao",
        "MaLinhVuc": "", "MaDonVi": "H19.26380", "KenhThucHien": 2, "TrangThaiHoSo": 10,
        "NgayTiepNhan": "20251124105435", "NgayHenTra": "2025-11-25T17:00:00+07:00",
        "SoDienThoai": "0911237722", "HoSoCoThanhPhanSoHoa": True, "DuocThanhToanTrucTuyen": None,
        "NgayCapNhat": "20251125144223",
        "TaiLieuNop": [{"TenTepDinhKem": "Tờ khai.pdf", "DuongDanTaiTepTin": "/upload/a.pdf", "DuocSoHoa": 1}],
        "DanhSachLePhi": [{"TenPhiLePhi": "Lệ phí chứng thực", "Gia": 12000}],
        "DanhSachHoSoBoSung": [],
    }
    rec.update(over)
    return rec


def _write(tmp_path, name, text):
    p = tmp_path / "one_stop" / "dossiers" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")
    return p


def _check_first(r):
    assert r["dossier_id"] == "H19.26380-251123-0001"
    assert r["channel"] == "2" and r["status"] == "10"  # numbers -> text
    assert r["has_digitized_components_flag"] == "true"  # bool -> "true"
    assert r["online_payment"] is None  # null -> null
    assert r["field_code"] is None  # empty string -> null
    assert r["due_at"] == "2025-11-25T17:00:00+07:00" and r["received_at"] == "20251124105435"  # dates as given
    assert r["applicant_phone"] == "0911237722"
    assert r["fees_json"] == '[{"TenPhiLePhi":"Lệ phí chứng thực","Gia":12000}]'  # compact, non-ASCII kept
    assert json.loads(r["submitted_documents_json"])[0]["DuongDanTaiTepTin"] == "/upload/a.pdf"
    assert r["supplements_json"] == "[]"
    assert r["result_documents_json"] is None  # field absent
    assert r["_extra"] is None


def test_json_array(tmp_path):
    p = _write(tmp_path, "a.json", json.dumps([dossier(1), dossier(2, TrangThaiHoSo="Đang xử lý")],
                                               ensure_ascii=False))
    before = fingerprint(p)
    res = read_file(p, "one_stop", "dossiers")
    assert (res.file_kind, res.format, res.header_rows, res.first_data_line) == ("json", "national_sync", [], None)
    out = rows(res)
    _check_first(out[0])
    assert out[1]["status"] == "Đang xử lý"
    assert [(r["_source_row"], r["_source_line"]) for r in out] == [(1, 1), (2, 2)]
    assert "supplements_json" in res.columns and res.unknown_columns == []
    assert fingerprint(p) == before


def test_json_data_wrapper_and_unknown_field(tmp_path):
    recs = [dossier(1), dossier(2, GhiChu="khẩn", NguoiXuLy={"Ten": "A", "So": 3})]
    p = _write(tmp_path, "b.json", json.dumps({"data": recs, "page": 1, "total_pages": 1}, ensure_ascii=False))
    res = read_file(p, "one_stop", "dossiers")
    assert res.unknown_columns == ["GhiChu", "NguoiXuLy"]
    out = rows(res)
    _check_first(out[0])
    assert json.loads(out[1]["_extra"]) == {"GhiChu": "khẩn", "NguoiXuLy": '{"Ten":"A","So":3}'}


def test_jsonl_lines_and_nested_lists(tmp_path):
    sup = [{"NgayBoSung": "20251201080000", "NgayTiepNhanBoSung": "20251203080000"},
           {"NgayBoSung": "20251120080000", "NgayTiepNhanBoSung": None}]
    lines = [json.dumps(dossier(1), ensure_ascii=False), "", json.dumps(dossier(2, DanhSachHoSoBoSung=sup),
                                                                        ensure_ascii=False), "   "]
    p = _write(tmp_path, "c.jsonl", "\n".join(lines) + "\n")
    res = read_file(p, "one_stop", "dossiers")
    assert res.file_kind == "jsonl"
    out = rows(res)
    _check_first(out[0])
    assert [(r["_source_row"], r["_source_line"]) for r in out] == [(1, 1), (2, 3)]
    assert json.loads(out[1]["supplements_json"]) == sup


def test_jsonl_batches(tmp_path):
    p = _write(tmp_path, "d.jsonl", "\n".join(json.dumps(dossier(i)) for i in range(1, 8)) + "\n")
    res = read_file(p, "one_stop", "dossiers", batch_rows=3)
    bs = list(res.batches)
    assert [b.num_rows for b in bs] == [3, 3, 1]
    assert [x for b in bs for x in b.column("_source_row").to_pylist()] == list(range(1, 8))


def test_malformed_jsonl_line_is_named(tmp_path):
    p = _write(tmp_path, "e.jsonl", json.dumps(dossier(1)) + "\n" + '{"MaHoSo": "x",\n' + json.dumps(dossier(3)))
    with pytest.raises(FileRejected) as ei:
        list(read_file(p, "one_stop", "dossiers").batches)
    assert "line 2" in ei.value.reason and "e.jsonl" in ei.value.reason


@pytest.mark.parametrize("text,match", [("", "empty"), ("{not json", "malformed JSON"), ('{"x": 1}', "expected"),
                                        ("[1, 2]", "expected a JSON object")])
def test_bad_json_files(tmp_path, text, match):
    p = _write(tmp_path, "f.json", text)
    with pytest.raises(FileRejected, match=match):
        read_file(p, "one_stop", "dossiers")


def test_json_missing_required_field(tmp_path):
    recs = [{k: v for k, v in dossier(1).items() if k != "NgayCapNhat"}]
    p = _write(tmp_path, "g.json", json.dumps(recs))
    with pytest.raises(FileRejected) as ei:
        read_file(p, "one_stop", "dossiers")
    assert "NgayCapNhat" in ei.value.reason


def test_records_to_raw_batch_for_other_entities_and_sql():
    b = records_to_raw_batch([{"rating_id": "DG1", "dossier_id": "H19.1-230101-0001", "rating": 4,
                               "rated_at": "2023-01-02 10:00:00"}], "dvc_portal", "ratings", start_row=11)
    assert b.schema.equals(raw_schema("dvc_portal", "ratings"))
    r = b.to_pylist()[0]
    assert (r["rating"], r["_source_row"], r["_source_line"]) == ("4", 11, 11)
    sql = records_to_raw_batch([{"MaHoSo": "H19.1-230101-0001", "NgayCapNhat": dt.datetime(2023, 1, 2, 3, 4, 5),
                                 "NgayHenTra": dt.date(2023, 1, 9), "KenhThucHien": None, "LePhi": Decimal("50000"),
                                 "CoKetQuaDienTu": True, "SoLanBoSung": 2}],
                               "one_stop", "dossiers", fmt="onestop_sql")
    s = sql.to_pylist()[0]
    assert s["updated_at"] == "2023-01-02 03:04:05" and s["due_at"] == "2023-01-09"
    assert s["channel"] is None and s["fee_vnd"] == "50000" and s["has_e_result"] == "true"
    assert s["supplement_count"] == "2" and s["_extra"] is None
    assert records_to_raw_batch([], "one_stop", "dossiers").num_rows == 0
