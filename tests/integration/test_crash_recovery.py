"""Killing `tthc run` mid-ingest leaves every table readable, and the next run rolls the broken batch back,
ingests its file again and completes with the ledger balanced.

The real CLI runs as a child process (its own session, so the kill reaches everything it started) against the
session's Prefect test API. The ledger (SQLite, WAL) is polled read-only; the child is killed with SIGKILL the
moment it shows at least one staged batch and one running batch. If the run slips past that window, the attempt
is repeated on a bigger inbox with smaller read chunks.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from warehouse import store
from warehouse.ledger import Ledger

pytestmark = pytest.mark.integration

KEY = "crash-test-key"
AS_OF = date(2025, 12, 31)
ATTEMPTS = [(1.0, 500_000), (3.0, 2_000), (5.0, 500)]  # (inbox scale, TTHC_BATCH_ROWS)
CHILD_DEADLINE_S = 300
# the installed console script (`python -m tthc.cli` cannot find the commands, see tests/unit/cli/test_cli.py)
TTHC = str(Path(sys.executable).with_name("tthc"))  # a safety net only, never an assertion on speed


def _ledger_counts(db: Path) -> dict[str, int]:
    if not db.exists():
        return {}
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return dict(con.execute("SELECT status, count(*) FROM batches GROUP BY status").fetchall())
        finally:
            con.close()
    except sqlite3.Error:  # tables not created yet, or the WAL index is being set up
        return {}


@dataclass
class Crash:
    inbox: Path
    wh: Path
    manifest: dict
    crashed: list[dict]  # the batches left running by the killed process
    staged_before: list[dict]
    unreadable: list[str]
    parquet_after_kill: int
    state: object
    attempts: int

    @contextmanager
    def ledger(self) -> Iterator[Ledger]:
        led = Ledger(f"sqlite:///{self.wh / '_ledger.sqlite'}")
        try:
            yield led
        finally:
            led.dispose()


def _kill_mid_ingest(inbox: Path, wh: Path, env: dict) -> bool:
    """Start `tthc run`; SIGKILL its process group once a batch is staged and another is running.
    False when the run ended before that moment came."""
    log = open(wh.parent / f"child_{wh.name}.log", "wb")
    proc = subprocess.Popen([TTHC, "run", "--inbox", str(inbox), "--warehouse",
                             str(wh), "--as-of", AS_OF.isoformat()], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    db = wh / "_ledger.sqlite"
    deadline = time.monotonic() + CHILD_DEADLINE_S
    try:
        while proc.poll() is None:
            c = _ledger_counts(db)
            if c.get("running", 0) >= 1 and c.get("staged", 0) + c.get("passed", 0) >= 1:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
            if time.monotonic() > deadline:
                break
            time.sleep(0.005)
        return False
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def crash(prefect_harness, tmp_path_factory) -> Crash:
    from prefect.settings import PREFECT_API_URL

    from flows.nightly import nightly
    from devkit.sample import generate_inbox

    api_url = PREFECT_API_URL.value()
    assert api_url, "the Prefect test harness gives an API URL"
    root = tmp_path_factory.mktemp("crash")
    for attempt, (scale, batch_rows) in enumerate(ATTEMPTS, start=1):
        inbox, wh = root / f"inbox{attempt}", root / f"wh{attempt}"
        manifest = generate_inbox(inbox, seed=11, scale=scale)
        wh.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TTHC_")}
        env.update({"TTHC_PSEUDONYM_KEY": KEY, "TTHC_BATCH_ROWS": str(batch_rows), "PREFECT_API_URL": api_url,
                    "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "GX_ANALYTICS_ENABLED": "false",
                    "PREFECT_LOGGING_LEVEL": "WARNING", "COLUMNS": "200"})
        if _kill_mid_ingest(inbox, wh, env):
            break
    else:
        pytest.fail(f"the child run never showed a staged and a running batch at once in {len(ATTEMPTS)} attempts")
    led = Ledger(f"sqlite:///{wh / '_ledger.sqlite'}")
    crashed = [b for b in led.recent_batches(1000) if b["status"] == "running"]
    staged_before = [b for b in led.recent_batches(1000) if b["status"] == "staged"]
    led.dispose()
    # every published Parquet file (names not starting with '.') must be readable right after the kill
    unreadable, n = [], 0
    for p in wh.rglob("*.parquet"):
        if p.name.startswith("."):
            continue
        n += 1
        try:
            pq.read_table(p)
        except Exception as exc:  # noqa: BLE001 - the test reports which file and why
            unreadable.append(f"{p.relative_to(wh)}: {exc}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TTHC_PSEUDONYM_KEY", KEY)
        state = nightly(inbox=str(inbox), warehouse=str(wh), as_of=AS_OF, return_state=True)
    return Crash(inbox, wh, manifest, crashed, staged_before, unreadable, n, state, attempt)


def test_kill_landed_mid_ingest(crash):
    assert crash.crashed, "no batch was running when the process was killed"
    assert crash.staged_before


def test_every_table_readable_after_the_kill(crash):
    assert crash.parquet_after_kill > 0
    assert crash.unreadable == []


def test_next_run_completes_and_balances(crash):
    assert crash.state.is_completed(), crash.state.message
    with crash.ledger() as led:
        led.check_balance()
        assert led.crashed_batches() == []


def test_crashed_batch_failed_with_interruption_message_and_file_reingested(crash):
    with crash.ledger() as led:
        batches = led.recent_batches(1000)
        run = led.recent_runs(1)[0]
    by_id = {b["batch_id"]: b for b in batches}
    for c in crash.crashed:
        b = by_id[c["batch_id"]]
        assert b["status"] == "failed"
        assert "interrupted" in b["error"]
        # its input went again through the whole path in the recovery run
        # (found by path and size: a batch killed while its file was still being hashed has no sha256 yet)
        redo = [x for x in batches if (x["path"], x["size_bytes"]) == (c["path"], c["size_bytes"])
                and x["batch_id"] != c["batch_id"]]
        assert len(redo) == 1, redo
        assert redo[0]["run_id"] == run["run_id"] and redo[0]["status"] == "passed"
        assert redo[0]["path"] == c["path"]
        # nothing of the broken batch is left in any table
        assert not list(crash.wh.rglob(f"{c['batch_id']}.parquet"))
    # files staged before the kill are not ingested twice
    for s in crash.staged_before:
        assert by_id[s["batch_id"]]["status"] in ("staged", "passed")
        assert [x["batch_id"] for x in batches if x["sha256"] == s["sha256"] and x["status"] != "failed"] == [
            s["batch_id"]]


def test_tables_hold_each_file_exactly_once(crash):
    con = duckdb.connect()
    counts: dict[str, int] = {}
    for t in store.list_tables(crash.wh):
        if t.startswith("raw_"):
            for f, n in con.execute(f"SELECT _source_file, count(*) FROM read_parquet('{store.table_glob(crash.wh, t)}') "
                                    f"GROUP BY 1").fetchall():
                counts[f] = counts.get(f, 0) + n
    con.close()
    assert counts == {f["path"]: f["data_rows"] for f in crash.manifest["files"]}


def test_no_temp_files_remain(crash):
    leftovers = [p.relative_to(crash.wh).as_posix() for p in crash.wh.rglob("*")
                 if p.is_file() and (p.name.endswith(".tmp") or (p.name.startswith(".") and p.suffix == ".parquet"))]
    assert leftovers == []


def test_recovery_run_reports_the_rollback(crash):
    with crash.ledger() as led:
        runs = led.recent_runs(5)
    assert runs[0]["status"] == "completed"
    summary = json.loads(runs[0]["summary_json"])
    n_files = len(crash.manifest["files"])
    assert summary["staged"] == n_files - len(crash.staged_before)
    assert summary["duplicate"] == len(crash.staged_before)


def test_interrupted_run_is_not_left_running(crash):
    with crash.ledger() as led:
        runs = led.recent_runs(5)
    assert len(runs) == 2
    assert runs[1]["status"] == "failed", runs[1]


def test_batches_staged_before_the_kill_are_gated_by_the_next_run(crash):
    with crash.ledger() as led:
        left = [b["path"] for b in led.batches_with_status(("staged",))]
    assert crash.staged_before
    assert left == []
