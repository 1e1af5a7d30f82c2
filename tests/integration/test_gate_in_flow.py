"""The gate inside the nightly flow: a batch breaking a critical contract is held out of core and marts (the
previous marts stay byte-identical), the run ends Failed naming file, rule and count, the night's other batches
proceed, and the alert reaches a real webhook receiver and a real SMTP server, without personal data."""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest

from devkit.sample import generate_inbox
from warehouse.ledger import Ledger

pytestmark = pytest.mark.integration
AS_OF = date(2025, 12, 31)


def _marts(wh):
    return {p.parent.name: p.read_bytes() for p in sorted(wh.glob("mart_*/data.parquet"))
            if not p.parent.name.startswith("mart_dq__")}


def _night(tmp_path, monkeypatch, *, seed: int, scale: float, alerts: str = ""):
    """A generated inbox and a warehouse path; settings as a night with alerts to ``alerts`` and no pull sources."""
    inbox, wh = tmp_path / "inbox", tmp_path / "wh"
    generate_inbox(inbox, seed=seed, scale=scale)
    monkeypatch.setenv("TTHC_PSEUDONYM_KEY", "k")
    monkeypatch.setenv("TTHC_ALERT_URLS", alerts)
    for k in ("TTHC_DVC_PORTAL_URL", "TTHC_ONE_STOP_URL", "TTHC_ONE_STOP_DB_URL"):
        monkeypatch.delenv(k, raising=False)
    return inbox, wh


def _bad_export(src, dst):
    """A copy of a dossier export whose promised dates all precede receipt (and a later Ngày cập nhật)."""
    text = src.read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    head = rows[0]
    due, upd, rec = head.index("Ngày hẹn trả"), head.index("Ngày cập nhật"), head.index("Ngày tiếp nhận")
    out = [head]
    for r in rows[1:]:
        if r[rec]:
            r[due] = "01/01/2020 08:00:00"
            r[upd] = "30/12/2025 10:00:00"
            out.append(r)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(out)
    dst.write_text(buf.getvalue(), encoding="utf-8")
    return len(out) - 1, [r[head.index("Số điện thoại")] for r in out[1:] if r[head.index("Số điện thoại")]]


def _rewrite_export(src, dst, change) -> list[list[str]]:
    """A copy of a dossier export with ``change(i, row, col)`` applied to each data row (``col``: header -> index);
    returns the rows written."""
    from transforms.contracts import norm_label

    rows = list(csv.reader(io.StringIO(src.read_text(encoding="utf-8-sig"))))
    head = rows[0]

    class Col(dict):  # a header as a person writes it finds its column however the export spells it
        def __missing__(self, name):
            return self[norm_label(name)]

    col = Col({norm_label(h.replace("(*)", "")): i for i, h in enumerate(head)})
    out = [head] + [change(i, r, col) or r for i, r in enumerate(rows[1:])]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(out)
    dst.write_text(buf.getvalue(), encoding="utf-8")
    return out[1:]


def _status_outside_the_list(src, dst, every: int = 5) -> tuple[int, int]:
    """A new export where every 5th dossier carries status 11 or 12 (outside the list 1..10); (changed, rows)."""
    changed = []

    def change(i, r, col):
        if i % every == 0:
            r[col["Trạng thái"]] = "11" if len(changed) % 2 else "12"
            changed.append(i)

    rows = _rewrite_export(src, dst, change)
    return len(changed), len(rows)


def _clean_export(wh, inbox):
    """A dossier CSV of the inbox that the first night staged whole (no row quarantined)."""
    ledger = Ledger(f"sqlite:///{wh / '_ledger.sqlite'}")
    try:
        clean = {b["path"] for b in ledger.recent_batches(1000) if b["rows_quarantined"] == 0}
    finally:
        ledger.dispose()
    return next(p for p in sorted((inbox / "one_stop" / "dossiers").glob("*.csv")) if "cp1258" not in p.name
                and "loi_font" not in p.name and p.relative_to(inbox).as_posix() in clean)


