"""Ledgers outside the warehouse (tthc run-provinces --ledger-url): the {province} template, the database made on
the machine's PostgreSQL, the run lock, a warehouse's SQLite ledger moved in, and what an unpublished run took
forgotten. Databases are tthc_test_<random>_<name>, dropped at the end; the PostgreSQL tests skip (saying why)
only when the server cannot be reached."""

from __future__ import annotations

import os
import re
import socket
import sqlite3
from datetime import date, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from tests.cluster import free_port
from tests.pg import ledger_template
from warehouse import external_ledger, ledger_server, store
from warehouse.ledger import Ledger
from warehouse.ledger_server import LedgerBusy, LedgerConflict, LedgerUnavailable


@pytest.fixture(scope="module")
def template():
    """A ledger template on the machine's PostgreSQL whose databases are dropped after the module."""
    with ledger_template() as (template, why):
        if template is None:
            pytest.skip(why)
        yield template


def _url(template: str, name: str) -> str:
    url = ledger_server.province_urls(template, [name])[name]
    ledger_server.ensure_database(url)
    return url


def test_a_template_without_province_is_refused_in_one_sentence():
    with pytest.raises(ValueError) as e:
        ledger_server.province_urls("postgresql+psycopg://etl:s3cret@db:5432/tthc", ["ha_noi", "hue"])
    msg = str(e.value)
    assert "add {province}" in msg and "mix every province's batches" in msg
    assert "s3cret" not in msg and "etl:***@db" in msg
    assert "\n" not in msg


def test_folder_names_become_distinct_postgresql_names():
    t = "postgresql+psycopg://etl@db:5432/tthc_{province}"
    urls = ledger_server.province_urls(t, ["Hà Nội", "Đắk Lắk", "TP. Hồ Chí Minh", "song_bac", "Quảng-Trị 2"])
    assert {n: sa.engine.make_url(u).database for n, u in urls.items()} == {
        "Hà Nội": "tthc_ha_noi", "Đắk Lắk": "tthc_dak_lak", "TP. Hồ Chí Minh": "tthc_tp_ho_chi_minh",
        "song_bac": "tthc_song_bac", "Quảng-Trị 2": "tthc_quang_tri_2"}
    with pytest.raises(ValueError, match="'Ha Noi' and 'ha-noi' would share the ledger"):
        ledger_server.province_urls(t, ["Ha Noi", "ha-noi"])
    with pytest.raises(ValueError, match="no letter or digit"):
        ledger_server.province_urls(t, ["---"])
    with pytest.raises(ValueError, match="longer than PostgreSQL's 63 bytes"):
        ledger_server.province_urls(t, ["x" * 60])


def test_an_unreachable_server_is_one_sentence_without_the_password():
    url = f"postgresql+psycopg://etl:s3cret@127.0.0.1:{free_port()}/tthc_hue"  # nothing listens there
    for attempt in (lambda: ledger_server.ensure_database(url, timeout=3), lambda: ledger_server.run_lock(url).__enter__()):
        with pytest.raises(LedgerUnavailable) as e:
            attempt()
        msg = str(e.value)
        assert msg.startswith("Cannot reach the ledger database") and "etl:***@127.0.0.1" in msg
        assert "s3cret" not in msg and "\n" not in msg and "Traceback" not in msg


def test_a_missing_database_is_created_once(template):
    url = ledger_server.province_urls(template, ["Huế"])["Huế"]
    name = sa.engine.make_url(url).database
    assert name.endswith("_hue")
    assert ledger_server.ensure_database(url) is True
    assert ledger_server.ensure_database(url) is False  # there already: nothing done
    led = Ledger(url)
    try:
        led.start_run("r1", date(2025, 12, 31), "/inbox/hue")
        assert [r["run_id"] for r in led.recent_runs()] == ["r1"]
    finally:
        led.dispose()
    assert ledger_server.ensure_database(f"sqlite:///{'/nonexistent/x.sqlite'}") is False  # SQLite: its driver's work


def test_one_run_at_a_time_per_ledger(template):
    a, b = _url(template, "lock_a"), _url(template, "lock_b")
    assert ledger_server.lock_holder(a) is None
    with ledger_server.run_lock(a):
        me = f"tthc run pid {os.getpid()} on {socket.gethostname()}"
        assert ledger_server.lock_holder(a).startswith(me)  # who holds it, for the operator (and the provinces test)
        with pytest.raises(LedgerBusy, match=f"another run holds the ledger .*{re.escape(me)}"):
            with ledger_server.run_lock(a, wait_seconds=0.2, poll=0.1):
                pass
        with ledger_server.run_lock(b, wait_seconds=0):  # another province's ledger is another lock
            pass
    assert ledger_server.lock_holder(a) is None
    with ledger_server.run_lock(a, wait_seconds=0):  # released at the end of the block
        pass


def _sqlite_ledger(wh, batches: list[str], run: str = "r1") -> None:
    led = Ledger(f"sqlite:///{wh / '_ledger.sqlite'}")
    led.start_run(run, date(2025, 12, 31), "/inbox")
    for b in batches:
        led.begin_batch(b, run, sha256=b.ljust(64, "0"), path=f"one_stop/dossiers/{b}.csv", source="one_stop",
                        entity="dossiers")
        led.finish_batch(b, "passed", rows_raw=1, rows_staged=1, rows_quarantined=0)
        store.write_table(wh, "stg_one_stop__dossiers", pa.table({"x": [1]}), name=b)
        store.write_table(wh, "raw_one_stop__dossiers", pa.table({"x": [1]}), name=b)
    led.record_dq([{"run_id": run, "batch_id": b, "check_name": "rows", "success": True} for b in batches])
    led.finish_run(run, "completed")
    led.dispose()


