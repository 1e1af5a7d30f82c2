"""Staging rules on hand-built raw batches: each test names the rule it pins and can fail."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from staging_helpers import raw_table
from transforms.staging import stage_raw_file

AGENCIES = ["H19", "H19.26293", "H19.26380", "H19.STP"]
KEY = b"unit-test-key"


def _stage(tmp_path, entity, rows, fmt="flat_export", source=None):
    source = source or ("one_stop" if entity == "dossiers" else "dvc_portal")
    tmp_path.mkdir(parents=True, exist_ok=True)
    raw = tmp_path / "raw.parquet"
    pq.write_table(raw_table(entity, rows, fmt), raw)
    res = stage_raw_file(raw, warehouse=tmp_path / "wh", source=source, entity=entity, fmt=fmt, batch_id="b1",
                         agency_codes=AGENCIES, pseudonym_key=KEY)
    stg = duckdb.sql(f"SELECT * FROM '{tmp_path}/wh/stg_{source}__{entity}/b1.parquet' ORDER BY _source_row")
    q_path = tmp_path / "wh" / f"quarantine_{source}__{entity}" / "b1.parquet"
    quar = pq.read_table(q_path).to_pylist() if q_path.exists() else []
    return res, stg.fetchdf().to_dict("records") if False else [dict(zip(stg.columns, r)) for r in stg.fetchall()], quar


def _dossier(**kw):
    base = {"dossier_id": "H19.26293-240105-0001", "procedure_code": "1.001193", "status": "10",
            "received_at": "05/01/2024 08:00:00", "updated_at": "06/01/2024 10:00:00"}
    base.update(kw)
    return base


def test_date_formats_all_parse_to_local_time(tmp_path):
    rows = [_dossier(received_at=v) for v in (
        "05/01/2024 08:00:00", "05/01/2024 08:00", "05/01/2024", "20240105080000", "2024-01-05T08:00:00+07:00",
        "2024-01-05T01:00:00Z", "2024-01-05 08:00:00", "45296.3333333333", "20240105", "2024-01-05")]
    res, stg, quar = _stage(tmp_path, "dossiers", rows)
    assert res.rows_quarantined == 0, quar
    got = [r["received_at"] for r in stg]
    assert got[0] == got[1] == got[3] == got[4] == got[5] == got[6] == datetime(2024, 1, 5, 8, 0)
    assert got[2] == got[8] == got[9] == datetime(2024, 1, 5)  # a date without a time: midnight, the whole day
    assert abs((got[7] - datetime(2024, 1, 5, 8, 0)).total_seconds()) < 1  # Excel serial date


def test_impossible_date_is_quarantined_with_column_and_value(tmp_path):
    res, stg, quar = _stage(tmp_path, "dossiers", [_dossier(), _dossier(received_at="31/02/2024")])
    assert (res.rows_raw, res.rows_staged, res.rows_quarantined) == (2, 1, 1)
    assert quar[0]["_rule"] == "invalid_date" and quar[0]["_column"] == "Ngày tiếp nhận"
    assert quar[0]["_value"] == "31/02/2024" and quar[0]["_source_row"] == 2


def test_required_empty_and_required_if_received(tmp_path):
    rows = [_dossier(dossier_id=None), _dossier(received_at=None, status="4"), _dossier(received_at=None, status="1")]
    res, stg, quar = _stage(tmp_path, "dossiers", rows)
    rules = {q["_source_row"]: (q["_rule"], q["_column"]) for q in quar}
    assert rules == {1: ("required", "Mã hồ sơ"), 2: ("required_if_received", "Ngày tiếp nhận")}
    assert [r["status"] for r in stg] == [1]  # status 1 without received_at is fine


def test_codes_as_numbers_or_labels_and_unknown_code(tmp_path):
    rows = [_dossier(status="Đã trả kết quả", channel="Trực tuyến"), _dossier(status=" 9 ", channel=None),
            _dossier(status="ĐANG XỬ LÝ", channel="3"), _dossier(status="11")]
    res, stg, quar = _stage(tmp_path, "dossiers", rows)
    assert [(r["status"], r["channel"]) for r in stg] == [(10, 2), (9, 1), (4, 3)]  # empty channel = 1
    assert quar[0]["_rule"] == "unknown_code" and quar[0]["_value"] == "11"


def test_nfd_labels_decode(tmp_path):
    import unicodedata
    label = unicodedata.normalize("NFD", "Đã xử lý xong")
    res, stg, quar = _stage(tmp_path, "dossiers", [_dossier(status=label)])
    assert stg[0]["status"] == 9


def test_money_formats(tmp_path):
    rows = [_dossier(fee_vnd=v) for v in ("50000", "50.000", "50,000", "50.000 đ", "1.250.000đ", None)]
    rows.append(_dossier(fee_vnd="năm chục"))
    res, stg, quar = _stage(tmp_path, "dossiers", rows)
    assert [r["fee_vnd"] for r in stg] == [50000, 50000, 50000, 50000, 1250000, None]
    assert quar[0]["_rule"] == "invalid_number" and quar[0]["_column"] == "Lệ phí"


def test_yes_no_and_x_columns(tmp_path):
    # has_e_result marks yes with 'x' in this file: empty means no; the Có/Không column keeps empty = unknown
    rows = [_dossier(has_e_result="x", has_digitized_components="Có"),
            _dossier(has_e_result=None, has_digitized_components=None),
            _dossier(has_e_result="X", has_digitized_components="Không"),
            _dossier(has_digitized_components="TRUE"), _dossier(has_digitized_components="có lẽ")]
    res, stg, quar = _stage(tmp_path, "dossiers", rows)
    assert [r["has_e_result"] for r in stg] == [True, False, True, False]
    assert [r["has_digitized_components"] for r in stg] == [True, None, False, True]
    assert quar[0]["_rule"] == "invalid_bool"


def test_agency_from_dossier_id_prefix_and_unknown_agency(tmp_path):
    rows = [_dossier(agency_code=None), _dossier(agency_code="H19.99999"),
            _dossier(dossier_id="H19.77777-240105-0001", agency_code=None)]
    res, stg, quar = _stage(tmp_path, "dossiers", rows)
    assert [r["agency_code"] for r in stg] == ["H19.26293"]
    assert [(q["_rule"], q["_value"]) for q in quar] == [("unknown_agency", "H19.99999"),
                                                         ("unknown_agency", "H19.77777")]


def test_personal_data_never_reaches_staging_and_pseudonym_is_hmac(tmp_path):
    rows = [_dossier(applicant_name="Nguyễn Văn A", applicant_id_number="075123456789",
                     applicant_phone="0912345678", applicant_address="Số 1 Lê Lợi")]
    res, stg, quar = _stage(tmp_path, "dossiers", rows)
    row = stg[0]
    assert not {"applicant_name", "applicant_id_number", "applicant_phone", "applicant_address"} & set(row)
    assert row["applicant_pseudonym"] == hmac.new(KEY, b"075123456789", hashlib.sha256).hexdigest()
    assert "075123456789" not in json.dumps({k: str(v) for k, v in row.items()})


def test_national_sync_nested_lists(tmp_path):
    sup = json.dumps([{"NgayBoSung": "20240110090000", "NgayTiepNhanBoSung": "20240112090000"},
                      {"NgayBoSung": "20240120090000", "NgayTiepNhanBoSung": ""},
                      {"NgayBoSung": "20240108090000", "NgayTiepNhanBoSung": "20240109090000"}])
    docs = json.dumps([{"TenTepDinhKem": "a.pdf", "DuongDanTaiTepTin": "", "DuocTaiSuDung": 0, "DuocLayTuKhoDMQG": 0},
                       {"TenTepDinhKem": "b.pdf", "DuongDanTaiTepTin": "/up/b.pdf", "DuocTaiSuDung": 1,
                        "DuocLayTuKhoDMQG": 0}])
    row = {"dossier_id": "H19.26380-240105-0001", "procedure_code": "1.001193", "status": "5",
           "received_at": "20240105080000", "updated_at": "2024-01-20T09:00:00+07:00", "agency_code": "H19.26380",
           "supplements_json": sup, "submitted_documents_json": docs,
           "fees_json": json.dumps([{"TenPhiLePhi": "a", "Gia": 12000}, {"TenPhiLePhi": "b", "Gia": "3.000"}]),
           "result_documents_json": json.dumps([{"TenGiayTo": "kq", "DuongDanTepTinKetQua": ""}]),
           "has_digitized_components_flag": "0", "online_payment": "2"}
    empty = dict(row, dossier_id="H19.26380-240105-0002", supplements_json="[]", submitted_documents_json="[]",
                 fees_json="[]", result_documents_json="[]")
    res, stg, quar = _stage(tmp_path, "dossiers", [row, empty], fmt="national_sync")
    assert res.rows_quarantined == 0, quar
    r = stg[0]
    assert r["supplement_count"] == 3
    assert r["supplement_requested_at"] == datetime(2024, 1, 20, 9)  # the greatest date, not the last item
    assert r["supplement_received_at"] is None
    assert len(r["supplement_requests"]) == 3
    assert r["has_digitized_components"] is True and r["reused_digitized_data"] is True
    assert r["has_e_result"] is False and r["fee_vnd"] == 15000 and r["online_payment"] == 2
    e = stg[1]
    assert e["supplement_count"] == 0 and e["has_digitized_components"] is False and e["fee_vnd"] == 0


def test_ranges_and_procedure_levels(tmp_path):
    rows = [{"transaction_id": "T1", "agency_code": "H19.26293", "certified_at": "01/02/2024 08:00",
             "copies": "0", "updated_at": "01/02/2024 08:01"},
            {"transaction_id": "T2", "agency_code": "H19.26293", "certified_at": "01/02/2024 08:00",
             "copies": "2", "updated_at": "01/02/2024 08:01"}]
    res, stg, quar = _stage(tmp_path, "e_certifications", rows)
    assert [q["_rule"] for q in quar] == ["out_of_range"] and stg[0]["copies"] == 2
    procs = [{"procedure_code": "1.001193", "procedure_name": "Đăng ký khai sinh", "levels": "Cấp xã; Cấp huyện",
              "online_level": "Toàn trình", "publication_state": "Đang công khai", "legal_days": "3",
              "updated_at": "05/01/2023 08:15"},
             {"procedure_code": "1.001194", "procedure_name": "X", "levels": "Cấp thôn",
              "updated_at": "05/01/2023 08:15"}]
    res, stg, quar = _stage(tmp_path / "p", "procedures", procs)
    assert stg[0]["levels"] == "commune;district" and stg[0]["online_level"] == 4
    assert stg[0]["publication_state"] == "published"
    assert quar[0]["_rule"] == "unknown_code" and quar[0]["_column"] == "Cấp thực hiện"


@pytest.mark.parametrize("entity", ["dossiers", "procedures", "payments", "ratings", "feedback", "e_certifications"])
def test_every_entity_balances_on_an_empty_batch(tmp_path, entity):
    res, stg, quar = _stage(tmp_path, entity, [])
    assert (res.rows_raw, res.rows_staged, res.rows_quarantined) == (0, 0, 0)


def test_control_characters_quarantine_the_row_naming_the_column(tmp_path):
    """NUL, ESC, BEL (C0 other than tab, CR, LF) set the row aside with rule control_character and the column a
    person sees; tab and line breaks inside a value, and formula-like text, are data (neutralised on output)."""
    rows = [_dossier(field_name="Hộ\x00 tịch"), _dossier(procedure_name="Khai sinh\x1b[31m"),
            _dossier(applicant_name="Nguyễn\x07 Văn A"), _dossier(status="10\x00"),
            _dossier(field_name="Hộ tịch\tcấp xã\r\nghi chú"),
            _dossier(field_name="=HYPERLINK(\"http://x\",\"a\")", procedure_name="+cmd|' /C calc'!A0",
                     field_code="@SUM(1+1)")]
    res, stg, quar = _stage(tmp_path, "dossiers", rows)
    assert (res.rows_raw, res.rows_staged, res.rows_quarantined) == (6, 2, 4)
    assert res.rules == {"control_character": 4}
    got = {q["_source_row"]: (q["_rule"], q["_column"]) for q in quar}
    assert got == {1: ("control_character", "Tên lĩnh vực"), 2: ("control_character", "Tên TTHC"),
                   3: ("control_character", "Chủ hồ sơ"), 4: ("control_character", "Trạng thái")}
    assert quar[0]["_value"] == "Hộ\x00 tịch" and quar[0]["field_name"] == "Hộ\x00 tịch"  # raw text kept whole
    assert [r["_source_row"] for r in stg] == [5, 6]
    assert stg[0]["field_name"] == "Hộ tịch\tcấp xã\r\nghi chú"
    assert stg[1]["field_name"].startswith("=HYPERLINK") and stg[1]["field_code"] == "@SUM(1+1)"


def test_a_control_character_is_named_as_the_files_format_spells_the_column(tmp_path):
    """The national sync names its columns differently: the quarantine names the column as that file does."""
    row = {"dossier_id": "H19.26380-240105-0001", "procedure_code": "1.001193", "status": "5",
           "received_at": "20240105080000", "updated_at": "20240120090000", "agency_code": "H19.26380",
           "field_name": "Hộ tịch\x1b", "supplements_json": "[]"}
    res, stg, quar = _stage(tmp_path, "dossiers", [row, dict(row, dossier_id="H19.26380-240105-0002",
                                                             field_name="Hộ tịch")], fmt="national_sync")
    assert [(q["_rule"], q["_column"], q["_source_row"]) for q in quar] == [("control_character", "TenLinhVuc", 1)]
    assert [r["_source_row"] for r in stg] == [2]


def test_zero_padded_and_excel_codes_decode(tmp_path):
    rows = [_dossier(status="04", channel="02"), _dossier(status="010"), _dossier(status="4.0"), _dossier(status="00")]
    res, stg, quar = _stage(tmp_path, "dossiers", rows)
    assert [(r["status"], r["channel"]) for r in stg] == [(4, 2), (10, 1), (4, 1)]
    assert [(q["_rule"], q["_value"]) for q in quar] == [("unknown_code", "00")]


def test_a_json_line_the_reader_could_not_parse_is_set_aside_as_malformed_json(tmp_path):
    """The JSONL reader keeps a cut line's text under _extra._malformed_json, every mapped column empty: its rule
    says so (not 'required' for an empty Mã hồ sơ)."""
    from transforms.readers.json_reader import MALFORMED_KEY

    good = {"dossier_id": "H19.26380-240105-0001", "procedure_code": "1.001193", "status": "5",
            "received_at": "20240105080000", "updated_at": "20240120090000", "agency_code": "H19.26380"}
    cut = '{"MaHoSo": "H19.26380-240105-0002", "MaTTHC": "1.00'
    raw = raw_table("dossiers", [good, {}], "national_sync")
    extra = pa.array([json.dumps({"Ghi chú": "x"}), json.dumps({MALFORMED_KEY: cut})], pa.string())
    raw = raw.set_column(raw.schema.get_field_index("_extra"), "_extra", extra)
    (tmp_path / "r").mkdir()
    pq.write_table(raw, tmp_path / "r" / "raw.parquet")
    res = stage_raw_file(tmp_path / "r" / "raw.parquet", warehouse=tmp_path / "wh", source="one_stop",
                         entity="dossiers", fmt="national_sync", batch_id="b1", agency_codes=AGENCIES,
                         pseudonym_key=KEY)
    (q,) = pq.read_table(tmp_path / "wh" / "quarantine_one_stop__dossiers" / "b1.parquet").to_pylist()
    assert (res.rows_staged, q["_rule"], q["_value"], q["_source_row"]) == (1, "malformed_json", cut, 2)
