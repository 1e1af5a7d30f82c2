"""The ledger API on SQLite and on the machine's PostgreSQL (a throwaway database per test module)."""

from __future__ import annotations

from datetime import date, datetime

import pytest
import sqlalchemy as sa

from pg import PG_ADMIN_URL, throwaway_database
from warehouse.ledger import DONE_STATUSES, Ledger, LedgerMismatch

@pytest.fixture(scope="module")
def pg_database():
    """A fresh database tthc_test_<random> on 127.0.0.1:5432, dropped afterwards."""
    with throwaway_database() as (url, reason):
        if url is None:
            pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN_URL}: {reason}")
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / '_ledger.sqlite'}"
        led = Ledger(url)
        yield led
        led.dispose()
        return
    url = request.getfixturevalue("pg_database")
    led = Ledger(url)
    # each test starts empty: the database is shared by the module's tests
    with led.engine.begin() as c:
        for t in ("runs", "files", "batches", "watermarks", "dq_results"):
            c.execute(sa.text(f"DELETE FROM {t}"))
    yield led
    led.dispose()


def _batch(led: Ledger, bid: str, run: str, status: str | None = None, **counts) -> None:
    led.begin_batch(bid, run, sha256=("s" + bid).ljust(64, "0"), path=f"one_stop/dossiers/{bid}.csv",
                    size_bytes=10, source="one_stop", entity="dossiers", file_kind="csv")
    if status:
        led.finish_batch(bid, status, **counts)


def test_backend_is_the_one_asked_for(ledger, request):
    assert ledger.engine.dialect.name == request.node.callspec.params["ledger"]
    assert {"runs", "files", "batches", "watermarks", "dq_results"} <= set(sa.inspect(ledger.engine).get_table_names())


def test_runs_start_and_finish(ledger):
    ledger.start_run("r1", date(2025, 12, 31), "/inbox", flow_run_id="f-1")
    ledger.start_run("r2", None, None)
    ledger.finish_run("r1", "completed", {"staged": 3, "when": date(2025, 1, 2), "nested": {"a": 1}})
    runs = {r["run_id"]: r for r in ledger.recent_runs()}
    assert set(runs) == {"r1", "r2"}
    assert runs["r1"]["status"] == "completed" and runs["r1"]["as_of"] == date(2025, 12, 31)
    assert runs["r1"]["finished_at"] is not None and runs["r1"]["finished_at"] >= runs["r1"]["started_at"]
    assert '"staged": 3' in runs["r1"]["summary_json"] and "2025-01-02" in runs["r1"]["summary_json"]
    assert runs["r2"]["status"] == "running" and runs["r2"]["finished_at"] is None
    assert len(ledger.recent_runs(1)) == 1


def test_batches_lifecycle_and_duplicate_lookup(ledger):
    sha = "a" * 64
    assert ledger.ingested_batch_for(sha) is None
    ledger.record_file(sha, 100, "one_stop/dossiers/x.csv", "one_stop", "dossiers", "csv")
    ledger.record_file(sha, 100, "one_stop/dossiers/copy_of_x.csv", "one_stop", "dossiers", "csv")  # no error
    with ledger.engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*), min(first_path) FROM files")).one() == (1, "one_stop/dossiers/x.csv")
    ledger.begin_batch("b1", "r1", sha256=sha, path="one_stop/dossiers/x.csv", size_bytes=100)
    assert ledger.ingested_batch_for(sha) is None  # running is not done: a crash must redo it
    ledger.update_batch("b1", format="flat_export", encoding="utf-8-sig", unknown_columns=["Ghi chú", "X"])
    ledger.finish_batch("b1", "staged", rows_raw=10, rows_staged=8, rows_quarantined=2,
                        max_updated_at=datetime(2025, 3, 1, 8, 30))
    assert ledger.ingested_batch_for(sha) == "b1"
    (b,) = ledger.batches_of_run("r1")
    assert b["status"] == "staged" and b["encoding"] == "utf-8-sig" and b["format"] == "flat_export"
    assert b["unknown_columns"] == '["Ghi chú", "X"]'
    assert b["max_updated_at"] == datetime(2025, 3, 1, 8, 30)
    assert b["finished_at"] >= b["started_at"]
    ledger.check_balance()
    assert [r["batch_id"] for r in ledger.batches_with_status(("staged",))] == ["b1"]