def test_critical_failure_holds_the_batch_keeps_marts_and_alerts(prefect_harness, tmp_path, monkeypatch, webhook,
                                                                 smtp):
    from flows.nightly import nightly

    hport, hooks = webhook
    sport, mails = smtp
    inbox, wh = _night(tmp_path, monkeypatch, seed=11, scale=0.3,
                       alerts=f"json://127.0.0.1:{hport}/dq,mailto://127.0.0.1:{sport}?smtp=127.0.0.1"
                              f"&mode=insecure&from=tthc@example.org&to=kstthc@example.org")
    first = nightly(inbox=str(inbox), warehouse=str(wh), as_of=AS_OF, return_state=True)
    assert first.is_completed(), first.message
    # a clean night raises no critical alert (warnings, e.g. stale history files, may be reported)
    assert all("[LỖI]" not in h["json"]["message"] and "Lỗi" not in h["json"]["title"]
               for h in hooks)
    hooks.clear()
    mails.clear()
    before = _marts(wh)
    assert before

    src = next(p for p in sorted((inbox / "one_stop" / "dossiers").glob("*.csv")) if "cp1258" not in p.name
               and "loi_font" not in p.name)
    n_bad, phones = _bad_export(src, inbox / "one_stop" / "dossiers" / "export_loi_han.csv")
    # a new export with a fifth of its statuses outside the list: staging quarantines them, the file is held
    n_code, n_rows = _status_outside_the_list(_clean_export(wh, inbox),
                                              inbox / "one_stop" / "dossiers" / "hoso_2025_11.csv")
    # a good file arrives the same night: it must still be staged and gated
    good = next((inbox / "dvc_portal" / "ratings").glob("*.csv"))
    (inbox / "dvc_portal" / "ratings" / "danhgia_them.csv").write_text(
        good.read_text(encoding="utf-8-sig").replace("DG", "DX"), encoding="utf-8")
    second = nightly(inbox=str(inbox), warehouse=str(wh), as_of=AS_OF, return_state=True)

    assert second.is_failed()
    assert "export_loi_han.csv" in second.message and "date_order:due_at>=received_at" in second.message
    assert _marts(wh) == before  # the previous marts stay as they were
    ledger = Ledger(f"sqlite:///{wh / '_ledger.sqlite'}")
    try:
        latest = {b["path"]: b for b in ledger.batches_of_run(ledger.recent_runs(1)[0]["run_id"])}
    finally:
        ledger.dispose()
    bad = latest["one_stop/dossiers/export_loi_han.csv"]
    assert bad["status"] == "gate_failed" and bad["rows_raw"] == n_bad
    # every row broke the date order: all set aside (raw = staged + quarantined), the count in plain words
    assert (bad["rows_staged"], bad["rows_quarantined"]) == (0, n_bad)
    assert f"file export_loi_han.csv: every row ({n_bad:,}) set aside: date_order:due_at>=received_at" in second.message
    codes = latest["one_stop/dossiers/hoso_2025_11.csv"]
    assert codes["status"] == "gate_failed" and (codes["rows_raw"], codes["rows_quarantined"]) == (n_rows, n_code)
    assert (f"file hoso_2025_11.csv: {n_code} of {n_rows} rows ({100 * n_code / n_rows:.1f}%) set aside: "
            f"unknown_code {n_code} (column Trạng thái, values 11, 12; lines 2, 7, 12, ...); above the 5% allowed "
            f"for dossiers: ask the unit to check the export") in second.message
    assert (wh / "_held" / "stg_one_stop__dossiers" / f"{bad['batch_id']}.parquet").exists()
    assert not (wh / "stg_one_stop__dossiers" / f"{bad['batch_id']}.parquet").exists()
    assert latest["dvc_portal/ratings/danhgia_them.csv"]["status"] == "passed"

    assert len(hooks) == 1 and len(mails) == 1  # one message per URL per run
    body = hooks[0]["json"]["message"]
    assert "[LỖI]" in body and "export_loi_han.csv" in body and "date_order:due_at>=received_at" in body
    assert "hoso_2025_11.csv" in body and "quarantined_share" in body
    mail = mails[0].content.decode("utf-8", "replace")
    assert "kstthc@example.org" in mails[0].rcpt_tos
    for phone in phones[:50]:  # no personal data in alerts
        assert phone not in body and phone not in mail


