"""tthc reconcile on portal exports written here with known differences; tthc due on a warehouse with open
dossiers and a known as_of; query/explain --out x.xlsx with a formula-like value. Budget: ~6 s."""

from __future__ import annotations

import csv
import importlib.util
from datetime import date
from pathlib import Path

import openpyxl
import pytest
import xlsxwriter
from typer.testing import CliRunner

from transforms.reports.due import due_lists
from transforms.reports.reconcile import ReconcileError, read_portal_scores, reconcile
from tthc.cli import app


def _run(*args):
    return CliRunner().invoke(app, [*args], catch_exceptions=False, env={"COLUMNS": "250"})


def _mart_scores(staged, period="2024-Q1"):
    return staged.sql("SELECT agency_code, indicator_code, score, max_score FROM mart_766__agency_period "
                      f"WHERE period = '{period}' AND score IS NOT NULL ORDER BY 1, 2")


def _portal_rows(staged):
    """The mart's scores as the portal would list them, with known changes: C1 2.1 off by +0.5 (listed), C2 2.1
    off by 0.004 (under the tolerance), S1 written by name with 'Quý I/2024' and a decimal comma, an unknown agency,
    an indicator the pipeline does not compute."""
    head = ["Mã đơn vị", "Tên đơn vị", "Kỳ", "Chỉ số", "Điểm", "Điểm tối đa"]
    rows = []
    for a, ind, score, mx in _mart_scores(staged):
        if a == "C1" and ind == "2.1":
            score += 0.5
        elif a == "C2" and ind == "2.1":
            score += 0.004
        if a == "S1":
            rows.append(["", "Sở S1", "Quý I/2024", f"Chỉ số {ind}", f"{score:.6f}".replace(".", ","), mx])
        else:
            rows.append([a, "", "2024-Q1", ind, score, mx])
    rows.append(["XYZ", "", "2024-Q1", "2.1", 10, 20])
    rows.append(["C1", "", "2024-Q1", "Tiến độ giải quyết", 15, 20])
    rows.append(["C1", "", "2024-Q1", "1.1", 5, 6])
    return head, rows


