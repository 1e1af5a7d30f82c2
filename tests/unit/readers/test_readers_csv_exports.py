"""CSV files as offices really save them: NFD text, control characters, UTF-16, tab and other delimiters, a title
block above the header, blank lines, a footer, damage named by its line."""

from __future__ import annotations

import unicodedata

import pytest

from readers_helpers import DOSSIER_HEADERS, DOSSIER_ROWS, csv_text, rows, table, to_cp1258
from transforms.readers import FileRejected, read_file


def write(tmp_path, name, data: bytes):
    p = tmp_path / "one_stop" / "dossiers" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def read_rows(p, **kw):
    return rows(read_file(p, "one_stop", "dossiers", **kw))


YESNO_HEADERS = [*DOSSIER_HEADERS, "Có kết quả điện tử", "Ghi chú nội bộ"]
YESNO_ROWS = [[*r, yn, note] for r, yn, note in zip(DOSSIER_ROWS, ["Có", "Không", "Có"],
                                                     ["Đã gọi điện", "", "Hồ sơ ưu tiên"], strict=True)]


# --------------------------------------------------------------------------------------------- NFC
def test_nfd_file_reads_exactly_like_its_nfc_twin(tmp_path):
    text = csv_text(YESNO_HEADERS, YESNO_ROWS)
    nfd = unicodedata.normalize("NFD", text)
    assert nfd != text and "C" + "o\u0301" in nfd  # 'Có' decomposed
    a = read_file(write(tmp_path, "nfc.csv", text.encode()), "one_stop", "dossiers")
    b = read_file(write(tmp_path, "nfd.csv", nfd.encode()), "one_stop", "dossiers")
    assert b.columns == a.columns and b.unknown_columns == a.unknown_columns == ["Ghi chú nội bộ"]
    ta, tb = table(a), table(b)
    assert tb.equals(ta)  # every raw value, `_extra` (key and value) and the lineage
    assert tb.column("has_e_result").to_pylist() == ["Có", "Không", "Có"]
    assert tb.column("_extra").to_pylist()[0] == '{"Ghi chú nội bộ":"Đã gọi điện"}'


def test_one_nfd_value_among_nfc_ones_is_normalised(tmp_path):
    rs = [list(r) for r in YESNO_ROWS]
    rs[1][2] = unicodedata.normalize("NFD", "Chứng thực bản sao")
    out = read_rows(write(tmp_path, "mixed.csv", csv_text(YESNO_HEADERS, rs).encode()))
    assert [r["procedure_name"] for r in out] == ["Đăng ký kết hôn", "Chứng thực bản sao", "Đăng ký khai sinh"]
    assert all(unicodedata.is_normalized("NFC", r["procedure_name"]) for r in out)


# --------------------------------------------------------------------------------------------- control characters
@pytest.mark.parametrize("quoted", [False, True])
def test_control_characters_stay_in_their_value_and_split_nothing(tmp_path, quoted):
    rs = [list(r) for r in DOSSIER_ROWS]
    rs[0][2] = "Đăng ký\x00kết hôn"  # NUL
    rs[1][2] = "Chứng\x1b[0m thực\x07"  # ESC, BEL
    rs[2][6] = "0387\x0b000\x0c111\x1f"  # VT, FF, US
    data = csv_text(DOSSIER_HEADERS, rs)
    if quoted:
        for v in (rs[0][2], rs[1][2], rs[2][6]):
            data = data.replace(v, f'"{v}"')
    res = read_file(write(tmp_path, "cc.csv", data.encode()), "one_stop", "dossiers")
    out = rows(res)
    assert len(out) == 3 and [r["_source_line"] for r in out] == [2, 3, 4]
    assert out[0]["procedure_name"] == "Đăng ký\x00kết hôn" and out[0]["agency_code"] == "H19.26293"
    assert out[1]["procedure_name"] == "Chứng\x1b[0m thực\x07" and out[1]["status"] == "4"
    assert out[2]["applicant_phone"] == "0387\x0b000\x0c111\x1f"
    assert out[2]["updated_at"] == "07/01/2023 11:00:00"  # no column shifted
    assert res.notes == [] and res.skipped == {}


