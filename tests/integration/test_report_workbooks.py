"""The workbooks, reconcile and due on the sample warehouse (the session's ``sample_warehouse``, as_of 2025-12-31),
checked against the independently computed marts in ../shared/samples/expected. Budget: ~4 s beyond the fixture."""

from __future__ import annotations

import csv
from collections import Counter
from datetime import date
from pathlib import Path

import duckdb
import openpyxl
import pytest

from transforms.kpis.registry import FORM06
from transforms.reports.form06_xlsx import HEAD_ROW, NO_FIELD

pytestmark = pytest.mark.integration
EXPECTED = Path(__file__).resolve().parents[3] / "shared" / "samples" / "expected"
COLS = [f.code for f in FORM06]


def _expected(mart: str, where: str, cols: str) -> list[tuple]:
    if not (EXPECTED / mart).is_dir():
        pytest.skip(f"the expected marts are absent ({EXPECTED})")
    return duckdb.sql(f"SELECT {cols} FROM read_parquet('{EXPECTED / mart}/*.parquet') WHERE {where} "
                      "ORDER BY ALL").fetchall()


@pytest.mark.parametrize("period", ["2025-11", "2025-Q4", "2025"])
def test_workbooks_of_a_month_quarter_and_year_equal_the_expected_marts(sample_warehouse, tmp_path, period):
    from transforms.reports.workbooks import write_workbooks

    paths = write_workbooks(sample_warehouse, period, None, tmp_path, made_on=date(2026, 1, 5))
    wb = openpyxl.load_workbook(paths["form06"], data_only=True)
    assert "H19" in wb.sheetnames
    for ws in wb.worksheets:
        rows = [r for r in ws.iter_rows(min_row=HEAD_ROW + 6, values_only=True) if isinstance(r[0], int)]
        exp = _expected("mart_tt01_form06__agency_period",
                        f"agency_code = '{ws.title}' AND period = '{period}' AND period_basis = 'cutoff_15'",
                        f"coalesce(field_name, field_code, '{NO_FIELD}'), {', '.join(COLS)}")
        assert sorted(tuple(r[1:13]) for r in rows) == exp, ws.title
        total = next(ws.iter_rows(min_row=HEAD_ROW + 5, max_row=HEAD_ROW + 5, values_only=True))
        assert list(total[2:13]) == [sum(r[j] for r in rows) for j in range(2, 13)]
    kpi = openpyxl.load_workbook(paths["kpi"], read_only=True)
    sheet = {"2025-11": "Tháng", "2025-Q4": "Quý", "2025": "Năm"}[period]
    got = Counter((r[0], r[7], r[8]) for r in kpi[sheet].iter_rows(min_row=4, values_only=True)
                  if r[0] and r[3] == _label(period))
    exp = _expected("mart_kpi__agency_period", f"period = '{period}' AND list_contains("
                    f"{sorted({g[0] for g in got})!r}, agency_code)", "agency_code, numerator, denominator")
    assert got == Counter(exp) and len(exp) >= 15


def _label(period: str) -> str:
    from transforms.reports.periods import parse

    return parse(period).label_vi


def test_reconcile_the_expected_scores_gives_no_difference_and_due_matches_the_mart(sample_warehouse, tmp_path):
    from transforms.reports.due import due_lists
    from transforms.reports.reconcile import reconcile

    scores = _expected("mart_766__agency_period", "period = '2025-Q4' AND score IS NOT NULL",
                       "agency_code, indicator_code, score, max_score")
    portal = tmp_path / "portal.csv"
    with portal.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Mã đơn vị", "Kỳ", "Chỉ số", "Điểm", "Điểm tối đa"])
        w.writerows([a, "Quý IV/2025", i, round(s, 2), m] for a, i, s, m in scores)
    res = reconcile(sample_warehouse, portal, tolerance=0.01)
    assert (res.differences, res.problems, res.compared) == ([], [], len(scores))
    lists = due_lists(sample_warehouse, days=10, as_of=date(2025, 12, 31))
    assert lists
    for a in lists:
        (num, den), = _expected("mart_kpi__agency_period", f"agency_code = '{a.agency_code}' AND period = '2025-Q4' "
                                "AND kpi_code = 'on_time_rate'", "numerator, denominator")
        assert (a.numerator, a.denominator) == (num, den)
        assert all(i["days_left"] < 0 for i in a.overdue) or any(i["note"] for i in a.overdue)
        assert all(0 <= i["days_left"] <= 10 for i in a.due_soon)
