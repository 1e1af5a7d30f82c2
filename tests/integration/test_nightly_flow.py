"""The nightly flow in-process (Prefect test harness) on generated inboxes.

- seed 3 with the undecodable CSV and a file in an unknown folder: raw rows per file = manifest, exactly the
  manifest's invalid rows quarantined, the undecodable and misplaced files `rejected`, the flow Failed while every
  other file is staged and the marts are built; then a second run over the same inbox (plus a renamed copy of a
  file) ingests nothing new and leaves every mart file byte-identical; inbox files never change.
- seed 3 clean, with the ledger on the machine's PostgreSQL (SQLite when PostgreSQL is unreachable): Completed,
  same per-file truths, balance holds in that ledger.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa

from pg import PG_ADMIN_URL, throwaway_database
from warehouse import store
from warehouse.ledger import Ledger

pytestmark = pytest.mark.integration

AS_OF = date(2025, 12, 31)
UNKNOWN_REL = "he_thong_khac/hoso/export_la.csv"
COPY_REL = "dvc_portal/payments/thanhtoan_2023_2024 (ban sao).csv"


def _snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    """sha256, size and mtime (ns) of every file under root."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[p.relative_to(root).as_posix()] = (hashlib.sha256(p.read_bytes()).hexdigest(), st.st_size,
                                                   st.st_mtime_ns)
    return out


