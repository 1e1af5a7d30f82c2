"""JSON / JSONL reader and records_to_raw_batch (used by the HTTP and SQL pulls too)."""

from __future__ import annotations

import datetime as dt
import json
import unicodedata
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
    assert res.skipped == {"blank": [2, 4]}
    assert res.notes == ["file one_stop/dossiers/c.jsonl: 2 blank lines skipped (lines 2, 4)"]


def test_jsonl_batches(tmp_path):
    p = _write(tmp_path, "d.jsonl", "\n".join(json.dumps(dossier(i)) for i in range(1, 8)) + "\n")
    res = read_file(p, "one_stop", "dossiers", batch_rows=3)
    bs = list(res.batches)
    assert [b.num_rows for b in bs] == [3, 3, 1]
    assert [x for b in bs for x in b.column("_source_row").to_pylist()] == list(range(1, 8))


def test_a_malformed_jsonl_line_is_a_row_holding_its_text_not_a_rejected_file(tmp_path):
    p = _write(tmp_path, "e.jsonl", json.dumps(dossier(1)) + "\n" + '{"MaHoSo": "x",\n' + "[1, 2]\n"
               + json.dumps(dossier(3)))
    res = read_file(p, "one_stop", "dossiers")
    out = rows(res)
    assert [(r["dossier_id"], r["_source_row"], r["_source_line"]) for r in out] == [
        ("H19.26380-251123-0001", 1, 1), (None, 2, 2), (None, 3, 3), ("H19.26380-251123-0003", 4, 4)]
    assert json.loads(out[1]["_extra"]) == {"_malformed_json": '{"MaHoSo": "x",'}
    assert json.loads(out[2]["_extra"]) == {"_malformed_json": "[1, 2]"}
    assert all(out[1][c] is None for c in ("procedure_code", "status", "updated_at"))
    assert res.unknown_columns == []
    assert res.notes == ["file one_stop/dossiers/e.jsonl: 2 lines not a JSON object (line 2: malformed JSON at "
                         "column 16: Expecting property name enclosed in double quotes; line 3: a JSON list, not an "
                         "object): kept as rows holding the line's text under '_malformed_json' in _extra, set aside "
                         "by staging"]


def test_empty_json_list_says_no_data_rows(tmp_path):
    res = read_file(_write(tmp_path, "empty.json", '{"data": []}'), "one_stop", "dossiers")
    assert rows(res) == [] and res.notes == ["file one_stop/dossiers/empty.json: no records (an empty list): no data "
                                             "rows"]


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


def _nfd(obj):
    if isinstance(obj, str):
        return unicodedata.normalize("NFD", obj)
    if isinstance(obj, list):
        return [_nfd(x) for x in obj]
    if isinstance(obj, dict):
        return {_nfd(k): _nfd(v) for k, v in obj.items()}
    return obj


@pytest.mark.parametrize("kind", ["json", "jsonl"])
def test_nfd_json_reads_like_its_nfc_twin(tmp_path, kind):
    recs = [dossier(1, GhiChú="Hồ sơ ưu tiên"), dossier(2, TrangThaiHoSo="Đã trả kết quả")]

    def text(rs):
        if kind == "json":
            return json.dumps(rs, ensure_ascii=False)
        return "\n".join(json.dumps(r, ensure_ascii=False) for r in rs) + "\n"

    a = read_file(_write(tmp_path, f"nfc.{kind}", text(recs)), "one_stop", "dossiers")
    b = read_file(_write(tmp_path, f"nfd.{kind}", text(_nfd(recs))), "one_stop", "dossiers")
    assert b.unknown_columns == a.unknown_columns == ["GhiChú"]
    ra, rb = rows(a), rows(b)
    assert rb == ra
    assert rb[1]["status"] == "Đã trả kết quả" and json.loads(rb[0]["_extra"]) == {"GhiChú": "Hồ sơ ưu tiên"}
    assert rb[0]["fees_json"] == '[{"TenPhiLePhi":"Lệ phí chứng thực","Gia":12000}]'