def test_reconcile_finds_exactly_the_known_differences_csv_and_xlsx(small_wh, tmp_path):
    head, rows = _portal_rows(small_wh)
    as_csv = tmp_path / "diem_766.csv"
    with as_csv.open("w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f, delimiter=";")
        w.writerow(["Kết quả đánh giá Bộ chỉ số 766"])  # a title line above the header, as exports have
        w.writerow(head)
        w.writerows(rows)
    as_xlsx = tmp_path / "diem_766.xlsx"
    wb = xlsxwriter.Workbook(str(as_xlsx))
    ws = wb.add_worksheet()
    for i, r in enumerate([head, *rows]):
        ws.write_row(i + 2, 0, r)
    wb.close()
    for src in (as_csv, as_xlsx):
        res = reconcile(small_wh.wh, src, tolerance=0.01)
        assert [(d["agency_code"], d["indicator_code"], d["difference"]) for d in res.differences] == [
            ("C1", "2.1", pytest.approx(0.5))], src
        d = res.differences[0]
        num, den = small_wh.sql("SELECT numerator, denominator FROM mart_766__agency_period WHERE "
                                "agency_code = 'C1' AND period = '2024-Q1' AND indicator_code = '2.1'")[0]
        assert (d["numerator"], d["denominator"], d["agency_name"]) == (num, den, "Xã C1")
        assert d["explain"].endswith("--kpi 2.1 --agency C1 --period 2024-Q1")
        assert res.compared == len(_mart_scores(small_wh))  # S1's rows matched by name and 'Quý I/2024'
        assert len(res.problems) == 1 and "'XYZ' is not in the agency list" in res.problems[0]
        assert any("1.1 is not computed" in n for n in res.notes)
        assert any("'Tiến độ giải quyết' is a group or total row" in n for n in res.notes)
    out = tmp_path / "khac_biet.xlsx"
    cli = _run("reconcile", "--warehouse", str(small_wh.wh), "--portal-scores", str(as_csv), "--out", str(out))
    assert cli.exit_code == 1 and "XYZ" in cli.output and "C1" in cli.output  # a row it could not match: exit 1
    sheet = openpyxl.load_workbook(out).active
    assert sheet["A1"].value == "Mã đơn vị" and sheet["A2"].value == "C1" and sheet.max_row == 2


def test_reconcile_unreadable_or_headerless_file_is_one_sentence(small_wh, tmp_path):
    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(ReconcileError, match="no header row with the columns period, indicator, score"):
        read_portal_scores(bad)
    broken = tmp_path / "y.xlsx"
    broken.write_bytes(b"PK\x03\x04 not a workbook")
    res = CliRunner().invoke(app, ["reconcile", "--warehouse", str(small_wh.wh), "--portal-scores", str(broken)])
    assert res.exit_code == 2 and "not a readable XLSX workbook" in " ".join(res.output.split())


@pytest.fixture
def open_wh(tmp_path):
    """C1 on 2024-03-20: one dossier due in 2 working days, one 3 working days overdue, one due in April, one
    resolved on time."""
    path = Path(__file__).resolve().parent.parent / "conftest.py"
    spec = importlib.util.spec_from_file_location("marts_staged_for_due", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    s = mod.Staged(tmp_path)
    s.procedure(procedure_name="Đăng ký khai sinh")
    s.dossier("C1-a", received="2024-03-18", due_at="2024-03-22", applicant_name="Nguyễn Văn A")
    s.dossier("C1-b", received="2024-03-11", due_at="2024-03-15")
    s.dossier("C1-c", received="2024-03-18", due_at="2024-04-05")
    s.dossier("C1-d", received="2024-03-11", due_at="2024-03-15", finished_at="2024-03-12", status=10)
    s.build(as_of=date(2024, 3, 20))
    return s


def test_due_lists_due_and_overdue_with_the_rate(open_wh):
    (c1,) = due_lists(open_wh.wh, days=5, as_of=date(2024, 3, 20))
    assert c1.agency_code == "C1" and c1.period == "2024-Q1"
    assert [(i["dossier_id"], i["days_left"], i["due_date"]) for i in c1.due_soon] == [
        ("C1-a", 2, date(2024, 3, 22))]
    assert [(i["dossier_id"], i["days_left"]) for i in c1.overdue] == [("C1-b", -3)]
    mart = open_wh.kpi("C1", "2024-Q1", "on_time_rate")
    assert (c1.numerator, c1.denominator) == mart[:2] == (3, 4)
    assert c1.rate_now == pytest.approx(mart[2]) and c1.rate_if_late == pytest.approx(2 / 4)
    assert not due_lists(open_wh.wh, days=1, as_of=date(2024, 3, 20))[0].due_soon
    out = open_wh.root / "den_han.xlsx"
    res = _run("due", "--warehouse", str(open_wh.wh), "--agency", "C1", "--as-of", "2024-03-20", "--out", str(out))
    flat = " ".join(res.output.replace("│", " ").split())
    assert res.exit_code == 0 and "C1-a" in flat and "22/03/2024" in flat and "75,0 %" in flat
    assert "Nguyễn" not in flat
    rows = list(openpyxl.load_workbook(out).active.iter_rows(values_only=True))
    assert rows[0][:5] == ("Mã đơn vị", "Tên đơn vị", "Kỳ", "Tình trạng", "Mã hồ sơ")
    assert [(r[3], r[4], r[10]) for r in rows[1:]] == [("Quá hạn", "C1-b", -3), ("Đến hạn", "C1-a", 2)]
    assert not any("Nguyễn" in str(v) for r in rows for v in r)


def test_query_and_explain_xlsx_neutralise_formulas_with_vietnamese_headers(small_wh, tmp_path):
    out = tmp_path / "q.xlsx"
    res = _run("query", "--warehouse", str(small_wh.wh), "--out", str(out), "--vi-headers",
               "SELECT agency_code, '=HYPERLINK(\"http://x\")' AS note, numerator FROM mart_kpi__agency_period "
               "WHERE kpi_code = 'on_time_rate' AND period = '2024-Q1' ORDER BY 1")
    assert res.exit_code == 0, res.output
    ws = openpyxl.load_workbook(out).active
    assert [c.value for c in ws[1]] == ["Mã đơn vị", "note", "Tử số"]
    assert ws["B2"].value == "'=HYPERLINK(\"http://x\")" and ws["B2"].data_type == "s"
    assert isinstance(ws["C2"].value, int) and ws.freeze_panes == "A2"
    ex = tmp_path / "e.xlsx"
    res = _run("explain", "--warehouse", str(small_wh.wh), "--kpi", "on_time_rate", "--agency", "C1",
               "--period", "2024-Q1", "--out", str(ex), "--vi-headers")
    assert res.exit_code == 0, res.output
    rows = list(openpyxl.load_workbook(ex).active.iter_rows(values_only=True))
    assert rows[0][0] == "Mã hồ sơ" and "Thuộc tử số" in rows[0]
    assert len(rows) - 1 == small_wh.kpi("C1", "2024-Q1", "on_time_rate")[1]  # the denominator's dossiers