def test_a_mart_breaking_its_contract_is_not_published(prefect_harness, tmp_path, monkeypatch, webhook):
    """A targets file with a rate target of 1.5 makes mart_kpi__agency_period break its contract: none of the
    night's marts is published, the previous ones stay, the run fails and says why."""
    from flows.nightly import nightly

    hport, hooks = webhook
    inbox, wh = _night(tmp_path, monkeypatch, seed=12, scale=0.2, alerts=f"json://127.0.0.1:{hport}/dq")
    assert nightly(inbox=str(inbox), warehouse=str(wh), as_of=date(2025, 11, 30), return_state=True).is_completed()
    before = _marts(wh)
    hooks.clear()
    targets = tmp_path / "targets.csv"
    targets.write_text("year,agency_code,kpi_code,target\n2023,,on_time_rate,1.5\n", encoding="utf-8")
    monkeypatch.setenv("TTHC_TARGETS_PATH", str(targets))
    state = nightly(inbox=str(inbox), warehouse=str(wh), as_of=AS_OF, return_state=True)
    assert state.is_failed()
    assert "mart_kpi__agency_period" in state.message and "contract violated" in state.message
    assert _marts(wh) == before
    assert len(hooks) == 1 and "mart_kpi__agency_period" in hooks[0]["json"]["message"]


def test_an_operator_releases_a_held_batch_and_the_next_run_uses_it(prefect_harness, tmp_path, monkeypatch):
    """A new export (later Ngày cập nhật) where every 8th dossier has the applicant's name and phone pasted into
    Mã TTHC: those rows are set aside, 12% of the file holds it. Released, its good rows win in core and marts;
    the pasted rows stay quarantined and never reach core (before, release let them in)."""
    import duckdb
    from typer.testing import CliRunner

    from flows.nightly import nightly
    from tthc.cli import app

    inbox, wh = _night(tmp_path, monkeypatch, seed=13, scale=0.2)
    src = next(p for p in sorted((inbox / "one_stop" / "dossiers").glob("*.csv")) if "cp1258" not in p.name
               and "loi_font" not in p.name)

    pasted = set()

    def paste(i, r, col):
        r[col["Ngày cập nhật"]] = "30/12/2025 10:00:00"
        if i % 8 == 0:
            r[col["Mã TTHC"]] = f"{r[col['Chủ hồ sơ']]} {r[col['Số điện thoại']]}"
            pasted.add(r[col["Mã TTHC"]])

    rows = _rewrite_export(src, inbox / "one_stop" / "dossiers" / "export_dan_nham.csv", paste)
    failed = nightly(inbox=str(inbox), warehouse=str(wh), as_of=AS_OF, return_state=True)
    assert failed.is_failed() and "export_dan_nham.csv" in failed.message and "pattern:procedure_code" in failed.message
    before = _marts(wh)
    listed = CliRunner().invoke(app, ["release", "--warehouse", str(wh)])
    held = [p.stem for p in (wh / "_held" / "stg_one_stop__dossiers").glob("*.parquet")]
    assert len(held) == 1 and held[0] in listed.output
    assert CliRunner().invoke(app, ["release", held[0], "--warehouse", str(wh)]).exit_code != 0  # no reason
    res = CliRunner().invoke(app, ["release", held[0], "--warehouse", str(wh), "--reason", "checked with xã"])
    assert res.exit_code == 0, res.output
    assert (wh / "stg_one_stop__dossiers" / f"{held[0]}.parquet").exists()
    again = nightly(inbox=str(inbox), warehouse=str(wh), as_of=AS_OF, return_state=True)
    assert again.is_completed(), again.message
    assert _marts(wh) != before  # the released versions (later Ngày cập nhật) now win in core and marts
    ledger = Ledger(f"sqlite:///{wh / '_ledger.sqlite'}")
    try:
        row = next(b for b in ledger.recent_batches(100) if b["batch_id"] == held[0])
    finally:
        ledger.dispose()
    assert row["status"] == "passed" and "checked with xã" in row["error"]
    assert row["rows_raw"] == len(rows) == row["rows_staged"] + row["rows_quarantined"]
    con = duckdb.connect()
    core = {r[0] for r in con.execute(f"SELECT DISTINCT procedure_code FROM '{wh}/core_dossiers/*.parquet'").fetchall()}
    assert not core & pasted  # no name or phone reached core
    q = dict(con.execute(f"SELECT procedure_code, _rule FROM '{wh}/quarantine_one_stop__dossiers/{held[0]}.parquet'"
                         ).fetchall())
    assert pasted <= set(q) and "pattern:procedure_code" in q.values()  # they stay quarantined, raw text whole