@pytest.mark.parametrize("kind", ["json", "jsonl"])
def test_control_characters_in_json_strings_are_kept_not_a_broken_file(tmp_path, kind):
    recs = [dossier(1, TenTTHC="Chứng thực\x00 bản\x1b sao\x07"), dossier(2)]
    raw = [json.dumps(r, ensure_ascii=False) for r in recs]
    raw[0] = raw[0].replace("\\u0000", "\x00").replace("\\u001b", "\x1b").replace("\\u0007", "\x07")
    assert "\x00" in raw[0]  # raw control characters inside a string: not strict JSON
    text = "[" + ",".join(raw) + "]" if kind == "json" else "\n".join(raw) + "\n"
    out = rows(read_file(_write(tmp_path, f"cc.{kind}", text), "one_stop", "dossiers"))
    assert [r["procedure_name"] for r in out] == ["Chứng thực\x00 bản\x1b sao\x07", "Chứng thực bản sao"]


@pytest.mark.parametrize("codec,bom", [("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff"), ("utf-16-le", b"")])
def test_utf16_json_and_jsonl(tmp_path, codec, bom):
    recs = [dossier(1), dossier(2, TrangThaiHoSo="Đang xử lý")]
    ref = rows(read_file(_write(tmp_path, "ref.json", json.dumps(recs, ensure_ascii=False)), "one_stop", "dossiers"))
    p = tmp_path / "one_stop" / "dossiers" / "u16.json"
    p.write_bytes(bom + json.dumps(recs, ensure_ascii=False).encode(codec))
    res = read_file(p, "one_stop", "dossiers")
    assert res.encoding == codec and rows(res) == ref
    q = tmp_path / "one_stop" / "dossiers" / "u16.jsonl"
    q.write_bytes(bom + "\r\n".join(json.dumps(r, ensure_ascii=False) for r in recs).encode(codec))
    res = read_file(q, "one_stop", "dossiers")
    assert res.encoding == codec
    assert [r["status"] for r in rows(res)] == ["10", "Đang xử lý"]


def test_json_not_utf8_is_named_by_line(tmp_path):
    text = json.dumps([dossier(1), dossier(2)], ensure_ascii=False, indent=1)
    p = _write(tmp_path, "cp.json", "")
    data = text.encode("cp1258", errors="replace")
    p.write_bytes(data)
    with pytest.raises(FileRejected) as ei:
        read_file(p, "one_stop", "dossiers")
    with pytest.raises(UnicodeDecodeError) as de:
        data.decode("utf-8")
    line = data[:de.value.start].count(b"\n") + 1
    assert line > 1
    assert ei.value.reason.startswith(f"file one_stop/dossiers/cp.json, line {line}: bytes 0x")
    assert ei.value.reason.endswith("are not UTF-8 text; JSON exports must be UTF-8")
    q = tmp_path / "one_stop" / "dossiers" / "cp.jsonl"
    q.write_bytes(json.dumps(dossier(1), ensure_ascii=False).encode() + b"\n"
                  + json.dumps(dossier(2), ensure_ascii=False).encode("cp1258", errors="replace") + b"\n")
    with pytest.raises(FileRejected) as ei:
        list(read_file(q, "one_stop", "dossiers").batches)
    assert ei.value.reason.startswith("file one_stop/dossiers/cp.jsonl, line 2: bytes ")
    assert "are not UTF-8 text" in ei.value.reason


def test_malformed_json_is_named_by_line_and_column(tmp_path):
    p = _write(tmp_path, "m.json", '[\n {"MaHoSo": "x",\n  "MaTTHC" "1.001612"}\n]')
    with pytest.raises(FileRejected) as ei:
        read_file(p, "one_stop", "dossiers")
    assert ei.value.reason == ("file one_stop/dossiers/m.json, line 3, column 12: malformed JSON "
                               "(Expecting ':' delimiter)")
