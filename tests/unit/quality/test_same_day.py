"""A date without a time is that whole day: date_order rules compare by day when the later side is exactly
00:00:00. Same-day procedures (legal time 0 working days: due the day they are received) exported with the due
date as a date held 12 of 57 files; they are normal data in every format."""

from __future__ import annotations

import csv
import json
from datetime import date, datetime
from types import SimpleNamespace

import pytest

from devkit.synth import DOSSIERS, write_dossier_batch
from transforms.quality.gate import check_batch, gate_batch
from warehouse.ledger import Ledger

AS_OF = date(2025, 12, 31)
NO_GX = SimpleNamespace(dq_gx_sample_rows=0, freshness_lag_days=3)


def _rule(g, name):
    return next(r for r in g.results if r.name == name)


def test_a_due_date_without_time_is_that_whole_day(tmp_path):
    # received during the day (never at midnight), due that day given as a date; finished at midnight that day too
    same_day = {"received_at": "date_trunc('day', rec) + INTERVAL 8 HOUR + INTERVAL 57 MINUTE",
                "due_at": "date_trunc('day', rec)::TIMESTAMP",
                "finished_at": "date_trunc('day', rec)::TIMESTAMP", "returned_at": "NULL::TIMESTAMP"}
    b = write_dossier_batch(tmp_path, 1000, end=AS_OF, overrides=same_day)
    g = check_batch(tmp_path, DOSSIERS, b, settings=NO_GX, as_of=AS_OF)
    for name in ("date_order:due_at>=received_at", "date_order:finished_at>=received_at"):
        r = _rule(g, name)
        assert r.success and r.unexpected_count == 0 and r.element_count == 1000, r.message
    assert g.passed and g.rows == 1000 and not g.set_aside["moved"]


@pytest.mark.parametrize(("due", "bad"), [
    ("date_trunc('day', rec)::TIMESTAMP - INTERVAL 1 DAY", True),           # a date, the day before: still wrong
    ("date_trunc('day', rec) + INTERVAL 8 HOUR", True),                       # a time given is compared as given
    ("date_trunc('day', rec) + INTERVAL 8 HOUR + INTERVAL 57 MINUTE", False),  # equal is in order
    ("date_trunc('day', rec) + INTERVAL 1 SECOND", True),                     # one second past midnight is a time
])
def test_only_exact_midnight_means_the_whole_day(tmp_path, due, bad):
    b = write_dossier_batch(tmp_path, 200, end=AS_OF, raw=False, overrides={
        "received_at": "date_trunc('day', rec) + INTERVAL 8 HOUR + INTERVAL 57 MINUTE", "due_at": due})
    r = _rule(check_batch(tmp_path, DOSSIERS, b, settings=NO_GX, as_of=AS_OF), "date_order:due_at>=received_at")
    assert r.unexpected_count == (200 if bad else 0)


def _inbox(tmp_path, n: int = 60):
    """The same same-day dossiers in the three formats: a CSV with dd/mm/yyyy, an XLSX with date cells, a JSON
    lines national-sync export with yyyy-mm-dd. Received 08:57, due the same day, given without a time."""
    from openpyxl import Workbook

    d = tmp_path / "inbox" / "one_stop" / "dossiers"
    d.mkdir(parents=True)
    head = ["Mã hồ sơ", "Mã TTHC", "Mã đơn vị", "Trạng thái", "Ngày tiếp nhận", "Ngày hẹn trả", "Ngày cập nhật"]
    days = [date(2025, 11, 3 + k % 20) for k in range(n)]
    with open(d / "hoso_cungngay.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(head)
        for k, day in enumerate(days):
            w.writerow([f"H19.26293-{day:%y%m%d}-{k:04d}", "1.001193", "H19.26293", "4",
                        f"{day:%d/%m/%Y} 08:57:00", f"{day:%d/%m/%Y}", f"{day:%d/%m/%Y} 10:00:00"])
    wb = Workbook()
    ws = wb.active
    ws.append(head)
    for k, day in enumerate(days):
        ws.append([f"H19.26293-{day:%y%m%d}-{k + 1000:04d}", "1.001193", "H19.26293", 4,
                   datetime.combine(day, datetime.min.time()).replace(hour=8, minute=57), day,
                   datetime.combine(day, datetime.min.time()).replace(hour=10)])
        ws.cell(ws.max_row, 6).number_format = "dd/mm/yyyy"
    wb.save(d / "hoso_cungngay.xlsx")
    with open(d / "dongbo_cungngay.jsonl", "w", encoding="utf-8") as fh:
        for k, day in enumerate(days):
            fh.write(json.dumps({"MaHoSo": f"H19.26293-{day:%y%m%d}-{k + 2000:04d}", "MaTTHC": "1.001193",
                                 "MaDonVi": "H19.26293", "TrangThaiHoSo": 4,
                                 "NgayTiepNhan": f"{day:%Y-%m-%d} 08:57:00", "NgayHenTra": f"{day:%Y-%m-%d}",
                                 "NgayCapNhat": f"{day:%Y-%m-%d} 10:00:00"}, ensure_ascii=False) + "\n")
    with open(d / "dongbo_cungngay_gon.jsonl", "w", encoding="utf-8") as fh:  # the sync's compact form
        for k, day in enumerate(days):
            fh.write(json.dumps({"MaHoSo": f"H19.26293-{day:%y%m%d}-{k + 3000:04d}", "MaTTHC": "1.001193",
                                 "MaDonVi": "H19.26293", "TrangThaiHoSo": 4, "NgayTiepNhan": f"{day:%Y%m%d}085700",
                                 "NgayHenTra": f"{day:%Y%m%d}", "NgayCapNhat": f"{day:%Y%m%d}100000"}) + "\n")
    return tmp_path / "inbox"


def test_same_day_procedures_pass_in_every_format(tmp_path):
    from transforms.ingest import discover, ingest_file

    inbox, wh = _inbox(tmp_path), tmp_path / "wh"
    wh.mkdir()
    led = Ledger(f"sqlite:///{wh / '_ledger.sqlite'}")
    led.start_run("r1", AS_OF, str(inbox))
    seen = {}
    for f in discover(inbox):
        out = ingest_file(f, warehouse=wh, ledger=led, run_id="r1", agency_codes=["H19", "H19.26293"],
                          pseudonym_key=b"k")
        assert out.status == "staged" and out.rows_quarantined == 0, (f.rel, out.error, out.rules)
        g = gate_batch(wh, "one_stop", "dossiers", out.batch_id, ledger=led, run_id="r1", settings=NO_GX,
                       as_of=AS_OF)
        r = _rule(g, "date_order:due_at>=received_at")
        seen[f.rel.rsplit("/", 1)[-1]] = (g.passed, r.unexpected_count, r.element_count, g.set_aside["moved"])
    led.dispose()
    assert seen == {"hoso_cungngay.csv": (True, 0, 60, 0), "hoso_cungngay.xlsx": (True, 0, 60, 0),
                    "dongbo_cungngay.jsonl": (True, 0, 60, 0), "dongbo_cungngay_gon.jsonl": (True, 0, 60, 0)}