def test_control_characters_pass_in_legacy_and_utf16_files_too(tmp_path):
    rs = [list(r) for r in DOSSIER_ROWS]
    rs[0][2] = "Đăng ký\x00kết hôn\x1b"
    text = csv_text(DOSSIER_HEADERS, rs)
    for name, data in (("cp.csv", to_cp1258(text)), ("u16.csv", text.encode("utf-16"))):
        out = read_rows(write(tmp_path, name, data))
        assert out[0]["procedure_name"] == "Đăng ký\x00kết hôn\x1b", name
        assert len(out) == 3


def test_c1_control_in_utf8_text_is_a_wrong_encoding_named_by_line_and_column(tmp_path):
    rs = [list(r) for r in DOSSIER_ROWS]
    rs[1][2] = "Chá»©ng thá»±c\u0090"  # mojibake with a C1 control, only in this row
    p = write(tmp_path, "c1.csv", csv_text(DOSSIER_HEADERS, rs).encode())
    with pytest.raises(FileRejected) as ei:
        read_rows(p)
    assert ei.value.reason == ("file one_stop/dossiers/c1.csv: line 3, column 'Tên TTHC': U+0090, a C1 control "
                               "character: the text was decoded with the wrong code page; the text encoding is "
                               "wrong: export the file again as UTF-8")


def test_replacement_character_is_named_by_line_and_column(tmp_path):
    rs = [list(r) for r in DOSSIER_ROWS]
    rs[2][4] = "\ufffd\ufffd tr\ufffd k\ufffdt qu\ufffd"
    p = write(tmp_path, "fffd.csv", csv_text(DOSSIER_HEADERS, rs).encode())
    with pytest.raises(FileRejected) as ei:
        read_rows(p)
    assert ei.value.reason.startswith("file one_stop/dossiers/fffd.csv: line 4, column 'Trạng thái': U+FFFD (the "
                                      "replacement character �): characters were lost")


# --------------------------------------------------------------------------------------------- encodings
@pytest.mark.parametrize("codec,bom,label", [
    ("utf-16-le", b"\xff\xfe", "utf-16-le"), ("utf-16-be", b"\xfe\xff", "utf-16-be"),
    ("utf-16-le", b"", "utf-16-le"), ("utf-16-be", b"", "utf-16-be")])
def test_utf16_with_and_without_bom(tmp_path, codec, bom, label):
    text = csv_text(DOSSIER_HEADERS, DOSSIER_ROWS, delim="\t").replace("\n", "\r\n")  # Excel's "Unicode text"
    ref = read_rows(write(tmp_path, "ref.csv", text.encode()))
    res = read_file(write(tmp_path, "u16.csv", bom + text.encode(codec)), "one_stop", "dossiers")
    assert (res.encoding, res.delimiter) == (label, "\t")
    assert rows(res) == ref
    assert ref[2]["status"] == "Đã trả kết quả"


def test_utf8_with_and_without_bom_and_cp1258_read_alike(tmp_path):
    text = csv_text(DOSSIER_HEADERS, DOSSIER_ROWS)
    ref = read_rows(write(tmp_path, "a.csv", text.encode()))
    assert read_rows(write(tmp_path, "b.csv", b"\xef\xbb\xbf" + text.encode())) == ref
    res = read_file(write(tmp_path, "c.csv", to_cp1258(text)), "one_stop", "dossiers")
    assert res.encoding == "cp1258" and rows(res) == ref


def test_a_file_damaged_at_line_701_is_blamed_on_line_701(tmp_path):
    rs = [[f"H19.26293-230105-{i:04d}", "1.001612", "Đăng ký kết hôn", "", "10", "05/01/2023 08:00:00", "",
           "06/01/2023 09:00:00"] for i in range(1, 721)]
    good = csv_text(DOSSIER_HEADERS, rs[:699]).encode()  # lines 1-700 in UTF-8
    bad = to_cp1258(csv_text(DOSSIER_HEADERS, rs[699:719]).split("\n", 1)[1])  # lines 701-720 in Windows-1258
    assert bad.startswith(b"H19.26293-230105-0700,1.001612,\xd0")
    p = write(tmp_path, "damaged.csv", good + bad)
    with pytest.raises(FileRejected) as ei:
        read_rows(p)
    assert ei.value.reason.startswith("file one_stop/dossiers/damaged.csv: line 701: bytes 0xD0 ")
    assert "are not UTF-8, although the text before line 701 is UTF-8 (mixed encodings)" in ei.value.reason
    assert "offset" not in ei.value.reason