def test_the_warehouses_sqlite_ledger_moves_in_once(template, tmp_path):
    wh = tmp_path / "wh"
    wh.mkdir()
    _sqlite_ledger(wh, ["b1", "b2"])
    kept = (wh / "_ledger.sqlite").read_bytes()
    url = _url(template, "adopt")
    notes = external_ledger.attach(wh, url)
    assert notes == [f"the warehouse's ledger _ledger.sqlite moved into {ledger_server.safe_url(url)} (2 batches)"]
    assert not (wh / "_ledger.sqlite").exists() and (wh / ".ledger.sqlite.moved").is_file()
    led = Ledger(url)
    try:
        assert led.batch_ids() == {"b1", "b2"} and [r["run_id"] for r in led.recent_runs()] == ["r1"]
        assert len(led.dq_history()) == 2
        led.record_dq([{"run_id": "r2", "check_name": "after the move", "success": True}])  # ids go on
        assert len(led.dq_history()) == 3
    finally:
        led.dispose()
    # the file comes back (an unpublished working copy pulled again): the database holds it all, it is set aside
    (wh / "_ledger.sqlite").write_bytes(kept)
    assert external_ledger.attach(wh, url) == [
        f"_ledger.sqlite set aside: {ledger_server.safe_url(url)} already held its runs and batches"]
    assert not (wh / "_ledger.sqlite").exists()
    # another history in the file: refused, nothing moved or copied
    other = tmp_path / "other"
    other.mkdir()
    _sqlite_ledger(other, ["b9"], run="r9")
    with pytest.raises(LedgerConflict, match="hold different histories"):
        external_ledger.attach(other, url)
    assert (other / "_ledger.sqlite").is_file()
    with sqlite3.connect(other / "_ledger.sqlite") as con:
        assert con.execute("SELECT batch_id FROM batches").fetchall() == [("b9",)]
    led = Ledger(url)
    assert "b9" not in led.batch_ids()
    led.dispose()


def test_a_ledger_naming_none_of_the_warehouses_batches_is_refused(template, tmp_path):
    wh = tmp_path / "wh"
    store.write_table(wh, "stg_one_stop__dossiers", pa.table({"x": [1]}), name="b1")
    with pytest.raises(LedgerConflict, match="names none of the 1 batches"):
        external_ledger.attach(wh, _url(template, "stranger"))
    assert store.table_files(wh, "stg_one_stop__dossiers")  # nothing removed
    assert external_ledger.attach(tmp_path / "empty", _url(template, "stranger")) == []  # a new warehouse


def test_what_an_unpublished_run_took_is_taken_again(template, tmp_path):
    """The local copy after a pull holds what was published; the ledger holds what every run took."""
    wh = tmp_path / "wh"
    url = _url(template, "forget")
    led = Ledger(url)

    def batch(bid, status, layers, raw=2, stg=1, quar=1, source="one_stop", kind="csv", first=None):
        led.begin_batch(bid, "r1", source=source, entity="dossiers", file_kind=kind)
        led.finish_batch(bid, status, rows_raw=raw, rows_staged=stg, rows_quarantined=quar, min_updated_at=first)
        for layer in layers:
            table = f"{layer}{source}__dossiers"
            if layer == "_held/stg_":
                held = wh / "_held" / f"stg_{source}__dossiers"
                held.mkdir(parents=True, exist_ok=True)
                pq.write_table(pa.table({"x": [1]}), held / f"{bid}.parquet")
            else:
                store.write_table(wh, table, pa.table({"x": [1]}), name=bid)

    try:
        batch("published", "passed", ["raw_", "stg_", "quarantine_"])
        batch("held", "gate_failed", ["raw_", "_held/stg_", "quarantine_"])
        batch("all_quarantined", "passed", ["raw_", "quarantine_"], stg=0, quar=2)
        batch("empty", "passed", [], raw=0, stg=0, quar=0)  # nothing to lose, nothing to publish
        batch("lost", "passed", [])  # the whole batch stayed in a dead working copy
        batch("half", "staged", ["raw_"])  # an interrupted publish sent its raw file only
        batch("pulled", "passed", [], source="national_sync", kind="api", first=datetime(2025, 12, 30, 8))
        batch("rejected", "rejected", [], raw=None, stg=None, quar=None)
        led.set_watermark("national_sync", "dossiers", datetime(2025, 12, 31, 23), "pulled")
        led.set_watermark("one_stop", "dossiers", datetime(2025, 12, 31, 22), "published")
        gone = external_ledger.forget_unpublished(wh, url)
        assert sorted(gone) == ["half", "lost", "pulled"]
        status = {b["batch_id"]: b["status"] for b in led.recent_batches(100)}
        assert status == {"published": "passed", "held": "gate_failed", "all_quarantined": "passed",
                          "empty": "passed", "lost": "failed", "half": "failed", "pulled": "failed",
                          "rejected": "rejected"}
        assert all("not published" in b["error"] for b in led.batches_with_status(("failed",)))
        assert not (wh / "raw_one_stop__dossiers" / "half.parquet").exists()  # its half is not published later
        assert (wh / "raw_one_stop__dossiers" / "published.parquet").exists()
        # the pull's window is read again from the first version the lost batch held; the other watermark stays
        assert led.get_watermark("national_sync", "dossiers") == datetime(2025, 12, 30, 8)
        assert led.get_watermark("one_stop", "dossiers") == datetime(2025, 12, 31, 22)
        assert external_ledger.forget_unpublished(wh, url) == []  # settled
    finally:
        led.dispose()
