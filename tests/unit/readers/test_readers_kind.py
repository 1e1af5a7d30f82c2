"""A file is read by what its bytes are, whatever its name says, and a file that is no export says what it is."""

from __future__ import annotations

import gzip
import io
import json
import zipfile

import openpyxl
import pytest

from readers_helpers import DOSSIER_HEADERS, DOSSIER_ROWS, csv_text, rows
from transforms.readers import FileRejected, read_file, sniff_kind


def _file(tmp_path, name, data: bytes):
    p = tmp_path / "one_stop" / "dossiers" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def _workbook_bytes() -> bytes:
    wb = openpyxl.Workbook()
    wb.active.append(DOSSIER_HEADERS)
    for r in DOSSIER_ROWS:
        wb.active.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _reject(tmp_path, name, data: bytes) -> str:
    p = _file(tmp_path, name, data)
    with pytest.raises(FileRejected) as ei:
        read_file(p, "one_stop", "dossiers")
    assert str(tmp_path) not in str(ei.value)  # the machine's paths never reach a message
    return ei.value.reason


def test_an_xlsx_that_is_really_a_csv_is_read_as_csv_and_says_so(tmp_path):
    text = csv_text(DOSSIER_HEADERS, DOSSIER_ROWS, delim=";").encode()
    res = read_file(_file(tmp_path, "hoso.xlsx", text), "one_stop", "dossiers")
    assert (res.file_kind, res.format, res.delimiter) == ("csv", "flat_export", ";")
    assert res.notes == ["file one_stop/dossiers/hoso.xlsx is not an Excel workbook (.xlsx): it holds text "
                         "(a CSV?); it was read as a CSV text file"]
    assert rows(res) == rows(read_file(_file(tmp_path, "hoso.csv", text), "one_stop", "dossiers"))


def test_a_csv_that_is_really_a_workbook_is_read_as_xlsx(tmp_path):
    res = read_file(_file(tmp_path, "hoso.csv", _workbook_bytes()), "one_stop", "dossiers")
    assert res.file_kind == "xlsx" and len(rows(res)) == 3
    assert res.notes == ["file one_stop/dossiers/hoso.csv is not a CSV text file: it holds an Excel workbook; it "
                         "was read as an Excel workbook (.xlsx)"]


def test_an_xlsx_holding_text_that_is_no_csv_either(tmp_path):
    reason = _reject(tmp_path, "hoso.xlsx", "Xin chào,\nđây không phải bảng dữ liệu\n".encode())
    assert reason.startswith("file one_stop/dossiers/hoso.xlsx is not an Excel workbook (.xlsx): it holds text (a "
                             "CSV?), and read as a CSV text file it fails: no header found: none of the first 60 "
                             "lines names a known dossiers column")


def test_json_and_jsonl_are_told_apart_by_content(tmp_path):
    recs = [{"MaHoSo": f"H19.1-230101-000{i}", "MaTTHC": "1.001612", "TrangThaiHoSo": 1, "NgayTiepNhan": None,
             "NgayCapNhat": "20230101080000"} for i in (1, 2)]
    res = read_file(_file(tmp_path, "a.json", "\n".join(json.dumps(r) for r in recs).encode()), "one_stop",
                    "dossiers")
    assert res.file_kind == "jsonl" and len(rows(res)) == 2
    assert res.notes == ["file one_stop/dossiers/a.json is not a JSON file: it holds JSON Lines text; it was read "
                         "as a JSON Lines file"]
    res = read_file(_file(tmp_path, "b.jsonl", json.dumps(recs, indent=1).encode()), "one_stop", "dossiers")
    assert res.file_kind == "json" and len(rows(res)) == 2 and res.notes[0].endswith("read as a JSON file")


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for k, v in entries.items():
            z.writestr(k, v)
    return buf.getvalue()


OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504


