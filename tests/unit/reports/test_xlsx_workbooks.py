"""form06.xlsx and kpi.xlsx opened again with openpyxl: numbers equal the marts, totals equal the sums, form 06's
identities hold, Vietnamese labels, merged header cells, print settings. Budget: ~3 s."""

from __future__ import annotations

from datetime import date

import openpyxl
import pytest

from transforms.kpis.registry import FORM06
from transforms.reports.form06_xlsx import HEAD_ROW, MOTTO, NO_FIELD
from transforms.reports.workbooks import write_workbooks

COLS = [f.code for f in FORM06]


@pytest.fixture
def books(small_wh, tmp_path):
    paths = write_workbooks(small_wh.wh, "2024-Q1", None, tmp_path, made_on=date(2024, 4, 2), place="Đông Sơn")
    return small_wh, paths


def _data_rows(ws):
    """(total row values, field rows) of a form 06 sheet: the rows after the column numbers (1)..(13)."""
    rows = list(ws.iter_rows(min_row=HEAD_ROW + 5, values_only=True))
    total = list(ws.iter_rows(min_row=HEAD_ROW + 5, max_row=HEAD_ROW + 5, values_only=True))[0]
    fields = []
    for r in rows[1:]:
        if r[0] is None:
            break
        fields.append(r)
    return total, fields


def test_form06_numbers_equal_the_mart_totals_and_identities_hold(books):
    staged, paths = books
    wb = openpyxl.load_workbook(paths["form06"], data_only=True)
    assert set(wb.sheetnames) >= {"C1", "C2", "S1"}
    for ws in wb.worksheets:
        mart = staged.sql(
            f"SELECT coalesce(field_name, field_code, '{NO_FIELD}'), {', '.join(COLS)} FROM mart_tt01_form06__agency_period WHERE agency_code = "
            f"'{ws.title}' AND period = '2024-Q1' AND period_basis = 'cutoff_15' ORDER BY 1")
        total, fields = _data_rows(ws)
        assert [(r[1], *r[2:13]) for r in fields] == [tuple(m) for m in mart]
        assert all(isinstance(v, int) for r in fields for v in r[2:13])
        assert list(total[2:13]) == [sum(r[j] for r in fields) for j in range(2, 13)]
        for r in [total, *fields]:
            c = dict(zip(range(3, 14), r[2:13]))
            assert c[3] == c[4] + c[5] + c[6] == c[7] + c[11]
            assert c[7] == c[8] + c[9] + c[10] and c[11] == c[12] + c[13]
    # the total row is SUM formulas (their values cached above)
    ws = openpyxl.load_workbook(paths["form06"]).worksheets[0]
    assert str(ws.cell(HEAD_ROW + 5, 3).value).startswith("=SUM(C")


def test_form06_layout_labels_and_print_settings(books):
    _, paths = books
    ws = openpyxl.load_workbook(paths["form06"])["C1"]
    text = {str(c.value) for row in ws.iter_rows() for c in row if c.value is not None}
    assert {MOTTO[0], MOTTO[1], "Biểu số 06/VPCP/KSTT", "Số hồ sơ nhận giải quyết", "Số hồ sơ đang giải quyết",
            "Trực tuyến", "Từ kỳ trước", "THỦ TRƯỞNG ĐƠN VỊ", "Tổng số"} <= text
    assert any("từ ngày 15/12/2023 đến ngày 14/03/2024" in t for t in text)  # the circular's cut-off dates
    assert any(t.startswith("Đông Sơn, ngày 02 tháng 04 năm 2024") for t in text)
    merged = {str(m) for m in ws.merged_cells.ranges}
    assert {"A9:A11", "B9:B11", "C9:F9", "D10:E10", "K9:M9", "C10:C11"} <= merged
    assert ws.page_setup.orientation == "landscape" and int(ws.page_setup.paperSize) == 9
    assert ws.print_title_rows == "$9:$12"
    assert ws.sheet_properties.pageSetUpPr.fitToPage and ws.page_setup.fitToHeight == 0


def test_kpi_workbook_equals_the_mart_with_formats_and_colours(books):
    staged, paths = books
    wb = openpyxl.load_workbook(paths["kpi"])
    assert wb.sheetnames == ["Tháng", "Quý", "Năm", "Bộ chỉ số 766"]
    ws = wb["Quý"]
    head = [c.value for c in ws[3]]
    assert head[:4] == ["Mã đơn vị", "Tên đơn vị", "Cấp", "Kỳ"] and "Chỉ tiêu kế hoạch" in head
    rows = [r for r in ws.iter_rows(min_row=4) if r[0].value]
    got = {(r[0].value, r[6].value): (r[7].value, r[8].value, r[9].value, r[11].value) for r in rows}
    mart = staged.sql("SELECT agency_code, kpi_code, numerator, denominator, value, meets_target "
                      "FROM mart_kpi__agency_period WHERE period = '2024-Q1'")
    from transforms.kpis.registry import KPI

    assert len(got) == len(mart)
    for a, k, num, den, val, met in mart:
        g = got[(a, KPI[k].vi)]
        assert g[:2] == (num, den) and (g[2] == pytest.approx(val) if val is not None else g[2] is None)
        if met is not None:
            assert g[3] == ("Đạt" if met else "Không đạt")
    on_time = next(r for r in rows if r[0].value == "C1" and r[6].value == KPI["on_time_rate"].vi)
    assert on_time[9].number_format == "0.0%" and on_time[1].value == "Xã C1" and on_time[3].value == "Quý I/2024"
    assert ws.freeze_panes == "A4" and ws.auto_filter.ref.startswith("A3:")
    assert len(ws.conditional_formatting) >= 2
    assert {r[3].value for r in wb["Tháng"].iter_rows(min_row=4) if r[0].value} >= {"Tháng 03/2024"}
    s = wb["Bộ chỉ số 766"]
    total = next(r for r in s.iter_rows(min_row=4, values_only=True) if r[0] == "C1" and r[14])
    assert total[14] == "2/2" and total[12] == pytest.approx(sum(
        v for (v,) in staged.sql("SELECT score FROM mart_766__agency_period WHERE agency_code = 'C1' AND "
                                 "period = '2024-Q1' AND score IS NOT NULL")))
