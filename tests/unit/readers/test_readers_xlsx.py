"""XLSX reader: title block, two-row merged header, footer, Excel dates vs text, numbers, leading zeros."""

from __future__ import annotations

import datetime as dt
import json
import unicodedata

import openpyxl
import pytest

from readers_helpers import fingerprint, rows
from transforms.readers import FileRejected, read_file


def _path(tmp_path, name="bao_cao.xlsx", entity="dossiers", source="one_stop"):
    p = tmp_path / source / entity / name
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def build_report(p):
    """A screen export: title block (rows 1-4), two-row header (rows 5-6) with a group cell merged across
    three columns and columns merged vertically over both rows, data rows 7-10, a blank row, a footer."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws["A1"] = "ỦY BAN NHÂN DÂN TỈNH ĐÔNG SƠN"
    ws["F1"] = "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"
    ws["A2"] = "BÁO CÁO CHI TIẾT HỒ SƠ"
    ws.merge_cells("A2:H2")
    ws["A3"] = "Từ ngày 01/01/2023 đến ngày 31/01/2023"
    # header: vertical merges for single columns, a group "Thời gian" over D..F
    top = {"A": "Mã hồ sơ (*)", "B": unicodedata.normalize("NFD", "MÃ TTHC"), "C": "Trạng  thái",
           "D": "Thời gian", "G": "Số điện thoại", "H": "Ghi chú"}
    for col, text in top.items():
        ws[f"{col}5"] = text
    for col in "ABCGH":
        ws.merge_cells(f"{col}5:{col}6")
    ws.merge_cells("D5:F5")
    ws["D6"] = "Ngày tiếp nhận"
    ws["E6"] = "Ngày hẹn trả"
    ws["F6"] = "Ngày cập nhật"
    data = [
        ["H19.26293-230105-0001", "1.001612", 10, dt.datetime(2023, 1, 5, 8, 0, 0), dt.datetime(2023, 1, 6),
         "06/01/2023 09:00:00", "0912345678", "ghi chú 1"],
        ["H19.26293-230105-0002", "2.000815", 4.0, "05/01/2023 09:30", None, dt.datetime(2023, 1, 5, 10, 0, 5),
         912000111, None],
        ["H19.26296-230106-0001", "1.001193", "Đã trả kết quả", dt.date(2023, 1, 6), None,
         dt.datetime(2023, 1, 7, 11, 0), "  ", None],
        ["", "1.001193", 2.5, None, None, "07/01/2023", "0387000111", None],
    ]
    for r, vals in enumerate(data, start=7):
        for c, v in enumerate(vals, start=1):
            if v is not None:
                ws.cell(row=r, column=c, value=v)
    ws["E7"].number_format = "dd/mm/yyyy"
    ws["D9"].number_format = "dd/mm/yyyy"
    ws["A12"] = "Tổng cộng"
    ws["B12"] = 4
    ws["F14"] = "NGƯỜI LẬP BIỂU"
    wb.save(p)


def test_title_block_two_row_header_and_footer(tmp_path):
    p = _path(tmp_path)
    build_report(p)
    before = fingerprint(p)
    res = read_file(p, "one_stop", "dossiers")
    assert (res.file_kind, res.encoding, res.delimiter) == ("xlsx", None, None)
    assert res.header_rows == [5, 6] and res.first_data_line == 7
    assert res.columns == ["dossier_id", "procedure_code", "status", "received_at", "due_at", "updated_at",
                           "applicant_phone"]
    assert res.unknown_columns == ["Ghi chú"]  # the group cell "Thời gian" is not a column
    out = rows(res)
    assert len(out) == 4  # the footer after the blank row is not data
    assert [r["_source_line"] for r in out] == [7, 8, 9, 10]
    assert [r["_source_row"] for r in out] == [1, 2, 3, 4]
    a, b, c, d = out
    assert a["received_at"] == "2023-01-05 08:00:00"  # real Excel datetime
    assert a["due_at"] == "2023-01-06"  # date-only format
    assert a["updated_at"] == "06/01/2023 09:00:00"  # text stays as it is
    assert b["received_at"] == "05/01/2023 09:30" and b["updated_at"] == "2023-01-05 10:00:05"
    assert c["received_at"] == "2023-01-06"
    assert a["status"] == "10" and b["status"] == "4" and c["status"] == "Đã trả kết quả" and d["status"] == "2.5"
    assert a["applicant_phone"] == "0912345678"  # a text cell keeps its leading zero
    assert b["applicant_phone"] == "912000111"  # a numeric cell renders without ".0"
    assert c["applicant_phone"] is None  # blank -> null
    assert d["dossier_id"] is None and d["procedure_code"] == "1.001193"
    assert json.loads(a["_extra"]) == {"Ghi chú": "ghi chú 1"} and b["_extra"] is None
    assert fingerprint(p) == before


def test_single_row_header_after_title_and_blank_rows_before_data(tmp_path):
    p = _path(tmp_path, "danhmuc.xlsx", "procedures", "dvc_portal")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws["B2"] = "DANH MỤC THỦ TỤC HÀNH CHÍNH"
    heads = ["Mã TTHC", "Tên TTHC", "Cấp thực hiện", "Thời hạn giải quyết", "Ngày cập nhật"]
    for c, h in enumerate(heads, start=2):
        ws.cell(row=4, column=c, value=h)
    ws.cell(row=6, column=2, value="1.001193")
    ws.cell(row=6, column=3, value="Đăng ký khai sinh")
    ws.cell(row=6, column=4, value="Cấp xã")
    ws.cell(row=6, column=5, value=0)
    ws.cell(row=6, column=6, value=dt.datetime(2023, 1, 5, 8, 15))
    ws.cell(row=7, column=2, value="2.000815")
    ws.cell(row=7, column=3, value="Chứng thực")
    ws.cell(row=7, column=4, value="Cấp xã;Cấp huyện")
    ws.cell(row=7, column=5, value=1.5)
    ws.cell(row=7, column=6, value="05/01/2023 08:15:00")
    wb.save(p)
    res = read_file(p, "dvc_portal", "procedures")
    assert res.header_rows == [4] and res.first_data_line == 6
    out = rows(res)
    assert [(r["procedure_code"], r["legal_days"], r["_source_line"]) for r in out] == [
        ("1.001193", "0", 6), ("2.000815", "1.5", 7)]
    assert out[0]["updated_at"] == "2023-01-05 08:15:00"


def test_missing_required_column_in_xlsx(tmp_path):
    p = _path(tmp_path, "thieu.xlsx", "payments", "dvc_portal")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Mã giao dịch", "Mã hồ sơ", "Ngày thanh toán", "Ngày cập nhật"])
    ws.append(["TT1", "H19.1-230101-0001", "01/01/2023", "01/01/2023"])
    wb.save(p)
    with pytest.raises(FileRejected) as ei:
        read_file(p, "dvc_portal", "payments")
    assert "Số tiền" in ei.value.reason and "thieu.xlsx" in ei.value.reason


def test_corrupt_or_headerless_workbook(tmp_path):
    p = _path(tmp_path, "hong.xlsx")
    p.write_bytes(b"PK\x03\x04 this is not a workbook")
    with pytest.raises(FileRejected, match="not a readable XLSX"):
        read_file(p, "one_stop", "dossiers")
    q = _path(tmp_path, "trong.xlsx")
    q.write_bytes(b"")
    with pytest.raises(FileRejected, match="empty"):
        read_file(q, "one_stop", "dossiers")
    r = _path(tmp_path, "khong_tieu_de.xlsx")
    wb = openpyxl.Workbook()
    wb.active.append(["a", "b"])
    wb.active.append([1, 2])
    wb.save(r)
    with pytest.raises(FileRejected, match="no header row"):
        read_file(r, "one_stop", "dossiers")


def test_title_wider_than_table_adds_no_column(tmp_path):
    p = _path(tmp_path, "rong.xlsx", "ratings", "dvc_portal")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws["H1"] = "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"
    ws.append([])
    ws.append(["Mã đánh giá", "Mã hồ sơ", "Mức độ hài lòng", "Ngày đánh giá"])
    ws.append(["DG1", "H19.1-230101-0001", 4, dt.datetime(2023, 1, 2, 9, 0)])
    wb.save(p)
    res = read_file(p, "dvc_portal", "ratings")
    assert res.unknown_columns == [] and res.header_rows == [3]
    out = rows(res)
    assert [(r["rating"], r["rated_at"], r["_source_line"], r["_extra"]) for r in out] == [
        ("4", "2023-01-02 09:00:00", 4, None)]