def test_damage_after_the_sampled_start_is_named_by_line(tmp_path, monkeypatch):
    import transforms.readers.csv_reader as cr

    monkeypatch.setattr(cr, "SAMPLE_BYTES", 600)  # the start looked at is valid UTF-8
    rs = [[f"H19.26293-230105-{i:04d}", "1.001612", "Đăng ký kết hôn", "", "10", "", "", "06/01/2023"]
          for i in range(1, 3001)]
    text = csv_text(DOSSIER_HEADERS, rs)
    lines = text.split("\n")
    data = ("\n".join(lines[:2500]) + "\n").encode() + to_cp1258("\n".join(lines[2500:]))
    p = write(tmp_path, "late.csv", data)
    res = read_file(p, "one_stop", "dossiers")
    with pytest.raises(FileRejected) as ei:
        table(res)
    assert ei.value.reason.startswith("file one_stop/dossiers/late.csv: line 2501: bytes ")
    assert "mixed encodings" in ei.value.reason


def test_cp1258_byte_that_is_no_text_is_named_by_line(tmp_path):
    data = to_cp1258(csv_text(DOSSIER_HEADERS, DOSSIER_ROWS)) + b"H19.1-230101-0009,1.001612,x\x81y,,10,,,01/01/2023\n"
    p = write(tmp_path, "cp_bad.csv", data)
    with pytest.raises(FileRejected) as ei:
        read_rows(p)
    assert ei.value.reason.startswith("file one_stop/dossiers/cp_bad.csv: line 5: byte 0x81 is neither UTF-8 nor "
                                      "Windows-1258 (cp1258) text")


# --------------------------------------------------------------------------------------------- delimiters, title
@pytest.mark.parametrize("delim", [",", ";", "\t", "|"])
def test_delimiters_are_sniffed(tmp_path, delim):
    res = read_file(write(tmp_path, "d.csv", csv_text(DOSSIER_HEADERS, DOSSIER_ROWS, delim=delim).encode()),
                    "one_stop", "dossiers")
    assert res.delimiter == delim
    out = rows(res)
    assert [r["procedure_name"] for r in out] == [r[2] for r in DOSSIER_ROWS]
    assert out[1]["received_at"] == "05/01/2023 09:30:00"


def test_title_block_above_the_header_is_skipped(tmp_path):
    title = "ỦY BAN NHÂN DÂN TỈNH ĐÔNG SƠN\nDANH SÁCH HỒ SƠ;;;\n\n"
    p = write(tmp_path, "t.csv", (title + csv_text(DOSSIER_HEADERS, DOSSIER_ROWS, delim=";")).encode())
    res = read_file(p, "one_stop", "dossiers")
    assert res.header_rows == [4] and res.first_data_line == 5 and res.delimiter == ";"
    out = rows(res)
    assert [r["_source_line"] for r in out] == [5, 6, 7] and [r["_source_row"] for r in out] == [1, 2, 3]
    lines = p.read_text().split("\n")
    assert all(lines[r["_source_line"] - 1].startswith(r["dossier_id"]) for r in out)
    assert res.skipped == {} and res.notes == []  # a title is not data: nothing to report


def test_title_block_with_a_quoted_multiline_cell(tmp_path):
    title = '"BÁO CÁO\nCHI TIẾT HỒ SƠ",,\nTừ ngày 01/01/2023,,\n'
    p = write(tmp_path, "t2.csv", (title + csv_text(DOSSIER_HEADERS, DOSSIER_ROWS)).encode())
    res = read_file(p, "one_stop", "dossiers")
    assert res.header_rows == [4] and res.first_data_line == 5
    assert [r["_source_line"] for r in rows(res)] == [5, 6, 7]


# --------------------------------------------------------------------------------------------- rows
def test_blank_lines_and_empty_rows_are_skipped_counted_and_lines_stay_exact(tmp_path):
    lines = csv_text(DOSSIER_HEADERS, DOSSIER_ROWS).split("\n")
    data = "\n".join([lines[0], lines[1], "", ",,,,,,,", lines[2], '"",,,  ,,,,', lines[3]]) + "\n"
    p = write(tmp_path, "blank.csv", data.encode())
    res = read_file(p, "one_stop", "dossiers")
    out = rows(res)
    assert [(r["_source_row"], r["_source_line"]) for r in out] == [(1, 2), (2, 5), (3, 7)]
    assert res.skipped == {"blank": [3, 4, 6]}
    assert res.notes == ["file one_stop/dossiers/blank.csv: 3 blank lines skipped (lines 3-4, 6)"]


