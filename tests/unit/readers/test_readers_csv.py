"""CSV reader: delimiters, BOM, header matching, blanks, lineage, legacy encodings, rejections."""

from __future__ import annotations

import json
import random
import unicodedata

import pytest

from readers_helpers import DOSSIER_HEADERS, DOSSIER_ROWS, csv_text, fingerprint, rows, table, to_cp1258, to_mojibake
from transforms.readers import FileRejected, normalize_header, raw_schema, read_file


def write(tmp_path, name, data: bytes):
    p = tmp_path / "one_stop" / "dossiers" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def test_normalize_header():
    assert normalize_header("  MÃ   hồ Sơ (*) ") == normalize_header("Mã hồ sơ")
    assert normalize_header(unicodedata.normalize("NFD", "Ngày tiếp nhận")) == "ngày tiếp nhận"
    assert normalize_header("Lệ phí(*)") == "lệ phí"
    assert normalize_header("Mã hồ sơ") != normalize_header("Mã hồ")


def test_raw_schema_covers_every_format():
    s = raw_schema("one_stop", "dossiers")
    names = s.names
    for col in ("dossier_id", "fee_vnd", "supplement_count", "supplements_json", "online_payment", "updated_at"):
        assert col in names
        assert s.field(col).type == "string"
    assert names[-3:] == ["_extra", "_source_row", "_source_line"]
    assert str(s.field("_source_row").type) == "int64" and str(s.field("_source_line").type) == "int64"
    assert len(names) == len(set(names))


def test_plain_csv(tmp_path):
    p = write(tmp_path, "a.csv", csv_text(DOSSIER_HEADERS, DOSSIER_ROWS).encode("utf-8"))
    before = fingerprint(p)
    res = read_file(p, "one_stop", "dossiers")
    assert (res.file_kind, res.format, res.encoding, res.delimiter) == ("csv", "flat_export", "utf-8", ",")
    assert res.header_rows == [1] and res.first_data_line == 2
    assert res.unknown_columns == []
    assert set(res.columns) == {"dossier_id", "procedure_code", "procedure_name", "agency_code", "status",
                                "received_at", "applicant_phone", "updated_at"}
    out = rows(res)
    assert [r["dossier_id"] for r in out] == [r[0] for r in DOSSIER_ROWS]
    assert [r["_source_row"] for r in out] == [1, 2, 3]
    assert [r["_source_line"] for r in out] == [2, 3, 4]
    assert out[0]["applicant_phone"] == "0912345678"  # leading zero kept
    assert out[1]["agency_code"] is None and out[1]["applicant_phone"] is None  # empty cell -> null
    assert out[2]["status"] == "Đã trả kết quả"
    assert all(r["fee_vnd"] is None and r["supplements_json"] is None and r["_extra"] is None for r in out)
    assert fingerprint(p) == before  # the reader never modifies the input


def test_bom_semicolon_nfd_odd_case_headers(tmp_path):
    headers = [unicodedata.normalize("NFD", h.upper()) + "  (*)" if i % 2 else "  " + h.lower() + " "
               for i, h in enumerate(DOSSIER_HEADERS)]
    data = csv_text(headers, DOSSIER_ROWS, delim=";").replace("\n", "\r\n")
    p = write(tmp_path, "b.csv", b"\xef\xbb\xbf" + data.encode("utf-8"))
    res = read_file(p, "one_stop", "dossiers")
    assert res.encoding == "utf-8-sig" and res.delimiter == ";"
    assert len(res.columns) == len(DOSSIER_HEADERS) and res.unknown_columns == []
    out = rows(res)
    assert [r["procedure_code"] for r in out] == ["1.001612", "2.000815", "1.001193"]
    assert out[2]["updated_at"] == "07/01/2023 11:00:00"  # no trailing \r


