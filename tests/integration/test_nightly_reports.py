"""Step 8 of the night: the KPI reports of the latest closed month and quarter kept in ``_reports/kpi/`` with their
index, linked from the run's Prefect artifact; the KPI alert (``TTHC_KPI_ALERTS``) sent once per newly closed
period; each agency's due list (``TTHC_DUE_ALERTS``) delivered to a real webhook receiver on 127.0.0.1.

The session's sample warehouse is built by the real nightly flow with the reports on (tests/conftest.py); the alert
tests run the step's body (``run_period_step``) on a copy of it."""

from __future__ import annotations

import re
import shutil
from datetime import date
from pathlib import Path

import duckdb
import pytest

from flows.period_reports import artifact_markdown, run_period_step
from transforms.reports.due import due_lists
from tthc.settings import Settings
from warehouse.state import read_state
from transforms.marts.publish import published_file
from warehouse.generations import current_generation

AS_OF = date(2025, 12, 31)
PERIODS = ["2025-12", "2025-Q4"]


def _copy(sample_warehouse: Path, tmp_path: Path) -> Path:
    wh = tmp_path / "wh"
    shutil.copytree(sample_warehouse, wh, symlinks=True)
    shutil.rmtree(wh / "_reports" / "kpi")  # as on the first night the periods are closed
    return wh


def _settings(wh: Path, **kw) -> Settings:
    return Settings(warehouse=wh, inbox=wh.parent / "inbox", kpi_reports=True, report_pdf=False, **kw)


def _below_target(wh: Path) -> list[tuple]:
    mart = published_file(wh, current_generation(wh), "mart_kpi__agency_period")
    return duckdb.sql(f"SELECT agency_code, period, kpi_code FROM read_parquet('{mart}') WHERE meets_target = false "
                      f"AND period IN ('2025-12', '2025-Q4') ORDER BY ALL").fetchall()


@pytest.mark.integration
def test_the_nightly_flow_keeps_the_period_reports_and_their_index(sample_warehouse):
    root = sample_warehouse / "_reports"
    gen = current_generation(sample_warehouse)
    for period in PERIODS:
        folder = root / "kpi" / period
        names = {"report.html", "form06.xlsx", "kpi.xlsx"} | ({"report.pdf"} if shutil.which("chromium") else set())
        assert names <= {f.name for f in folder.iterdir()}, period
        assert read_state(folder / ".made_from.json")["generation"] == gen.name  # made from the published marts
    index = (root / "index.html").read_text(encoding="utf-8")
    links = re.findall(r'href="([^"]+)"', index)
    for period in PERIODS:
        assert f"kpi/{period}/report.html" in links and f"kpi/{period}/form06.xlsx" in links
    assert any(re.fullmatch(r"dq_r[\w-]+\.html", h) for h in links)  # tonight's data-quality report too
    assert all((root / h).exists() for h in links if not h.startswith(("#", "http"))), links
    assert "Quý IV/2025" in index and "Tháng 12/2025" in index
    # the run's Prefect artifact links the files
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["kpi-reports"])))
    mine = [a.data for a in arts if (root / "index.html").as_uri() in (a.data or "")]
    assert len(mine) == 1, [a.data for a in arts]
    for period in PERIODS:
        assert f"- {period} (mới): [report.html]({(root / 'kpi' / period / 'report.html').as_uri()})" in mine[0]