def test_footer_after_the_data_is_listed_not_read(tmp_path):
    body = csv_text(DOSSIER_HEADERS, DOSSIER_ROWS)
    footer = "Tổng cộng: 3 hồ sơ,,,,,,,\n\n,,,,,Người lập biểu,,\nNgười lập biểu\n,,(Ký, ghi rõ họ tên)\n"
    p = write(tmp_path, "f.csv", (body + footer).encode())
    res = read_file(p, "one_stop", "dossiers")
    out = rows(res)
    assert [r["dossier_id"] for r in out] == [r[0] for r in DOSSIER_ROWS]
    assert res.skipped == {"blank": [6], "footer": [5, 7, 8, 9]}
    assert res.notes == ["file one_stop/dossiers/f.csv: 1 blank line skipped (line 6)",
                         "file one_stop/dossiers/f.csv: 4 lines of the footer below the data not read as data "
                         "(lines 5, 7-9)"]


def test_rows_without_keys_before_a_footer_are_data(tmp_path):
    rs = [list(r) for r in DOSSIER_ROWS] + [["", "1.001612", "Đăng ký kết hôn", "", "10", "", "", ""]]
    p = write(tmp_path, "nokey.csv", (csv_text(DOSSIER_HEADERS, rs) + "Tổng cộng,4,,,,,,\n").encode())
    res = read_file(p, "one_stop", "dossiers")
    out = rows(res)
    assert len(out) == 4 and out[3]["dossier_id"] is None and out[3]["_source_line"] == 5  # staging's to judge
    assert res.skipped == {"footer": [6]}


def test_rows_without_keys_and_no_footer_are_data(tmp_path):
    rs = [list(r) for r in DOSSIER_ROWS] + [["", "1.001612", "", "", "10", "", "", ""]] * 2
    res = read_file(write(tmp_path, "nokey2.csv", csv_text(DOSSIER_HEADERS, rs).encode()), "one_stop", "dossiers")
    assert [r["_source_line"] for r in rows(res)] == [2, 3, 4, 5, 6] and res.skipped == {}


def test_a_long_keyless_stretch_is_data_and_rows_stay_in_order(tmp_path, monkeypatch):
    import transforms.readers.csv_reader as cr

    monkeypatch.setattr(cr, "TAIL_MAX", 5)
    rs = [[f"H19.1-230101-{i:04d}", "1.001612", "", "", "10", "", "", "" if 3 <= i < 40 else "01/01/2023"]
          for i in range(1, 51)]
    out = rows(read_file(write(tmp_path, "long.csv", csv_text(DOSSIER_HEADERS, rs).encode()), "one_stop",
                         "dossiers", batch_rows=7))
    assert [r["dossier_id"] for r in out] == [r[0] for r in rs]
    assert [r["_source_row"] for r in out] == list(range(1, 51))
    assert [r["_source_line"] for r in out] == list(range(2, 52))


def test_a_bad_row_in_the_middle_is_rejected_with_its_line(tmp_path):
    rs = [list(r) for r in DOSSIER_ROWS]
    rs[0][2] = "Đăng ký\nkết hôn"  # a line break inside a cell moves the lines after it
    lines = csv_text(DOSSIER_HEADERS, rs).split("\n")
    lines.insert(4, "H19.26293-230105-0009,1.001612,Tên có dấu phẩy, chưa đặt trong ngoặc kép,,10,,,01/01/2023")
    p = write(tmp_path, "mid.csv", "\n".join(lines).encode())
    res = read_file(p, "one_stop", "dossiers")
    with pytest.raises(FileRejected) as ei:
        table(res)
    assert ei.value.reason == (
        "file one_stop/dossiers/mid.csv: cannot be read as CSV: line 5 has 9 fields where the header (line 1) has 8 "
        "(comma-separated); a value holding the delimiter needs double quotes, and the file may have been cut "
        "short or edited by hand")


