"""The KPI report and the nightly reports on the small hand-built warehouse (no browser, no PDF; ~3 s)."""

import html
import re
from datetime import date

from transforms.kpis import registry
from transforms.reports import data, nightly, texts
from transforms.reports.kpi_report import render_report


def _text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def test_report_shows_marts_values_targets_and_the_form06_total(small_wh):
    d = data.load(small_wh.wh, "2024-03")
    page = render_report(d)
    text = " ".join(_text(page).split())
    assert "Tháng 03/2024" in text and "Số liệu đến ngày 31/03/2024" in text
    for k in registry.KPIS:
        assert k.vi in text, k.code
    c1 = d.kpi[(d.kpi.agency_code == "P") & (d.kpi.kpi_code == "on_time_rate")].iloc[0]
    assert texts.percent(c1.value) in text
    f = d.form06[(d.form06.agency_code == "P") & (d.form06.period_basis == "calendar")]
    total = re.search(r'<tr class="total"><td></td><td>Tổng cộng</td>(.*?)</tr>', page, re.S).group(1)
    got = [int(v.replace(".", "")) for v in re.findall(r">([\d.]+)</td>", total)]
    assert got == [int(f[c.code].sum()) for c in registry.FORM06]
    assert page.count('class="chart"') >= 6  # six trend charts (+ ranking bars)
    assert "<script" not in page and not re.search(r"""(src|href)=["']?(https?:)?//""", page)


def test_autoescaping_keeps_markup_in_names_as_text(small_wh):
    d = data.load(small_wh.wh, "2024-03")
    d.agencies.loc[d.agencies.agency_code == "C1", "agency_name"] = "<b>Xã & C1</b>"
    d.s766.loc[d.s766.agency_code == "C1", "agency_name"] = "<b>Xã & C1</b>"
    page = render_report(d)
    assert "<b>Xã" not in page and "&lt;b&gt;Xã &amp; C1&lt;/b&gt;" in page


def test_nightly_writes_latest_closed_periods_index_and_alerts_once(small_wh):
    wh = small_wh.wh
    first = nightly.write_period_reports(wh, date(2024, 3, 31), pdf=False, workbooks=False)
    assert sorted(first.written) == ["2024-03", "2024-Q1"] and sorted(first.newly_closed) == ["2024-03", "2024-Q1"]
    index = (wh / "_reports" / "index.html").read_text(encoding="utf-8")
    assert 'href="kpi/2024-03/report.html"' in index and 'href="kpi/2024-Q1/report.html"' in index
    assert "Quý I/2024" in index and "Tháng 03/2024" in index
    again = nightly.write_period_reports(wh, date(2024, 3, 31), pdf=False, workbooks=False)
    assert again.newly_closed == [] and sorted(again.written) == ["2024-03", "2024-Q1"]
    items = nightly.below_target(wh, first.newly_closed)
    missed = small_wh.sql("SELECT count(*) FROM mart_kpi__agency_period WHERE period IN ('2024-03', '2024-Q1') "
                          "AND meets_target = false")[0][0]
    assert len(items) == missed and {("C1", "on_time_rate"), ("S1", "on_time_rate")} <= {
        (i["agency_code"], i["kpi_code"]) for i in items}
    if items:
        msg = nightly.alert_text(items, "https://bc.example.vn/r")
        assert items[0]["agency_name"] in msg and items[0]["target_text"] in msg and "https://bc.example.vn/r" in msg


def test_nightly_with_no_data_for_the_period_says_so(small_wh):
    res = nightly.write_period_reports(small_wh.wh, date(2030, 5, 2), pdf=False, workbooks=False)
    assert res.written == {} and len(res.notes) == 2 and all("chưa có số liệu" in n for n in res.notes)
    assert res.index.exists()


def test_open_period_lists_dossiers_due_and_the_portal_section(small_wh, tmp_path):
    """An open period (2024, the data date 31/03/2024 inside it) gets the due section from due.due_lists; a portal
    export gives the reconciliation section with its one known difference."""
    import csv

    from transforms.reports.due import due_lists

    d = data.load(small_wh.wh, "2024")
    lists = due_lists(small_wh.wh, days=5, as_of=d.as_of, period_type="year")
    portal = tmp_path / "diem.csv"
    score = float(d.s766[(d.s766.agency_code == "C1") & (d.s766.indicator_code == "2.1")].score.iloc[0])
    with portal.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Mã đơn vị", "Kỳ", "Chỉ số", "Điểm", "Điểm tối đa"])
        w.writerow(["C1", "2024", "2.1", f"{score + 1.5:.2f}", "20"])
    text = " ".join(_text(render_report(d, portal_scores=portal)).split())
    assert "Hồ sơ cần xử lý trước khi hết kỳ" in text and "Kỳ đã kết thúc" not in text
    for a in lists:
        assert a.agency_name in text and all(r["dossier_id"] in text for r in a.overdue + a.due_soon)
    assert "Đối chiếu điểm Bộ chỉ số" in text and "diem.csv" in text and "1,50" in text
    closed = " ".join(_text(render_report(data.load(small_wh.wh, "2024-03"))).split())
    assert "Kỳ đã kết thúc" in closed and "Đối chiếu điểm" not in closed
