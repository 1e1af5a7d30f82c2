"""The gate's verdict as both flows take it (``transforms.quality.settle``), without Prefect: a clean batch passes and
stays staged; a batch failing a critical check is held out of core and marts with the gate's sentence in the ledger;
a batch whose every row was set aside is held too; a pull's batch is held but its status left to the pull.
Synthetic staged batches (devkit.synth) in a temporary warehouse with a real SQLite ledger; ~2 s in all."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

import pytest

from devkit.synth import DOSSIERS, write_dossier_batch
from transforms.ingest import FileOutcome
from transforms.quality import settle
from transforms.quality.model import CheckResult, GateResult
from warehouse.ledger import Ledger

AS_OF = date(2025, 12, 31)
NO_GX = SimpleNamespace(dq_gx_sample_rows=0, freshness_lag_days=3)  # the DuckDB checks only: no GX checkpoint


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(f"sqlite:///{tmp_path / '_ledger.sqlite'}")
    led.start_run("r1", AS_OF, "inbox")
    yield led
    led.dispose()


def _staged(wh, ledger, rows: int, **kw) -> str:
    """A staged batch as ingest leaves it: its files in the warehouse, its ledger row 'staged'."""
    bid = write_dossier_batch(wh, rows, end=AS_OF, **kw)
    ledger.begin_batch(bid, "r1", path="one_stop/dossiers/export.csv", source="one_stop", entity="dossiers")
    ledger.finish_batch(bid, "staged", rows_raw=rows, rows_staged=rows, rows_quarantined=0)
    return bid


def _batch(ledger, bid: str) -> dict:
    return next(b for b in ledger.batches_of_run("r1") if b["batch_id"] == bid)


def _where(wh, bid: str) -> tuple[bool, bool]:
    """(still staged, held) for the batch's staged file."""
    return (wh / DOSSIERS / f"{bid}.parquet").exists(), (wh / "_held" / DOSSIERS / f"{bid}.parquet").exists()


def test_a_clean_batch_passes_and_stays_staged(tmp_path, ledger):
    bid = _staged(tmp_path, ledger, 300)
    g = settle.settle_batch(tmp_path, "one_stop", "dossiers", bid, ledger=ledger, run_id="r1", settings=NO_GX,
                            as_of=AS_OF)
    assert g.passed and _where(tmp_path, bid) == (True, False)
    row = _batch(ledger, bid)
    assert row["status"] == settle.PASSED and row["error"] is None and row["rows_staged"] == 300
    assert settle.passed_batches([g]) == [("one_stop", "dossiers", bid)]


def test_a_critical_failure_holds_the_batch_and_the_ledger_says_why(tmp_path, ledger):
    # finished before received in every 10th row: those 100 rows are set aside, 10% of the file holds it
    bid = _staged(tmp_path, ledger, 1000,
                  overrides={"finished_at": "CASE WHEN i % 10 = 0 THEN rec - INTERVAL 2 DAY END"})
    g = settle.settle_batch(tmp_path, "one_stop", "dossiers", bid, ledger=ledger, run_id="r1", settings=NO_GX,
                            as_of=AS_OF)
    assert not g.passed and [c.name for c in g.criticals] == ["quarantined_share"]
    assert _where(tmp_path, bid) == (False, True)
    row = _batch(ledger, bid)
    assert row["status"] == settle.HELD and row["error"] == g.summary_line()
    assert (row["rows_staged"], row["rows_quarantined"]) == (900, 100)
    assert settle.passed_batches([g]) == []
    # what the run reports for that file is what the ledger says
    out = FileOutcome(rel="one_stop/dossiers/export.csv", status="staged", batch_id=bid, rows_raw=1000,
                      rows_staged=1000)
    settle.counts_after_gate(out, g)
    assert (out.rows_staged, out.rows_quarantined) == (900, 100)


def test_a_batch_whose_every_row_is_set_aside_is_held(tmp_path, ledger):
    bid = _staged(tmp_path, ledger, 50, overrides={"status": "11::BIGINT"})  # no row has a status of the list
    g = settle.settle_batch(tmp_path, "one_stop", "dossiers", bid, ledger=ledger, run_id="r1", settings=NO_GX,
                            as_of=AS_OF)
    every = [c for c in g.criticals if c.name == "quarantined_share"]
    assert not g.passed and every and every[0].observed["every_row"]
    assert "every row (50) set aside" in g.summary_line()
    assert _where(tmp_path, bid) == (False, True)
    row = _batch(ledger, bid)
    assert (row["status"], row["rows_staged"], row["rows_quarantined"]) == (settle.HELD, 0, 50)


def test_a_pulled_batch_is_held_but_its_status_is_left_to_the_pull(tmp_path, ledger):
    """``finish=False``: pull_to_warehouse records passed/gate_failed itself and keeps the watermark."""
    bid = _staged(tmp_path, ledger, 50, overrides={"status": "11::BIGINT"})
    g = settle.settle_batch(tmp_path, "one_stop", "dossiers", bid, ledger=ledger, run_id="r1", settings=NO_GX,
                            as_of=AS_OF, finish=False)
    assert not g.passed and _where(tmp_path, bid) == (False, True)
    assert _batch(ledger, bid)["status"] == "staged"


def test_passed_batches_name_source_entity_and_batch_of_the_passed_only():
    def result(table, bid, ok):
        return GateResult(table, bid, f"{bid}.csv", 1, [CheckResult("row_count", "critical", ok)])

    gated = [result("stg_one_stop__dossiers", "b1", True), result("stg_dvc_portal__payments", "b2", False),
             result("stg_dvc_portal__feedback", "b3", True)]
    assert settle.passed_batches(gated) == [("one_stop", "dossiers", "b1"), ("dvc_portal", "feedback", "b3")]
    out = FileOutcome(rel="x.csv", status="staged", batch_id="b1", rows_staged=5)
    settle.counts_after_gate(out, gated[0])  # nothing moved: the counts stay as staging left them
    settle.counts_after_gate(out, None)
    assert (out.rows_staged, out.rows_quarantined) == (5, 0)
