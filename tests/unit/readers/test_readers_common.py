"""Shared reader pieces: required columns (``required_unless`` included), NFC, footer recognition, file names in
messages."""

from __future__ import annotations

import json
import sys
import unicodedata

import openpyxl
import pyarrow as pa
import pytest

from readers_helpers import DOSSIER_HEADERS, DOSSIER_ROWS, csv_text
from transforms.readers import FileRejected, read_file
from transforms.readers._common import (
    file_label,
    footer_words,
    is_footer_start,
    line_list,
    may_need_nfc,
    nfc,
    required_columns,
    scan_text,
)


def _dossier_dir(tmp_path):
    d = tmp_path / "one_stop" / "dossiers"
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_required_unless_columns_are_required_of_a_file():
    for fmt in ("flat_export", "national_sync"):
        req = required_columns("one_stop", "dossiers", fmt)
        assert "received_at" in req  # required_unless: {status: [1, 3]} in the contract
        assert "agency_code" not in req  # it has a fallback (the Mã hồ sơ prefix)
        assert {"dossier_id", "procedure_code", "status", "updated_at"} <= set(req)


def test_dossier_csv_without_received_at_is_rejected_naming_file_and_column(tmp_path):
    keep = [i for i, h in enumerate(DOSSIER_HEADERS) if h != "Ngày tiếp nhận"]
    rows = [[r[i] for i in keep] for r in DOSSIER_ROWS]
    p = _dossier_dir(tmp_path) / "hoso_thieu_cot.csv"
    p.write_text(csv_text([DOSSIER_HEADERS[i] for i in keep], rows), encoding="utf-8")
    with pytest.raises(FileRejected) as ei:
        read_file(p, "one_stop", "dossiers")
    assert ei.value.reason == (
        "file one_stop/dossiers/hoso_thieu_cot.csv: required column 'Ngày tiếp nhận' (received_at) not found in "
        "the header (line 1); the dossiers export must have it (headers found: 'Mã hồ sơ', 'Mã TTHC', 'Tên TTHC', "
        "'Mã đơn vị', 'Trạng thái', 'Số điện thoại', 'Ngày cập nhật')")
    assert str(ei.value) == ei.value.reason and str(tmp_path) not in str(ei.value)  # no absolute path


def test_dossier_xlsx_and_jsonl_without_received_at_are_rejected(tmp_path):
    keep = [i for i, h in enumerate(DOSSIER_HEADERS) if h != "Ngày tiếp nhận"]
    p = _dossier_dir(tmp_path) / "hoso.xlsx"
    wb = openpyxl.Workbook()
    wb.active.append(["DANH SÁCH HỒ SƠ"])
    wb.active.append([DOSSIER_HEADERS[i] for i in keep])
    for r in DOSSIER_ROWS:
        wb.active.append([r[i] for i in keep])
    wb.save(p)
    with pytest.raises(FileRejected) as ei:
        read_file(p, "one_stop", "dossiers")
    assert ei.value.reason.startswith("file one_stop/dossiers/hoso.xlsx: required column 'Ngày tiếp nhận' "
                                      "(received_at) not found in the header (sheet 'Sheet', row 2)")
    q = _dossier_dir(tmp_path) / "dongbo.jsonl"
    q.write_text(json.dumps({"MaHoSo": "H19.1-230101-0001", "MaTTHC": "1.001612", "TrangThaiHoSo": 1,
                             "NgayCapNhat": "20230101080000"}) + "\n", encoding="utf-8")
    with pytest.raises(FileRejected) as ei:
        read_file(q, "one_stop", "dossiers")
    assert "required column 'NgayTiepNhan' (received_at) not found in any record" in ei.value.reason
    assert ei.value.reason.startswith("file one_stop/dossiers/dongbo.jsonl: ")


def test_file_label_is_inbox_relative_or_base_name(tmp_path):
    assert file_label(tmp_path / "one_stop" / "dossiers" / "a.csv", "one_stop", "dossiers") == \
        "one_stop/dossiers/a.csv"
    assert file_label(tmp_path / "elsewhere" / "a.csv", "one_stop", "dossiers") == "a.csv"


def _second_of_composition() -> set[str]:
    """Characters that can combine with the character before them under NFC (second of a canonical pair)."""
    seconds = set()
    for cp in range(sys.maxunicode + 1):
        dec = unicodedata.decomposition(chr(cp))
        if dec and not dec.startswith("<"):
            parts = dec.split()
            if len(parts) == 2:
                seconds.add(chr(int(parts[1], 16)))
    return seconds