def _table_files(wh: Path, prefixes: tuple[str, ...]) -> dict[str, str]:
    """Every file (dot files included) under tables with these prefixes -> sha256."""
    out = {}
    for d in sorted(wh.iterdir()):
        if d.is_dir() and d.name.startswith(prefixes):
            for p in sorted(d.rglob("*")):
                if p.is_file():
                    out[p.relative_to(wh).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _raw_rows_by_file(wh: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    con = duckdb.connect()
    for t in store.list_tables(wh):
        if t.startswith("raw_"):
            for f, n in con.execute(f"SELECT _source_file, count(*) FROM read_parquet('{store.table_glob(wh, t)}') "
                                    f"GROUP BY 1").fetchall():
                counts[f] = counts.get(f, 0) + n
    con.close()
    return counts


def _quarantined(wh: Path) -> set[tuple]:
    got = set()
    con = duckdb.connect()
    for t in store.list_tables(wh):
        if t.startswith("quarantine_"):
            got |= set(con.execute(f"SELECT _source_file, _source_row, _column "
                                   f"FROM read_parquet('{store.table_glob(wh, t)}')").fetchall())
    con.close()
    return got


def _ledger_batches(url: str) -> list[dict]:
    led = Ledger(url)
    try:
        return led.recent_batches(1000)
    finally:
        led.dispose()


def _run(inbox: Path, wh: Path, env: dict[str, str]):
    from flows.nightly import nightly

    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        return nightly(inbox=str(inbox), warehouse=str(wh), as_of=AS_OF, return_state=True)


@dataclass
class TwoRuns:
    inbox: Path
    wh: Path
    manifest: dict
    state1: object
    state2: object
    inbox_before: dict
    inbox_after: dict
    copy_before: tuple
    marts1: dict
    marts2: dict
    layers1: dict
    layers2: dict
    batches1: list[dict] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)


@pytest.fixture(scope="module")
def two_runs(prefect_harness, tmp_path_factory) -> TwoRuns:
    from devkit.sample import generate_inbox

    root = tmp_path_factory.mktemp("nightly")
    inbox, wh = root / "inbox", root / "wh"
    manifest = generate_inbox(inbox, seed=3, include_undecodable=True)
    unknown = inbox / UNKNOWN_REL
    unknown.parent.mkdir(parents=True)
    unknown.write_text("Mã hồ sơ,Trạng thái\nX-1,4\n", encoding="utf-8")
    env = {"TTHC_PSEUDONYM_KEY": "nightly-test-key"}
    before = _snapshot(inbox)
    state1 = _run(inbox, wh, env)
    url = f"sqlite:///{wh / '_ledger.sqlite'}"
    batches1 = _ledger_batches(url)
    marts1 = _table_files(wh, ("mart_", "core_"))
    layers1 = _table_files(wh, ("raw_", "stg_", "quarantine_"))
    shutil.copy2(inbox / "dvc_portal/payments/thanhtoan_2023_2024.csv", inbox / COPY_REL)
    copy_before = _snapshot(inbox)[COPY_REL]
    state2 = _run(inbox, wh, env)
    led = Ledger(url)
    runs = led.recent_runs(10)
    led.dispose()
    after = _snapshot(inbox)
    return TwoRuns(inbox, wh, manifest, state1, state2, before, after, copy_before, marts1,
                   _table_files(wh, ("mart_", "core_")), layers1, _table_files(wh, ("raw_", "stg_", "quarantine_")),
                   batches1, runs)


def _by_path(batches: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for b in batches:
        out.setdefault(b["path"], []).append(b)
    return out


def test_raw_rows_per_file_equal_manifest(two_runs):
    counts = _raw_rows_by_file(two_runs.wh)
    for f in two_runs.manifest["files"]:
        want = 0 if f.get("expect") == "reject" else f["data_rows"]
        assert counts.get(f["path"], 0) == want, f["path"]
    assert set(counts) <= {f["path"] for f in two_runs.manifest["files"]}


def test_exactly_the_manifest_invalid_rows_are_quarantined(two_runs):
    want = {(r["path"], r["data_row"], r["column"]) for r in two_runs.manifest["invalid_rows"]}
    assert want, "the generated inbox should carry invalid rows"
    assert _quarantined(two_runs.wh) == want


def test_undecodable_file_rejected_and_flow_failed(two_runs):
    bad = next(f["path"] for f in two_runs.manifest["files"] if f.get("expect") == "reject")
    (b,) = _by_path(two_runs.batches1)[bad]
    assert b["status"] == "rejected"
    assert re.search(r"encoding (could not|cannot) be determined", b["error"]), b["error"]
    assert bad.rsplit("/", 1)[1] in b["error"]
    assert two_runs.state1.is_failed()
    assert re.search(r"encoding (could not|cannot) be determined", two_runs.state1.message)
    assert not any(bad in k for k in two_runs.layers1)  # nothing of it in any table


def test_file_in_unknown_folder_is_rejected(two_runs):
    (b,) = _by_path(two_runs.batches1)[UNKNOWN_REL]
    assert b["status"] == "rejected"
    assert UNKNOWN_REL in b["error"] and "<source>/<entity>" in b["error"]
    assert UNKNOWN_REL in two_runs.state1.message


def test_every_other_file_staged_balanced_and_marts_built(two_runs):
    by_path = _by_path(two_runs.batches1)
    good = [f for f in two_runs.manifest["files"] if f.get("expect") != "reject"]
    for f in good:
        (b,) = by_path[f["path"]]
        assert b["status"] in ("staged", "passed"), (f["path"], b["status"], b["error"])
        assert b["rows_raw"] == f["data_rows"]
        assert b["rows_quarantined"] == f["invalid_rows"]
        assert b["rows_raw"] == b["rows_staged"] + b["rows_quarantined"]
        assert b["sha256"] == f["sha256"]
    assert len(two_runs.batches1) == len(good) + 2  # + the undecodable file + the misplaced one
    led = Ledger(f"sqlite:///{two_runs.wh / '_ledger.sqlite'}")
    try:
        led.check_balance()
    finally:
        led.dispose()
    marts = {k.split("/")[0] for k in two_runs.marts1 if k.startswith("mart_")}
    assert marts, "no mart was built although every other file was staged"
    for t in marts:
        assert store.table_files(two_runs.wh, t), t


def test_second_run_ingests_nothing_new(two_runs):
    run2, run1 = two_runs.runs[0], two_runs.runs[1]
    assert run1["status"] == "failed"
    summary = json.loads(run2["summary_json"])
    n_files = len(two_runs.manifest["files"]) + 2  # + misplaced file + renamed copy
    assert summary["files"] == n_files
    # the files rejected by the first run are not read again (nothing changed) and say so; the rest are known
    rejected1 = json.loads(run1["summary_json"])["rejected"]
    assert rejected1 >= 2 and summary["rejected_before"] == rejected1
    assert summary["duplicate"] == n_files - rejected1
    assert summary["staged"] == summary["rejected"] == summary["failed"] == summary["rows_raw"] == 0
    led = Ledger(f"sqlite:///{two_runs.wh / '_ledger.sqlite'}")
    try:
        # nothing read; the renamed copy is known by its SHA-256 and named once, with the file it copies
        (copy,) = led.batches_of_run(run2["run_id"])
        assert copy["path"] == COPY_REL and copy["status"] == "duplicate" and "same content as" in copy["error"]
        assert copy["rows_raw"] is None
    finally:
        led.dispose()
    assert two_runs.layers2 == two_runs.layers1  # no raw/staging/quarantine file added or changed
    assert not two_runs.state2.is_failed(), two_runs.state2.message


def test_second_run_leaves_every_mart_file_byte_identical(two_runs):
    assert two_runs.marts1
    assert two_runs.marts2 == two_runs.marts1


def test_inbox_files_never_change(two_runs):
    after = dict(two_runs.inbox_after)
    assert after.pop(COPY_REL) == two_runs.copy_before
    assert after == two_runs.inbox_before


def test_status_command_names_the_batches(two_runs):
    from typer.testing import CliRunner

    from tthc.cli import app
    from tthc.commands import pipeline

    old = pipeline.console._width
    pipeline.console._width = 400  # batch ids whole on one line
    try:
        res = CliRunner().invoke(app, ["status", "--warehouse", str(two_runs.wh), "--limit", "100"])
    finally:
        pipeline.console._width = old
    assert res.exit_code == 0, res.output
    for b in two_runs.batches1:
        assert b["batch_id"] in res.output
        assert b["path"] in res.output
    for r in two_runs.runs:
        assert r["run_id"] in res.output


# ------------------------------------------------------------------ clean inbox, ledger on PostgreSQL
@dataclass
class CleanRun:
    inbox: Path
    wh: Path
    manifest: dict
    state: object
    ledger_url: str
    pg_skip_reason: str | None
    batches: list[dict]


@pytest.fixture(scope="module")
def clean_run(prefect_harness, tmp_path_factory) -> CleanRun:
    from devkit.sample import generate_inbox

    root = tmp_path_factory.mktemp("nightly_clean")
    inbox, wh = root / "inbox", root / "wh"
    manifest = generate_inbox(inbox, seed=3, scale=0.3)
    with throwaway_database() as (pg_url, pg_reason):
        url = pg_url or f"sqlite:///{wh / '_ledger.sqlite'}"
        env = {"TTHC_PSEUDONYM_KEY": "nightly-clean-key"}
        if pg_url:
            env["TTHC_LEDGER_URL"] = pg_url
        state = _run(inbox, wh, env)
        batches = _ledger_batches(url)
        led = Ledger(url)
        try:
            led.check_balance()  # raises LedgerMismatch when a batch lost or invented rows
        finally:
            led.dispose()
        yield CleanRun(inbox, wh, manifest, state, url, pg_reason, batches)


def test_clean_inbox_completes_with_manifest_truths(clean_run):
    assert clean_run.state.is_completed(), clean_run.state.message
    counts = _raw_rows_by_file(clean_run.wh)
    assert counts == {f["path"]: f["data_rows"] for f in clean_run.manifest["files"]}
    assert _quarantined(clean_run.wh) == {(r["path"], r["data_row"], r["column"])
                                          for r in clean_run.manifest["invalid_rows"]}
    assert sorted(b["path"] for b in clean_run.batches) == sorted(f["path"] for f in clean_run.manifest["files"])
    assert {b["status"] for b in clean_run.batches} == {"passed"}


def test_ledger_on_postgresql(clean_run):
    if clean_run.pg_skip_reason:
        pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN_URL}: {clean_run.pg_skip_reason}")
    assert clean_run.ledger_url.startswith("postgresql")
    assert not (clean_run.wh / "_ledger.sqlite").exists()  # the URL was used, not the default file
    assert len(clean_run.batches) == len(clean_run.manifest["files"])
    eng = sa.create_engine(clean_run.ledger_url)
    try:
        with eng.connect() as c:
            runs = c.execute(sa.text("SELECT status, summary_json FROM runs")).all()
            n_dq = c.execute(sa.text("SELECT count(*) FROM dq_results")).scalar()
            # the data-quality mart is checked against its contract like the other marts, all rules passing
            dq_mart = c.execute(sa.text("SELECT check_name, success FROM dq_results "
                                        "WHERE table_name = 'mart_dq__agency_source_period'")).all()
    finally:
        eng.dispose()
    assert [r[0] for r in runs] == ["completed"]
    assert json.loads(runs[0][1])["staged"] == len(clean_run.manifest["files"])
    assert n_dq > 0  # the gate recorded its checks in the same ledger
    names = {r[0] for r in dq_mart}
    assert "identity:rows_received=rows_staged+rows_quarantined" in names and all(r[1] for r in dq_mart), dq_mart