def test_blank_cells_are_null_and_values_kept_as_text(tmp_path):
    rs = [list(DOSSIER_ROWS[0]), list(DOSSIER_ROWS[1])]
    rs[0][2] = "   "
    rs[1][6] = "QUOTED_EMPTY"
    data = csv_text(DOSSIER_HEADERS, rs).replace("QUOTED_EMPTY", '""')  # a quoted empty cell
    p = write(tmp_path, "c.csv", data.encode())
    out = rows(read_file(p, "one_stop", "dossiers"))
    assert out[0]["procedure_name"] is None
    assert out[1]["applicant_phone"] is None


def test_multiline_quoted_cell_moves_source_line(tmp_path):
    rs = [list(r) for r in DOSSIER_ROWS]
    rs[0][2] = "Đăng ký\nkết hôn\nlần hai"
    p = write(tmp_path, "m.csv", csv_text(DOSSIER_HEADERS, rs).encode())
    out = rows(read_file(p, "one_stop", "dossiers"))
    assert out[0]["procedure_name"] == "Đăng ký\nkết hôn\nlần hai"
    assert [r["_source_line"] for r in out] == [2, 5, 6]
    # the physical lines really hold those records
    lines = p.read_text().split("\n")
    assert lines[5 - 1].startswith(rs[1][0]) and lines[6 - 1].startswith(rs[2][0])


def test_unknown_column_goes_to_extra(tmp_path):
    headers = [*DOSSIER_HEADERS, "Ghi chú", "Người xử lý"]
    rs = [[*DOSSIER_ROWS[0], 'nói "gấp", ưu tiên\\', ""], [*DOSSIER_ROWS[1], "", ""],
          [*DOSSIER_ROWS[2], "", "Cán bộ A"]]
    p = write(tmp_path, "u.csv", csv_text(headers, rs).encode())
    res = read_file(p, "one_stop", "dossiers")
    assert res.unknown_columns == ["Ghi chú", "Người xử lý"]
    out = rows(res)
    assert json.loads(out[0]["_extra"]) == {"Ghi chú": 'nói "gấp", ưu tiên\\'}
    assert out[1]["_extra"] is None
    assert json.loads(out[2]["_extra"]) == {"Người xử lý": "Cán bộ A"}
    assert "Ghi chú" not in raw_schema("one_stop", "dossiers").names


def test_missing_required_column_is_named(tmp_path):
    headers = [h for h in DOSSIER_HEADERS if h not in ("Mã TTHC", "Ngày cập nhật")]
    rs = [[v for h, v in zip(DOSSIER_HEADERS, r, strict=True) if h in headers] for r in DOSSIER_ROWS]
    p = write(tmp_path, "r.csv", csv_text(headers, rs).encode())
    with pytest.raises(FileRejected) as ei:
        read_file(p, "one_stop", "dossiers")
    assert "Mã TTHC" in ei.value.reason and "Ngày cập nhật" in ei.value.reason and "r.csv" in ei.value.reason
    assert ei.value.path == p


def test_agency_code_is_not_required_for_dossiers(tmp_path):
    headers = [h for h in DOSSIER_HEADERS if h != "Mã đơn vị"]
    rs = [[v for h, v in zip(DOSSIER_HEADERS, r, strict=True) if h != "Mã đơn vị"] for r in DOSSIER_ROWS]
    p = write(tmp_path, "na.csv", csv_text(headers, rs).encode())
    out = rows(read_file(p, "one_stop", "dossiers"))
    assert len(out) == 3 and all(r["agency_code"] is None for r in out)


def test_small_batches_keep_row_numbers(tmp_path):
    rs = [[f"H19.1-230101-{i:04d}", "1.001612", "", "", "10", "", "", "01/01/2023"] for i in range(1, 12)]
    p = write(tmp_path, "s.csv", csv_text(DOSSIER_HEADERS, rs).encode())
    res = read_file(p, "one_stop", "dossiers", batch_rows=4)
    batches = list(res.batches)
    assert [b.num_rows for b in batches] == [4, 4, 3]
    t = table(read_file(p, "one_stop", "dossiers", batch_rows=4))
    assert t.column("_source_row").to_pylist() == list(range(1, 12))
    assert t.column("_source_line").to_pylist() == list(range(2, 13))