@pytest.mark.integration
def test_kpi_alert_once_per_newly_closed_period_and_due_lists_by_agency(sample_warehouse, tmp_path, webhook):
    port, got = webhook
    wh = _copy(sample_warehouse, tmp_path)
    lists = {a.agency_code: a for a in due_lists(wh, days=5)}
    one = sorted(lists)[0]
    s = _settings(wh, kpi_alerts=f"json://127.0.0.1:{port}/kpi",
                  due_alerts=f"{one}=json://127.0.0.1:{port}/due-one,json://127.0.0.1:{port}/due-all",
                  report_url_base="https://baocao.example.vn/tthc")
    step = run_period_step(wh, s, AS_OF)
    assert step.notes == [] and step.reports.newly_closed == PERIODS
    by_path = {}
    for m in got:
        by_path.setdefault(m["path"], []).append(m["json"])
    # the KPI alert: one message, one line per KPI below its target in the mart, the report's served address
    missed = _below_target(wh)
    assert missed and step.kpi_alert_items == len(missed)
    (kpi,) = by_path["/kpi"]
    assert "2025-12, 2025-Q4" in kpi["title"]
    assert kpi["message"].count("(chỉ tiêu ") == len(missed)
    for code in {a for a, _, _ in missed}:
        assert f"({code}):" in kpi["message"]
    assert "https://baocao.example.vn/tthc/kpi/2025-12/report.html" in kpi["message"]
    # the due lists: the routed agency gets its own list only; the plain URL gets every agency's, in one message
    (mine,) = by_path["/due-one"]
    assert one in mine["title"] and all(c not in mine["message"] for c in lists if c != one)
    ids = [i["dossier_id"] for i in lists[one].due_soon + lists[one].overdue]
    assert ids and all(mine["message"].count(f"- {i} ·") == 1 for i in ids)
    assert mine["message"].count("\n- ") == len(ids)  # its dossiers, each once, and no other
    (every,) = by_path["/due-all"]
    assert all(f"({c})" in every["message"] for c in lists)
    assert sorted(step.due_alerted) == sorted(lists)
    # the artifact links every file at the served address
    md = artifact_markdown(step, wh, s)
    assert "(https://baocao.example.vn/tthc/kpi/2025-Q4/kpi.xlsx)" in md and "2025-12 (mới)" in md

    # the next night, same marts: nothing is remade, no second KPI alert; the due lists are sent again
    got.clear()
    again = run_period_step(wh, s, AS_OF)
    assert again.reports.newly_closed == [] and again.reports.unchanged == PERIODS
    assert sorted(m["path"] for m in got) == ["/due-all", "/due-one"]


@pytest.mark.integration
def test_an_alert_or_report_that_cannot_be_made_is_a_sentence_not_a_lost_night(sample_warehouse, tmp_path, webhook):
    wh = _copy(sample_warehouse, tmp_path)
    portal = tmp_path / "diem_766.csv"
    portal.write_text("cot_a,cot_b\n1,2\n", encoding="utf-8")  # a download that is not the portal's score table
    dead = _settings(wh, kpi_alerts="json://127.0.0.1:9/kpi", due_alerts="json://127.0.0.1:9/due",
                     portal_scores_path=portal)
    step = run_period_step(wh, dead, AS_OF)
    assert step.reports.newly_closed == PERIODS  # the reports are made all the same, without the comparison
    assert sum("không đối chiếu được với tệp điểm của Cổng" in n for n in step.notes) == 2, step.notes
    assert step.kpi_alert_items == 0  # nothing was delivered, nothing said to be
    # the undelivered KPI alert waits in the periods' folders and goes out the next night, once
    assert all((wh / "_reports" / "kpi" / p / ".kpi_alert_pending").exists() for p in PERIODS)
    port, got = webhook
    live = _settings(wh, kpi_alerts=f"json://127.0.0.1:{port}/kpi")
    again = run_period_step(wh, live, AS_OF)
    assert again.reports.newly_closed == [] and again.kpi_alert_items == len(_below_target(wh))
    assert [m["path"] for m in got] == ["/kpi"] and "2025-12, 2025-Q4" in got[0]["json"]["title"]
    assert not list((wh / "_reports" / "kpi").glob("*/.kpi_alert_pending"))
    run_period_step(wh, live, AS_OF)
    assert len(got) == 1  # sent once
    assert any("chỉ tiêu không đạt chưa gửi được" in n for n in step.notes)
    assert any("hồ sơ đến hạn chưa gửi được" in n for n in step.notes)
    empty = tmp_path / "empty"
    empty.mkdir()
    step = run_period_step(empty, _settings(empty, due_alerts="json://127.0.0.1:9/due"), AS_OF)
    assert step.reports.written == {} and len(step.notes) == 3, step.notes  # two periods, the due lists
    assert all("chưa có" in n and "tthc run" in n for n in step.notes), step.notes