def test_a_gate_that_crashes_holds_its_batch_and_the_next_run_goes_on(prefect_harness, tmp_path, monkeypatch):
    """When the checks themselves fail on a batch (a bug, a file DuckDB cannot read back), that batch is held like a
    critical failure, the night's other batches are built and the run fails naming it; the next run does not trip
    over it again (before, the batch stayed staged and ungated, and every later run crashed on it)."""
    import transforms.quality.gate as G
    from flows.nightly import nightly

    inbox, wh = _night(tmp_path, monkeypatch, seed=14, scale=0.1)
    real = G.check_batch

    def crashing(wh_, table, batch_id, **kw):
        if table == "stg_dvc_portal__ratings":
            raise RuntimeError("checks broke")
        return real(wh_, table, batch_id, **kw)

    monkeypatch.setattr(G, "check_batch", crashing)
    first = nightly(inbox=str(inbox), warehouse=str(wh), as_of=AS_OF, return_state=True)
    assert first.is_failed() and "checks broke" in first.message and "stg_dvc_portal__ratings" in first.message
    held = list((wh / "_held" / "stg_dvc_portal__ratings").glob("*.parquet"))
    assert len(held) == 1 and not list((wh / "stg_dvc_portal__ratings").glob("*.parquet"))
    assert (wh / "mart_kpi__agency_period" / "data.parquet").exists()  # the other batches went on
    ledger = Ledger(f"sqlite:///{wh / '_ledger.sqlite'}")
    try:
        assert ledger.batches_with_status(("staged",)) == []
        assert [b["batch_id"] for b in ledger.batches_with_status(("gate_failed",))] == [held[0].stem]
    finally:
        ledger.dispose()
    monkeypatch.setattr(G, "check_batch", real)
    assert nightly(inbox=str(inbox), warehouse=str(wh), as_of=AS_OF, return_state=True).is_completed()


def test_a_pull_sets_aside_its_bad_row_and_commits_the_window(prefect_harness, tmp_path, monkeypatch):
    """A pulled window with one name and phone in MaTTHC: that record is set aside, the other 199 pass, the
    watermark moves (before, the window was held and pulled again every night); the flow's outcome and the ledger
    count what the gate moved."""
    from flows.pull import pull
    from devkit.fakeportal.generate import AGENCIES, generate_dossiers
    from devkit.fakeportal.server import FakePortal

    records = generate_dossiers(200, seed=5)
    records[17]["MaTTHC"] = f"{records[17]['ChuHoSo']} {records[17]['SoDienThoai']}"
    agencies = tmp_path / "agencies.csv"
    agencies.write_text("agency_code,agency_name,level,parent_code,valid_from,valid_to\n"
                        + "".join(f"{a},Đơn vị {a},commune,,2023-01-01,\n" for a in AGENCIES), encoding="utf-8")
    wh = tmp_path / "wh"
    with FakePortal({"dossiers": records}, token="onestop") as one:
        for k, v in {"TTHC_ONE_STOP_URL": one.base_url, "TTHC_ONE_STOP_TOKEN": "onestop",
                     "TTHC_AGENCIES_PATH": str(agencies), "TTHC_PSEUDONYM_KEY": "k", "TTHC_AS_OF": "2025-12-31",
                     "TTHC_ALERT_URLS": ""}.items():
            monkeypatch.setenv(k, v)
        for k in ("TTHC_ONE_STOP_DB_URL", "TTHC_DVC_PORTAL_URL"):
            monkeypatch.delenv(k, raising=False)
        state = pull(warehouse=str(wh), return_state=True)
    assert state.is_completed(), state.message
    (out,) = state.result()["outcomes"]
    assert (out["status"], out["records"], out["rows_staged"], out["rows_quarantined"]) == ("passed", 200, 199, 1)
    ledger = Ledger(f"sqlite:///{wh / '_ledger.sqlite'}")
    try:
        (b,) = [b for b in ledger.recent_batches() if b["source"] == "one_stop"]
        assert (b["status"], b["rows_raw"], b["rows_staged"], b["rows_quarantined"]) == ("passed", 200, 199, 1)
        assert ledger.get_watermark("one_stop", "dossiers") is not None
    finally:
        ledger.dispose()