def test_cp1258_file_is_decoded_and_nfc(tmp_path):
    data = csv_text(DOSSIER_HEADERS, DOSSIER_ROWS)
    raw = to_cp1258(data)
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    p = write(tmp_path, "legacy.csv", raw)
    res = read_file(p, "one_stop", "dossiers")
    assert res.encoding == "cp1258"
    out = rows(res)
    assert out[0]["procedure_name"] == "Đăng ký kết hôn"
    assert unicodedata.is_normalized("NFC", out[2]["status"]) and out[2]["status"] == "Đã trả kết quả"


def test_mojibake_file_is_repaired(tmp_path):
    data = csv_text(DOSSIER_HEADERS, DOSSIER_ROWS)
    damaged = to_mojibake(data)
    assert "MÃ£ há»“ sÆ¡" in damaged
    p = write(tmp_path, "moji.csv", damaged.encode("utf-8"))
    res = read_file(p, "one_stop", "dossiers")
    assert res.encoding == "cp1252-mojibake-repaired"
    out = rows(res)
    assert [r["procedure_name"] for r in out] == [r[2] for r in DOSSIER_ROWS]
    assert out[2]["status"] == "Đã trả kết quả"


def test_partly_damaged_mojibake_is_rejected(tmp_path):
    data = to_mojibake(csv_text(DOSSIER_HEADERS, DOSSIER_ROWS[:2])) + csv_text(DOSSIER_HEADERS, DOSSIER_ROWS[2:]
                                                                             ).split("\n", 1)[1]
    p = write(tmp_path, "moji2.csv", data.encode("utf-8"))
    with pytest.raises(FileRejected) as ei:
        read_file(p, "one_stop", "dossiers")
    # the repair works on lines 1-3 and fails on line 4: named
    assert ei.value.reason.startswith("file one_stop/dossiers/moji2.csv: line 4: the CP1252 round-trip repair fails")


def test_random_bytes_are_rejected_as_binary(tmp_path):
    p = write(tmp_path, "bad.csv", random.Random(7).randbytes(4000))
    with pytest.raises(FileRejected) as ei:
        read_file(p, "one_stop", "dossiers")
    assert ei.value.reason.startswith("file one_stop/dossiers/bad.csv is not a CSV text file: it is binary data")


def test_text_of_no_known_encoding_is_rejected(tmp_path):
    # decodes as cp1258 without error but no line is the expected header
    raw = bytes(range(0xA0, 0x100)) * 10 + b"\n" + b"\xe9\xe8" * 20 + b"\n"
    p = write(tmp_path, "bad.csv", raw)
    with pytest.raises(FileRejected) as ei:
        read_file(p, "one_stop", "dossiers")
    assert "encoding cannot be determined with certainty: read as Windows-1258 (cp1258)" in ei.value.reason
    assert "'Mã hồ sơ'" in ei.value.reason  # the missing headers are named


def test_empty_and_header_only(tmp_path):
    p = write(tmp_path, "e.csv", b"")
    with pytest.raises(FileRejected, match="empty"):
        read_file(p, "one_stop", "dossiers")
    p2 = write(tmp_path, "h.csv", (",".join(DOSSIER_HEADERS) + "\n").encode())
    assert table(read_file(p2, "one_stop", "dossiers")).num_rows == 0


def test_no_known_header(tmp_path):
    p = write(tmp_path, "x.csv", b"a,b,c\n1,2,3\n")
    with pytest.raises(FileRejected) as ei:
        read_file(p, "one_stop", "dossiers")
    assert "header" in ei.value.reason


