"""Form 06 of Circular 01/2020/TT-VPCP as a workbook laid out as the circular's ("Biểu số 06/VPCP/KSTT").

One sheet per agency: the heading block (the agency above and the reporting agency, the national motto, the form
number and the circular, the receiving agency, the title, the reporting period with its dates, the unit of
measure), the column headers as the circular numbers and names them (three merged rows and the row of column
numbers (1)..(13)), the total row (SUM formulas with their values cached, so a reader that does not calculate sees
numbers too), one row per field (lĩnh vực) with the mart's numbers, and the place, date and signature block.
Printed landscape on A4, fit to the page width, the header rows repeated on every page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from transforms.kpis.registry import FORM06
from transforms.reports.xlsx_common import atomic_workbook, cell_text, formats, print_setup, sheet_name

COLUMNS = tuple(f.code for f in FORM06)  # c03..c13, the sheet's columns C..M
FORM_NO = "Biểu số 06/VPCP/KSTT"
CIRCULAR = "Ban hành kèm theo Thông tư số 01/2020/TT-VPCP ngày 21/10/2020"
TITLE = ("TÌNH HÌNH, KẾT QUẢ GIẢI QUYẾT THỦ TỤC HÀNH CHÍNH TẠI CƠ QUAN, ĐƠN VỊ TRỰC TIẾP GIẢI QUYẾT "
         "THỦ TỤC HÀNH CHÍNH")
MOTTO = ("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc")
UNIT = "Đơn vị tính: Số hồ sơ TTHC"
RECEIVER_TOP = "Văn phòng Chính phủ"  # who receives the form of an agency with none above it (a province)
# (first row, first col, last row, last col, text) of the header block, relative to its first row; columns 0..12
HEADER = (
    (0, 0, 2, 0, "STT"),
    (0, 1, 2, 1, "Lĩnh vực, công việc giải quyết theo cấp"),
    (0, 2, 0, 5, "Số hồ sơ nhận giải quyết"),
    (0, 6, 0, 9, "Kết quả giải quyết: số hồ sơ đã giải quyết"),
    (0, 10, 0, 12, "Số hồ sơ đang giải quyết"),
    (1, 2, 2, 2, "Tổng số"),
    (1, 3, 1, 4, "Trong kỳ"),
    (2, 3, 2, 3, "Trực tuyến"),
    (2, 4, 2, 4, "Trực tiếp, dịch vụ bưu chính"),
    (1, 5, 2, 5, "Từ kỳ trước"),
    (1, 6, 2, 6, "Tổng số"),
    (1, 7, 2, 7, "Trước hạn"),
    (1, 8, 2, 8, "Đúng hạn"),
    (1, 9, 2, 9, "Quá hạn"),
    (1, 10, 2, 10, "Tổng số"),
    (1, 11, 2, 11, "Trong hạn"),
    (1, 12, 2, 12, "Quá hạn"),
)
HEAD_ROW = 8      # first header row (0-based): rows 9-11 in Excel, the column numbers on row 12
TOTAL_LABEL = "Tổng số"
NO_FIELD = "Chưa rõ lĩnh vực"  # a dossier whose field neither it nor its procedure gives
WIDTHS = (6, 42) + (11,) * 11


@dataclass
class Form06Sheet:
    """One agency's form: ``rows`` are the mart's rows of the period (``field_code``, ``field_name``, c03..c13)."""
    agency_code: str
    agency_name: str
    period_title: str          # "Quý IV năm 2025"
    start: date
    end: date
    rows: Sequence[dict] = field(default_factory=list)
    above_name: str | None = None      # the agency above (heading line 1) and the receiving agency


def write_form06(path: Path, sheets: Sequence[Form06Sheet], *, made_on: date, place: str = "") -> None:
    """Write the workbook (whole or not at all), one sheet per agency in the order given."""
    with atomic_workbook(path) as wb:
        fm = formats(wb)
        taken: set[str] = set()
        for s in sheets:
            _sheet(wb, fm, s, sheet_name(s.agency_code, taken), made_on, place)
        if not sheets:
            ws = wb.add_worksheet("Biểu 06")
            ws.write_string(0, 0, "Không có đơn vị nào có hồ sơ trong kỳ.", fm["italic"])


def _sheet(wb, fm: dict, s: Form06Sheet, name: str, made_on: date, place: str) -> None:
    ws = wb.add_worksheet(name)
    for j, w in enumerate(WIDTHS):
        ws.set_column(j, j, w)
    above = (s.above_name or "").upper()
    ws.merge_range(0, 0, 0, 4, cell_text(above), fm["center"])
    ws.merge_range(1, 0, 1, 4, cell_text(s.agency_name.upper()), fm["center_bold"])
    ws.merge_range(0, 7, 0, 12, MOTTO[0], fm["center_bold"])
    ws.merge_range(1, 7, 1, 12, MOTTO[1], fm["motto"])
    ws.merge_range(3, 0, 3, 4, FORM_NO, fm["bold"])
    ws.merge_range(4, 0, 4, 4, CIRCULAR, fm["italic"])
    ws.merge_range(3, 9, 3, 12, cell_text(f"Đơn vị báo cáo: {s.agency_name}"), fm["text"])
    ws.merge_range(4, 9, 4, 12, cell_text(f"Đơn vị nhận báo cáo: {s.above_name or RECEIVER_TOP}"), fm["text"])
    ws.merge_range(5, 0, 5, 12, TITLE, fm["title"])
    ws.set_row(5, 36)
    ws.merge_range(6, 0, 6, 12, f"Kỳ báo cáo: {s.period_title} (từ ngày {s.start:%d/%m/%Y} đến ngày "
                                f"{s.end:%d/%m/%Y})", fm["center_italic"])
    ws.merge_range(7, 0, 7, 12, UNIT, fm["right_italic"])
    for r0, c0, r1, c1, text in HEADER:
        if (r0, c0) == (r1, c1):
            ws.write_string(HEAD_ROW + r0, c0, text, fm["head"])
        else:
            ws.merge_range(HEAD_ROW + r0, c0, HEAD_ROW + r1, c1, text, fm["head"])
    ws.set_row(HEAD_ROW + 2, 45)
    for j in range(13):
        ws.write_string(HEAD_ROW + 3, j, f"({j + 1})", fm["colno"])
    total_row = HEAD_ROW + 4
    first = total_row + 1
    rows = sorted(s.rows, key=lambda r: (r.get("field_name") or "", r.get("field_code") or ""))
    for i, row in enumerate(rows):
        r = first + i
        ws.write_number(r, 0, i + 1, fm["cell_center"])
        ws.write_string(r, 1, cell_text(row.get("field_name") or row.get("field_code") or NO_FIELD),
                        fm["cell"])
        for j, col in enumerate(COLUMNS, start=2):
            ws.write_number(r, j, int(row.get(col) or 0), fm["int"])
    last = first + len(rows) - 1
    ws.write_blank(total_row, 0, None, fm["total_label"])
    ws.write_string(total_row, 1, TOTAL_LABEL, fm["total_label"])
    for j, col in enumerate(COLUMNS, start=2):
        cached = sum(int(r.get(col) or 0) for r in rows)
        if rows:
            letter = _letter(j)
            ws.write_formula(total_row, j, f"=SUM({letter}{first + 1}:{letter}{last + 1})", fm["total_int"], cached)
        else:
            ws.write_number(total_row, j, 0, fm["total_int"])
    sign = max(last, total_row) + 3
    ws.merge_range(sign, 8, sign, 12, cell_text(f"{place or '...............'}, ngày {made_on:%d} tháng "
                                                f"{made_on:%m} năm {made_on:%Y}"), fm["center_italic"])
    ws.merge_range(sign + 1, 0, sign + 1, 4, "NGƯỜI LẬP BIỂU", fm["center_bold"])
    ws.merge_range(sign + 2, 0, sign + 2, 4, "(Ký, ghi rõ họ tên)", fm["center_italic"])
    ws.merge_range(sign + 1, 8, sign + 1, 12, "THỦ TRƯỞNG ĐƠN VỊ", fm["center_bold"])
    ws.merge_range(sign + 2, 8, sign + 2, 12, "(Ký, ghi rõ họ tên, đóng dấu)", fm["center_italic"])
    print_setup(ws, repeat=(HEAD_ROW, HEAD_ROW + 3))
    ws.print_area(0, 0, sign + 6, 12)
    ws.freeze_panes(total_row, 2)


def _letter(col: int) -> str:
    return chr(ord("A") + col)
