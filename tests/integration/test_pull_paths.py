"""Pulled records take the file path: the fake portal, SQLite and PostgreSQL give the same staged rows as the
same dossiers dropped in the inbox; watermarks commit only after staging (and the gate); crashes re-pull."""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa

from devkit.fakeportal.generate import AGENCIES, generate_dossiers, touch
from devkit.fakeportal.replica import create_replica
from devkit.fakeportal.server import FakePortal, Faults
from transforms import ingest
from transforms.pull.http import RetryPolicy
from transforms.pull.run import PullSpec, backfill_window, configured_pulls, pull_to_warehouse
from transforms.pull.sql import OneStopSqlSettings
from transforms.pull.window import parse_timestamp
from warehouse.ledger import Ledger

KEY = b"pull-test-key"
PG_URL = os.environ.get("TTHC_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
LINEAGE = ("_batch_id", "_source_file", "_source_row", "_ingested_at", "_format")
# what only the JSON shape carries (sources.md 1b): a SQL row has no list of requests nor payment channel
JSON_ONLY = ("supplement_requests", "online_payment")
NOW = datetime(2026, 1, 15, 2, 0, 0)


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return generate_dossiers(400, seed=5)


def _ledger(wh: Path) -> Ledger:
    wh.mkdir(parents=True, exist_ok=True)
    return Ledger(f"sqlite:///{wh / '_ledger.sqlite'}")


def _pull(spec, wh, ledger, **kw):
    kw.setdefault("now", NOW)
    return pull_to_warehouse(spec, warehouse=wh, ledger=ledger, run_id="r-test", agency_codes=AGENCIES,
                             pseudonym_key=KEY, overlap_minutes=60, page_size=50, **kw)


def _staged(wh: Path, drop=()) -> list[tuple]:
    con = duckdb.connect()
    cols = [r[0] for r in con.execute(
        f"DESCRIBE SELECT * FROM read_parquet('{wh}/stg_one_stop__dossiers/[!.]*.parquet')").fetchall()]
    keep = [c for c in cols if c not in LINEAGE and c not in drop]
    sel = ", ".join(f'"{c}"' for c in keep)
    rows = con.execute(f"SELECT {sel} FROM read_parquet('{wh}/stg_one_stop__dossiers/[!.]*.parquet') "
                       f"ORDER BY dossier_id, updated_at").fetchall()
    con.close()
    return rows


def _file_warehouse(tmp_path: Path, records: list[dict]) -> Path:
    inbox = tmp_path / "inbox" / "one_stop" / "dossiers"
    inbox.mkdir(parents=True)
    with open(inbox / "dongbo.jsonl", "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    wh = tmp_path / "wh_files"
    ledger = _ledger(wh)
    [f] = ingest.discover(tmp_path / "inbox")
    out = ingest.ingest_file(f, warehouse=wh, ledger=ledger, run_id="r-files", agency_codes=AGENCIES,
                             pseudonym_key=KEY)
    assert out.status == "staged", out.error
    ledger.dispose()
    return wh


def test_api_pull_stages_the_same_rows_as_the_file(tmp_path, records):
    files_wh = _file_warehouse(tmp_path, records)
    wh = tmp_path / "wh_api"
    ledger = _ledger(wh)
    with FakePortal({"dossiers": records}, token="t", faults=Faults(error_rate=0.2, truncate_rate=0.1,
                                                                     seed=4)) as portal:
        out = _pull(PullSpec("one_stop", "dossiers", "api", portal.base_url, "t"), wh, ledger,
                    policy=RetryPolicy(base_delay=0.01, max_delay=0.05))
        assert portal.log.errors + portal.log.truncated > 0
    assert out.status == "staged", out.error
    assert out.records == len(records) and out.details["retries"] > 0
    expected = _staged(files_wh)
    assert len(expected) == len(records)
    assert _staged(wh) == expected


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sql_pull_stages_the_same_rows_as_the_file(tmp_path, records, backend, monkeypatch):
    files_wh = _file_warehouse(tmp_path, records)
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'replica.sqlite'}"
        schema = None
    else:
        url, schema = PG_URL, f"tthc_pull_it_{uuid.uuid4().hex[:8]}"
    eng = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with eng.begin() as c:
            if schema:
                c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except sa.exc.OperationalError as exc:
        pytest.skip(f"PostgreSQL unreachable at {PG_URL}: {str(exc)[:120]}")
    try:
        create_replica(eng, records, schema=schema)
        wh = tmp_path / "wh_sql"
        ledger = _ledger(wh)
        out = _pull(PullSpec("one_stop", "dossiers", "sql", db_url=url), wh, ledger,
                    sql_config=OneStopSqlSettings(db_schema=schema))
        assert out.status == "staged", out.error
        assert out.records == len(records) and out.rows_quarantined == 0
        assert out.watermark_after == max(parse_timestamp(r["NgayCapNhat"]) for r in records)
        assert "postgres@" not in (out.error or "")
        assert _staged(wh, drop=JSON_ONLY) == _staged(files_wh, drop=JSON_ONLY)
    finally:
        if schema:
            with eng.begin() as c:
                c.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        eng.dispose()


def test_watermark_moves_after_staging_and_the_next_night_takes_the_changes(tmp_path, records):
    wh = tmp_path / "wh"
    ledger = _ledger(wh)
    with FakePortal({"dossiers": records}, token="t") as portal:
        spec = PullSpec("one_stop", "dossiers", "api", portal.base_url, "t")
        first = _pull(spec, wh, ledger)
        wm = ledger.get_watermark("one_stop", "dossiers")
        assert first.committed and wm == max(parse_timestamp(r["NgayCapNhat"]) for r in records)
        changed = records[::50]
        later = wm + timedelta(days=1)
        for r in changed:
            portal.update("dossiers", touch(r, later, status=10))
        second = _pull(spec, wh, ledger, now=NOW + timedelta(days=1))
    assert second.window_from == wm - timedelta(minutes=60)
    in_overlap = {r["MaHoSo"] for r in records if parse_timestamp(r["NgayCapNhat"]) >= wm - timedelta(minutes=60)}
    con = duckdb.connect()
    got = {r[0] for r in con.execute(
        f"SELECT dossier_id FROM read_parquet('{wh}/stg_one_stop__dossiers/{second.batch_id}.parquet')").fetchall()}
    assert got - in_overlap == {r["MaHoSo"] for r in changed}
    assert ledger.get_watermark("one_stop", "dossiers") == later


def test_failed_gate_and_crash_before_commit_re_pull_the_same_window(tmp_path, records, monkeypatch):
    wh = tmp_path / "wh"
    ledger = _ledger(wh)
    with FakePortal({"dossiers": records}, token="t") as portal:
        spec = PullSpec("one_stop", "dossiers", "api", portal.base_url, "t")
        failed = _pull(spec, wh, ledger, gate=lambda stage: False)
        assert failed.status == "gate_failed" and not failed.committed
        assert ledger.get_watermark("one_stop", "dossiers") is None

        # killed after the raw file is written, before staging is published
        from transforms.staging import ChunkStager

        def killed(*a, **k):
            raise SystemExit("killed")

        monkeypatch.setattr(ChunkStager, "finish", killed)
        with pytest.raises(SystemExit):
            _pull(spec, wh, ledger)
        monkeypatch.undo()
        assert ledger.get_watermark("one_stop", "dossiers") is None
        rolled_back = ingest.recover(wh, ledger)
        assert len(rolled_back) == 1
        assert not list((wh / "raw_one_stop__dossiers").glob(f"{rolled_back[0]}*"))

        again = _pull(spec, wh, ledger)
    assert again.window_from == failed.window_from and again.records == len(records) and again.committed


def test_bad_token_fails_one_source_while_the_other_proceeds(tmp_path, records, monkeypatch):
    wh = tmp_path / "wh"
    ledger = _ledger(wh)
    payments = [{"payment_id": f"P{i}", "dossier_id": r["MaHoSo"], "amount_vnd": 12000,
                 "paid_at": r["NgayTiepNhan"], "payment_channel": 1, "status": "Thành công",
                 "updated_at": r["NgayCapNhat"]} for i, r in enumerate(records[:30])]
    with FakePortal({"payments": payments}, token="portal-token") as dvc, \
            FakePortal({"dossiers": records}, token="onestop-token") as one:
        monkeypatch.setenv("TTHC_DVC_PORTAL_URL", dvc.base_url)
        monkeypatch.setenv("TTHC_DVC_PORTAL_TOKEN", "expired")
        monkeypatch.setenv("TTHC_ONE_STOP_URL", one.base_url)
        monkeypatch.setenv("TTHC_ONE_STOP_TOKEN", "onestop-token")
        monkeypatch.delenv("TTHC_ONE_STOP_DB_URL", raising=False)
        from tthc.settings import get_settings

        specs = [s for s in configured_pulls(get_settings()) if s.entity in ("payments", "dossiers")]
        outs = {s.source: _pull(s, wh, ledger) for s in specs}
        assert dvc.log.unauthorized == 1  # refused once, not retried
    assert outs["dvc_portal"].status == "failed"
    assert "dvc_portal" in outs["dvc_portal"].error and "TTHC_DVC_PORTAL_TOKEN" in outs["dvc_portal"].error
    assert ledger.get_watermark("dvc_portal", "payments") is None
    assert outs["one_stop"].status == "staged" and outs["one_stop"].records == len(records)


def test_backfill_twice_stages_identical_rows_and_leaves_watermarks(tmp_path, records):
    wh = tmp_path / "wh"
    ledger = _ledger(wh)
    with FakePortal({"dossiers": records}, token="t") as portal:
        spec = PullSpec("one_stop", "dossiers", "api", portal.base_url, "t")
        kw = dict(warehouse=wh, ledger=ledger, run_id="r-bf", agency_codes=AGENCIES, pseudonym_key=KEY,
                  page_size=100)
        from datetime import date

        a = backfill_window([spec], date(2025, 3, 1), date(2025, 3, 31), **kw)[0]
        b = backfill_window([spec], date(2025, 3, 1), date(2025, 3, 31), **kw)[0]
    expected = sum(1 for r in records if datetime(2025, 3, 1) <= parse_timestamp(r["NgayCapNhat"])
                   < datetime(2025, 4, 1))
    assert a.records == b.records == expected > 0
    assert ledger.get_watermark("one_stop", "dossiers") is None
    con = duckdb.connect()
    q = ("SELECT * EXCLUDE (_batch_id, _source_file, _ingested_at) FROM read_parquet('{}') "
         "ORDER BY dossier_id")
    ta = con.execute(q.format(wh / "stg_one_stop__dossiers" / f"{a.batch_id}.parquet")).fetchall()
    tb = con.execute(q.format(wh / "stg_one_stop__dossiers" / f"{b.batch_id}.parquet")).fetchall()
    assert ta == tb