def test_a_row_cut_short_at_the_end_is_rejected_not_taken_for_a_footer(tmp_path):
    data = csv_text(DOSSIER_HEADERS, DOSSIER_ROWS) + "H19.26296-230106-0002,1.001193,Đăng ký\n"
    p = write(tmp_path, "cut.csv", data.encode())
    with pytest.raises(FileRejected) as ei:
        table(read_file(p, "one_stop", "dossiers"))
    assert "cannot be read as CSV: line 5 has 3 fields where the header (line 1) has 8" in ei.value.reason


def test_lines_after_bad_footer_rows_and_multiline_cells_stay_exact(tmp_path):
    rs = [list(r) for r in DOSSIER_ROWS]
    rs[1][2] = "Chứng thực\nbản sao\nlần 2"
    data = (csv_text(DOSSIER_HEADERS, rs) + "Tổng cộng,3\n\n\"Ghi chú:\nhồ sơ trễ hạn\"\n"
            + "H19.1-230101-0001,,,,,,,08/01/2023\n")
    p = write(tmp_path, "after.csv", data.encode())
    res = read_file(p, "one_stop", "dossiers", batch_rows=2)
    out = rows(res)
    # the row after the footer carries its keys (Mã hồ sơ, Ngày cập nhật): it is data, on its real line
    assert [(r["dossier_id"], r["_source_line"]) for r in out] == [
        ("H19.26293-230105-0001", 2), ("H19.26293-230105-0002", 3), ("H19.26296-230106-0001", 6),
        ("H19.1-230101-0001", 11)]
    text_lines = p.read_text().split("\n")
    assert text_lines[10].startswith("H19.1-230101-0001")
    # the footer rows before it (fewer fields than the header) are listed, not rejected
    assert res.skipped == {"footer": [7, 9], "blank": [8]}


def test_header_only_and_sample_inbox_shapes_unchanged(tmp_path):
    p = write(tmp_path, "h.csv", (",".join(DOSSIER_HEADERS) + "\r\n").encode())
    res = read_file(p, "one_stop", "dossiers")
    assert table(res).num_rows == 0 and res.skipped == {}
    assert res.notes == ["file one_stop/dossiers/h.csv: no data rows below the header (line 1)"]


def test_a_signature_line_filling_the_key_columns_is_footer_not_data(tmp_path):
    n = len(DOSSIER_HEADERS)  # Mã hồ sơ first, Ngày cập nhật last: the signature lands in both key columns
    foot = [["Tổng cộng: 3 hồ sơ"] + [""] * (n - 1), [""] * n,
            ["NGƯỜI LẬP BIỂU"] + [""] * (n - 2) + ["THỦ TRƯỞNG ĐƠN VỊ"]]
    p = write(tmp_path, "sig.csv", csv_text(DOSSIER_HEADERS, [*DOSSIER_ROWS, *foot]).encode())
    res = read_file(p, "one_stop", "dossiers", batch_rows=2)
    assert [r["dossier_id"] for r in rows(res)] == [r[0] for r in DOSSIER_ROWS]
    assert res.skipped == {"blank": [6], "footer": [5, 7]}
    assert res.notes[1] == ("file one_stop/dossiers/sig.csv: 2 lines of the footer below the data not read as data "
                            "(lines 5, 7)")


def test_a_column_named_twice_is_rejected_naming_both(tmp_path):
    headers = [*DOSSIER_HEADERS, "Ngày cập nhật"]
    rs = [[*r, r[5]] for r in DOSSIER_ROWS]  # the second one holds other values
    title = "DANH SÁCH HỒ SƠ\n"
    p = write(tmp_path, "twice.csv", (title + csv_text(headers, rs)).encode())
    with pytest.raises(FileRejected) as ei:
        read_file(p, "one_stop", "dossiers")
    assert ei.value.reason == (
        "file one_stop/dossiers/twice.csv: the column 'Ngày cập nhật' (updated_at) is named twice in the header "
        "(line 2): column 8 'Ngày cập nhật' and column 9 'Ngày cập nhật'; which of the two holds its values cannot "
        "be told: keep one and drop the file again")
    # two different aliases of one column are the same ambiguity
    q = write(tmp_path, "alias.csv", csv_text([*DOSSIER_HEADERS, "updated_at"], rs).encode())
    with pytest.raises(FileRejected, match="named twice in the header .line 1.: column 8 'Ngày cập nhật' and column 9 "
                                           "'updated_at'"):
        read_file(q, "one_stop", "dossiers")