@pytest.mark.parametrize("status,counts_as_done", [("passed", True), ("gate_failed", True), ("rejected", False),
                                                   ("failed", False), ("running", False)])
def test_which_statuses_make_a_file_a_duplicate(ledger, status, counts_as_done):
    _batch(ledger, "b1", "r1", status if status != "running" else None)
    assert (ledger.ingested_batch_for(("sb1").ljust(64, "0")) == "b1") is counts_as_done
    # a rejected content is not ingested: it is found as a rejection (read again once the reading rules change)
    rej = ledger.rejection_for(sha256=("sb1").ljust(64, "0"), where=("one_stop", "dossiers", "csv"))
    assert (rej is not None and rej["batch_id"] == "b1") is (status == "rejected")
    # the same bytes in another place (moved to the right folder) are not that rejection
    assert ledger.rejection_for(sha256=("sb1").ljust(64, "0"), where=("dvc_portal", "ratings", "csv")) is None


def test_check_balance_names_every_wrong_batch(ledger):
    _batch(ledger, "bgood", "r1", "staged", rows_raw=10, rows_staged=7, rows_quarantined=3)
    _batch(ledger, "blost", "r1", "passed", rows_raw=10, rows_staged=7, rows_quarantined=2)
    _batch(ledger, "binvented", "r2", "staged", rows_raw=5, rows_staged=6, rows_quarantined=0)
    _batch(ledger, "bfailed", "r2", "failed", rows_raw=99, rows_staged=0, rows_quarantined=0)  # not checked
    with pytest.raises(LedgerMismatch) as e:
        ledger.check_balance()
    msg = str(e.value)
    assert "blost" in msg and "binvented" in msg and "bgood" not in msg and "bfailed" not in msg
    assert "raw 10 != staged 7 + quarantined 2" in msg
    assert "one_stop/dossiers/blost.csv" in msg  # names the file
    with pytest.raises(LedgerMismatch, match="blost"):
        ledger.check_balance("r1")
    with pytest.raises(LedgerMismatch) as e2:
        ledger.check_balance("r2")
    assert "blost" not in str(e2.value)
    ledger.check_balance("r-other")  # a run without batches balances


def test_ledger_mismatch_fails_loudly():
    assert issubclass(LedgerMismatch, AssertionError)
    assert set(DONE_STATUSES) == {"staged", "passed", "gate_failed"}


def test_crashed_batches_are_the_running_ones_and_mark_crashed(ledger):
    _batch(ledger, "bdone", "r1", "staged", rows_raw=1, rows_staged=1, rows_quarantined=0)
    _batch(ledger, "bhalf1", "r1")
    _batch(ledger, "bhalf2", "r1")
    assert sorted(ledger.crashed_batches()) == ["bhalf1", "bhalf2"]
    ledger.mark_crashed([])  # nothing to do
    ledger.mark_crashed(["bhalf1", "bhalf2"])
    assert ledger.crashed_batches() == []
    rows = {b["batch_id"]: b for b in ledger.batches_of_run("r1")}
    for b in ("bhalf1", "bhalf2"):
        assert rows[b]["status"] == "failed"
        assert "interrupted" in rows[b]["error"] and rows[b]["finished_at"] is not None
    assert rows["bdone"]["status"] == "staged" and rows["bdone"]["error"] is None


def test_recent_batches_newest_first_with_limit(ledger):
    for i in range(5):
        _batch(ledger, f"b{i}", "r1", "staged", rows_raw=0, rows_staged=0, rows_quarantined=0)
        ledger.update_batch(f"b{i}", started_at=datetime(2025, 1, 1 + i))
    assert [b["batch_id"] for b in ledger.recent_batches(3)] == ["b4", "b3", "b2"]