def test_the_nfc_fast_path_ranges_are_nfc_whatever_comes_before():
    """Every character the fast path lets through unexamined (U+0000-U+02FF, U+1E00-U+1EFF) is unchanged by NFC,
    has combining class 0 and is never the second of a composition: text made of them is NFC."""
    seconds = _second_of_composition()
    for cp in [*range(0x0000, 0x0300), *range(0x1E00, 0x1F00)]:
        ch = chr(cp)
        assert unicodedata.normalize("NFC", ch) == ch, hex(cp)
        assert unicodedata.combining(ch) == 0, hex(cp)
        assert ch not in seconds, hex(cp)
    # and the byte test matches: only these characters are passed as certainly NFC
    for cp in [0x41, 0xE0, 0x1A1, 0x2FF, 0x1EA1, 0x1EF9]:
        assert not may_need_nfc(_bytes(chr(cp))), hex(cp)
    for cp in [0x300, 0x301, 0x323, 0x340, 0x1F71, 0x2126, 0x212B, 0x1161, 0xF900, 0x1DC0]:
        assert may_need_nfc(_bytes("a" + chr(cp))), hex(cp)


def _bytes(s: str):
    import numpy as np

    return np.frombuffer(s.encode("utf-8"), dtype=np.uint8)


def test_nfc_normalises_only_what_needs_it_and_respects_slices():
    nfd = unicodedata.normalize("NFD", "Có thành phần số hóa")
    arr = pa.array(["Mã hồ sơ", None, nfd, "\u2126", "plain"])  # U+2126 OHM SIGN -> U+03A9 under NFC
    out = nfc(arr)
    assert out.to_pylist() == ["Mã hồ sơ", None, "Có thành phần số hóa", "\u03a9", "plain"]
    clean = pa.array(["Đăng ký kết hôn", "Không"])
    assert nfc(clean) is clean  # already NFC: the same array, no copy
    # a slice looks at its own values only
    assert nfc(arr.slice(3, 2)).to_pylist() == ["\u03a9", "plain"]
    head = arr.slice(0, 2)
    assert nfc(head) is head


def test_scan_text_finds_replacement_and_c1_characters():
    arr = pa.array(["ok", "Đăng ký", "Chứng thực\u0090 bản sao", None])
    out, row, ch = scan_text(arr)
    assert (row, ch) == (2, "\u0090")
    out, row, ch = scan_text(pa.array(["a", "b\ufffdc"]))
    assert (row, ch) == (1, "\ufffd")
    nbsp = pa.array(["Số\u00a0tiền", "° ± «»"])  # U+00A0.. are fine, only U+0080-U+009F are C1
    out, row, ch = scan_text(nbsp)
    assert row is None and out.to_pylist() == nbsp.to_pylist()
    out, row, _ = scan_text(pa.array([unicodedata.normalize("NFD", "Hộ tịch")]))
    assert row is None and out.to_pylist() == ["Hộ tịch"]


def test_footer_recognition():
    assert footer_words("Tổng cộng: 25 hồ sơ") and footer_words("  TỔNG SỐ") and footer_words("Cộng")
    assert footer_words("Người lập biểu") and footer_words("(Ký, ghi rõ họ tên)") and footer_words("Ghi chú:")
    assert footer_words(unicodedata.normalize("NFD", "Nơi nhận:"))
    assert not footer_words("H19.26293-230105-0001") and not footer_words("Công chứng") \
        and not footer_words("Tổngxyz")
    keys = {0, 7}
    assert is_footer_start(["Tổng cộng", "4", None], keys)
    assert is_footer_start([None, None, "NGƯỜI LẬP BIỂU"], keys)  # one text cell outside the keys
    assert not is_footer_start(["H19.1-230101-0001", None], keys)  # one cell, but a key column
    assert not is_footer_start([None, "25"], keys)  # one cell, but not text
    assert not is_footer_start([None, "25"], keys, texts=[False, False])
    assert is_footer_start([None, "Hà Nội, ngày 31 tháng 01 năm 2024"], keys)
    assert not is_footer_start([None, "Đăng ký kết hôn", "10"], keys)  # two cells: a row missing its keys
    assert line_list([12, 13, 14, 20]) == "12-14, 20"
    assert line_list(list(range(1, 40, 2)), limit=3) == "1, 3, 5, ... (20 in all)"