def test_row_with_wrong_field_count_rejects_while_reading(tmp_path):
    data = csv_text(DOSSIER_HEADERS, DOSSIER_ROWS) + "only,three,fields\n"
    p = write(tmp_path, "w.csv", data.encode())
    res = read_file(p, "one_stop", "dossiers")
    with pytest.raises(FileRejected) as ei:
        table(res)
    assert "w.csv" in ei.value.reason


def test_other_entity_and_extension_rules(tmp_path):
    p = tmp_path / "dvc_portal" / "ratings" / "r.CSV"
    p.parent.mkdir(parents=True)
    p.write_text("Mã đánh giá;Mã hồ sơ;Mức độ hài lòng;Ngày đánh giá\nDG1;H19.1-230101-0001;Rất hài lòng;"
                 "02/01/2023\n", encoding="utf-8")
    out = rows(read_file(p, "dvc_portal", "ratings"))
    assert out == [{**{n: None for n in raw_schema("dvc_portal", "ratings").names},
                    "rating_id": "DG1", "dossier_id": "H19.1-230101-0001", "rating": "Rất hài lòng",
                    "rated_at": "02/01/2023", "_source_row": 1, "_source_line": 2}]
    q = tmp_path / "x.txt"
    q.write_text("x")
    with pytest.raises(FileRejected, match="unsupported"):
        read_file(q, "dvc_portal", "ratings")


@pytest.fixture
def transcode_copies(tmp_path, monkeypatch) -> list[str]:
    """Every legacy file is transcoded through a temp copy made in tmp_path; the list of the copies made."""
    import transforms.readers._text as cr

    made: list[str] = []
    real_mkstemp = cr.tempfile.mkstemp

    def spy(*a, **k):
        fd, name = real_mkstemp(*a, dir=tmp_path, **{x: y for x, y in k.items() if x != "dir"})
        made.append(name)
        return fd, name

    monkeypatch.setattr(cr, "IN_MEMORY_TRANSCODE_MAX", 0)
    monkeypatch.setattr(cr.tempfile, "mkstemp", spy)
    return made


def test_large_legacy_file_is_transcoded_through_a_temp_file(tmp_path, monkeypatch, transcode_copies):
    import transforms.readers._text as cr

    made = transcode_copies
    monkeypatch.setattr(cr, "TRANSCODE_CHUNK", 64)  # many line-aligned chunks
    rs = [[f"H19.1-230101-{i:04d}", "1.001612", "Đăng ký kết hôn", "", "Đã trả kết quả", "", "", "01/01/2023"]
          for i in range(1, 40)]
    p = write(tmp_path, "big_legacy.csv", to_cp1258(csv_text(DOSSIER_HEADERS, rs)))
    res = read_file(p, "one_stop", "dossiers")
    assert res.encoding == "cp1258" and len(made) == 1
    out = rows(res)
    assert len(out) == 39 and {r["procedure_name"] for r in out} == {"Đăng ký kết hôn"}
    assert out[-1]["_source_line"] == 40
    assert not any(__import__("os").path.exists(m) for m in made)  # the temp file is gone after reading


def test_a_transcoded_copy_is_removed_when_its_result_is_dropped_unread(tmp_path, transcode_copies):
    import gc
    import os

    made = transcode_copies
    rs = [[f"H19.1-230101-{i:04d}", "1.001612", "Đăng ký kết hôn", "", "Đã trả kết quả", "", "", "01/01/2023"]
          for i in range(1, 5)]
    p = write(tmp_path, "legacy.csv", to_cp1258(csv_text(DOSSIER_HEADERS, rs)))
    res = read_file(p, "one_stop", "dossiers")  # a caller that stops here (e.g. the file is a duplicate)
    assert len(made) == 1 and os.path.exists(made[0])
    del res
    gc.collect()
    assert not os.path.exists(made[0])  # the copy holding the export's personal data does not stay behind