@pytest.mark.parametrize("name,data,what", [
    ("hoso.xlsx", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "a PDF document"),
    ("hoso.xlsx", OLE2 + "Workbook".encode("utf-16-le") + b"\x00" * 100,
     "an old Excel 97-2003 workbook (.xls); open it in Excel and save it as .xlsx"),
    ("hoso.xlsx", OLE2 + "EncryptionInfo".encode("utf-16-le") + b"\x00" * 100,
     "a password-protected Excel workbook; save it without a password"),
    ("hoso.xlsx", b"<!DOCTYPE html>\n<html><body><table><tr><td>M\xc3\xa3 h\xe1\xbb\x93 s\xc6\xa1</td></tr></table>",
     "an HTML page (a web report saved under a spreadsheet name?); export it as .xlsx or .csv"),
    ("hoso.xlsx", b'<?xml version="1.0"?>\n<?mso-application progid="Excel.Sheet"?>\n<Workbook '
                  b'xmlns="urn:schemas-microsoft-com:office:spreadsheet">',
     "an Excel 2003 XML spreadsheet; open it in Excel and save it as .xlsx"),
    ("hoso.xlsx", _zip({"hoso_1.csv": b"a", "hoso_2.csv": b"b"}),
     "a ZIP archive (holding hoso_1.csv, hoso_2.csv); unpack it and drop the export itself"),
    ("hoso.xlsx", _zip({"mimetype": b"application/vnd.oasis.opendocument.spreadsheet", "content.xml": b"<x/>"}),
     "an OpenDocument spreadsheet (.ods); save it as .xlsx"),
    ("hoso.xlsx", _zip({"[Content_Types].xml": b"<x/>", "word/document.xml": b"<x/>"}), "a Word document (.docx)"),
    ("hoso.csv", gzip.compress(b"a,b\n1,2\n"), "a gzip-compressed file"),
    ("hoso.csv", b"PK\x03\x04\x14\x00\x00\x00" + b"\x00" * 40, "a damaged ZIP file (an Excel workbook cut short, "
                                                                 "e.g. an interrupted download?)"),
    ("hoso.json", bytes(range(256)) * 4, "binary data of no known export format (it starts with bytes "
                                         "00 01 02 03 04 05 06 07)"),
])
def test_a_file_that_is_no_export_says_exactly_what_it_is(tmp_path, name, data, what):
    expected = {"hoso.xlsx": "an Excel workbook (.xlsx)", "hoso.csv": "a CSV text file",
                "hoso.json": "a JSON file"}[name]
    assert _reject(tmp_path, name, data) == f"file one_stop/dossiers/{name} is not {expected}: it is {what}"


def test_an_xlsx_cut_short_is_a_damaged_zip(tmp_path):
    whole = _workbook_bytes()
    reason = _reject(tmp_path, "cut.xlsx", whole[: len(whole) // 2])
    assert reason == ("file one_stop/dossiers/cut.xlsx is not an Excel workbook (.xlsx): it is a damaged ZIP file "
                      "(an Excel workbook cut short, e.g. an interrupted download?)")


def test_empty_files(tmp_path):
    assert _reject(tmp_path, "e.xlsx", b"") == "file one_stop/dossiers/e.xlsx: the file is empty (0 bytes)"
    assert _reject(tmp_path, "e.csv", b"\n\r\n  \n") == \
        "file one_stop/dossiers/e.csv: the file is empty (only blank lines)"


def test_sniff_kind_of_text_kinds(tmp_path):
    p = _file(tmp_path, "x.csv", "\ufeffMã hồ sơ,Mã TTHC\n".encode())
    assert sniff_kind(p) == ("csv", "text (a CSV?)")
    p.write_bytes("Mã hồ sơ\tMã TTHC\r\n".encode("utf-16"))
    assert sniff_kind(p) == ("csv", "text (a CSV?)")
    p.write_bytes(b'  [{"MaHoSo": "x"}]')
    assert sniff_kind(p)[0] == "json"
    p.write_bytes(b'{"data": [\n{"MaHoSo": "x"}\n]}')
    assert sniff_kind(p)[0] == "json"
    p.write_bytes(b'{"MaHoSo": "x"}\n{"MaHoSo": "y"}\n')
    assert sniff_kind(p)[0] == "jsonl"
    p.write_bytes("Mã hồ sơ,Tên\nH1,Đăng ký\x00kết hôn\n".encode())  # a NUL in a value is still text
    assert sniff_kind(p)[0] == "csv"