def test_watermarks_insert_then_update(ledger):
    assert ledger.get_watermark("one_stop", "dossiers") is None
    ledger.set_watermark("one_stop", "dossiers", datetime(2025, 1, 1, 10, 0), "b1")
    ledger.set_watermark("dvc_portal", "payments", datetime(2024, 6, 1), None)
    ledger.set_watermark("one_stop", "dossiers", datetime(2025, 2, 1, 11, 30), "b2")
    assert ledger.get_watermark("one_stop", "dossiers") == datetime(2025, 2, 1, 11, 30)
    assert ledger.get_watermark("dvc_portal", "payments") == datetime(2024, 6, 1)
    with ledger.engine.connect() as c:
        rows = c.execute(sa.text("SELECT source, entity, batch_id FROM watermarks ORDER BY source")).all()
    assert [tuple(r) for r in rows] == [("dvc_portal", "payments", None), ("one_stop", "dossiers", "b2")]


def _dq(**kw) -> dict:
    row = {"run_id": "r1", "batch_id": "b1", "table_name": "stg_one_stop__dossiers", "source": "one_stop",
           "entity": "dossiers", "agency_code": None, "check_name": "schema", "expectation_type": None,
           "severity": "critical", "success": True, "element_count": 100, "unexpected_count": 0,
           "unexpected_percent": 0.0, "examples_json": None, "observed_json": None}
    row.update(kw)
    return row


def test_record_dq_and_dq_history_filters(ledger):
    ledger.record_dq([])
    ledger.record_dq([
        _dq(agency_code="H31.1", check_name="due_after_received", severity="warning", success=False,
            unexpected_count=3, unexpected_percent=3.0, examples_json=[{"dossier_id": "X-1"}],
            observed_json={"max": 2}),
        _dq(agency_code="H31.2", examples_json="[]"),
    ])
    ledger.record_dq([_dq(run_id="r2", batch_id="b9", table_name="stg_dvc_portal__ratings", source="dvc_portal",
                          entity="ratings", checked_at=datetime(2024, 1, 1))])
    assert len(ledger.dq_history()) == 3
    one = ledger.dq_history(agency_code="H31.1")
    assert len(one) == 1 and one[0]["success"] is False and one[0]["unexpected_count"] == 3
    assert one[0]["examples_json"] == '[{"dossier_id": "X-1"}]' and one[0]["observed_json"] == '{"max": 2}'
    assert one[0]["checked_at"] is not None
    assert ledger.dq_history(agency_code="H31.2")[0]["examples_json"] == "[]"  # text is stored as given
    assert {r["check_name"] for r in ledger.dq_history(source="one_stop", entity="dossiers")} == {
        "due_after_received", "schema"}
    assert [r["batch_id"] for r in ledger.dq_history(run_id="r2")] == ["b9"]
    assert ledger.dq_history(run_id="r2")[0]["checked_at"] == datetime(2024, 1, 1)
    assert [r["batch_id"] for r in ledger.dq_history(limit=1)] == ["b9"]  # newest first
    assert ledger.dq_history(entity="nothing") == []


def test_record_dq_accepts_rows_with_different_optional_keys(ledger):
    ledger.record_dq([_dq(agency_code="H31.1", unexpected_percent=1.5),
                      {"run_id": "r1", "batch_id": "b2", "check_name": "schema", "success": True}])
    assert len(ledger.dq_history(run_id="r1")) == 2


def test_a_second_ledger_object_sees_the_same_data(ledger):
    """Tables are created once; a new Ledger on the same URL (another task, the CLI) reads what was written."""
    _batch(ledger, "b1", "r1", "staged", rows_raw=2, rows_staged=2, rows_quarantined=0)
    other = Ledger(ledger.url)
    try:
        assert [b["batch_id"] for b in other.recent_batches()] == ["b1"]
    finally:
        other.dispose()
