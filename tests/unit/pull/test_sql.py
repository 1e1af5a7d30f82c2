"""The one-stop replica extractor against SQLite and the machine's PostgreSQL."""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from devkit.fakeportal.replica import create_replica, update_rows
from transforms.pull.http import PullError
from transforms.pull.sql import OneStopSqlSettings, pull_sql_dossiers, to_text
from transforms.pull.window import parse_timestamp
from tthc.settings import get_settings

PG_URL = os.environ.get("TTHC_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
FAR = datetime(2100, 1, 1)
START = datetime(2000, 1, 1)


def _pg_engine():
    try:
        eng = sa.create_engine(PG_URL, poolclass=sa.pool.NullPool)
        with eng.connect() as c:
            c.exec_driver_sql("SELECT 1")
        return eng
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"PostgreSQL unreachable at {PG_URL}: {type(exc).__name__}: {str(exc)[:120]}")


@pytest.fixture(params=["sqlite", "postgresql"])
def replica(request, tmp_path, dossiers):
    """(engine, config, records) with the first 500 generated dossiers loaded."""
    records = dossiers[:500]
    if request.param == "sqlite":
        eng = sa.create_engine(f"sqlite:///{tmp_path / 'replica.sqlite'}")
        create_replica(eng, records)
        yield eng, OneStopSqlSettings(), records
        eng.dispose()
        return
    eng = _pg_engine()
    schema = f"tthc_pull_test_{uuid.uuid4().hex[:8]}"
    with eng.begin() as c:
        c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        create_replica(eng, records, schema=schema)
        yield eng, OneStopSqlSettings(db_schema=schema), records
    finally:
        with eng.begin() as c:
            c.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        eng.dispose()


def _pull(eng, cfg, lo, hi, chunk_rows=1000):
    chunks = list(pull_sql_dossiers(None, lo, hi, config=cfg, engine=eng, chunk_rows=chunk_rows))
    return chunks, [r for c in chunks for r in c]


def test_full_then_incremental_pull_takes_exactly_the_changed_rows(replica):
    eng, cfg, records = replica
    chunks, rows = _pull(eng, cfg, START, FAR, chunk_rows=120)
    assert [len(c) for c in chunks] == [120, 120, 120, 120, 20]  # streamed in chunks of yield_per rows
    assert sorted(r["MaHoSo"] for r in rows) == sorted(d["MaHoSo"] for d in records)
    watermark = max(parse_timestamp(r["NgayCapNhat"]) for r in rows)
    # the one-stop system updates some dossiers in place after the first pull
    changed = sorted(d["MaHoSo"] for d in records[::37])
    later = watermark + timedelta(hours=5)
    assert update_rows(eng, changed, later, status=10, schema=cfg.db_schema) == len(changed)
    _, second = _pull(eng, cfg, watermark + timedelta(seconds=1), FAR)
    assert sorted(r["MaHoSo"] for r in second) == changed
    assert {r["NgayCapNhat"] for r in second} == {later.strftime("%Y-%m-%d %H:%M:%S")}
    assert {r["TrangThaiHoSo"] for r in second} == {"10"}


def test_values_come_out_as_the_text_raw_keeps(replica):
    eng, cfg, records = replica
    _, rows = _pull(eng, cfg, START, FAR)
    by_id = {r["MaHoSo"]: r for r in rows}
    src = records[3]
    row = by_id[src["MaHoSo"]]
    assert row["NgayCapNhat"] == parse_timestamp(src["NgayCapNhat"]).strftime("%Y-%m-%d %H:%M:%S")
    assert row["CoThanhPhanSoHoa"] == ("true" if src["TaiLieuNop"] else "false")
    assert row["LePhi"] == str(sum(f["Gia"] for f in src["DanhSachLePhi"]))
    assert row["SoLanBoSung"] == str(len(src["DanhSachHoSoBoSung"]))
    no_end = next(r for r in rows if r["NgayKetThucXuLy"] is None)  # NULL stays None
    assert no_end["TrangThaiHoSo"] not in ("9", "10")
    assert set(row) == set(OneStopSqlSettings().column_map().values())


def test_window_bounds_are_half_open(replica):
    eng, cfg, records = replica
    stamps = sorted(parse_timestamp(d["NgayCapNhat"]) for d in records)
    lo, hi = stamps[50], stamps[150]
    _, rows = _pull(eng, cfg, lo, hi)
    expected = {d["MaHoSo"] for d in records if lo <= parse_timestamp(d["NgayCapNhat"]) < hi}
    assert {r["MaHoSo"] for r in rows} == expected and len(rows) == len(expected)


def test_postgres_reads_in_a_read_only_snapshot_with_bound_parameters_and_a_server_side_cursor(dossiers):
    eng = _pg_engine()
    schema = f"tthc_pull_test_{uuid.uuid4().hex[:8]}"
    seen: list[tuple[str, object, bool]] = []

    @sa.event.listens_for(eng, "before_cursor_execute")
    def _spy(conn, cursor, statement, params, context, executemany):
        seen.append((statement, params, bool(context and context.execution_options.get("stream_results"))))

    with eng.begin() as c:
        c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        create_replica(eng, dossiers[:50], schema=schema)
        seen.clear()
        lo = datetime(2025, 3, 1, 8, 0, 0)
        _, rows = _pull(eng, OneStopSqlSettings(db_schema=schema), lo, FAR)
        assert rows
        assert seen[0][0].upper().startswith("SET TRANSACTION") and "READ ONLY" in seen[0][0].upper()
        select = next(s for s in seen if '"NgayCapNhat" >=' in s[0])
        assert "2025-03-01" not in select[0]  # the bound is a parameter, not spliced text
        assert lo in dict(select[1]).values()
        assert select[2], "not read through a server-side cursor"
        # and the transaction really refuses writes
        with eng.connect() as c, c.begin():
            c.exec_driver_sql("SET TRANSACTION READ ONLY")
            with pytest.raises(sa.exc.InternalError, match="read-only"):
                c.exec_driver_sql(f'DELETE FROM "{schema}"."HoSos"')
    finally:
        with eng.begin() as c:
            c.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        eng.dispose()


def test_renamed_table_and_columns_through_settings(tmp_path, dossiers, monkeypatch):
    eng = sa.create_engine(f"sqlite:///{tmp_path / 'vendor.sqlite'}")
    create_replica(eng, dossiers[:40], table="tbl_hoso")
    with eng.begin() as c:
        c.exec_driver_sql('ALTER TABLE tbl_hoso RENAME COLUMN "NgayCapNhat" TO "LastModified"')
        c.exec_driver_sql('ALTER TABLE tbl_hoso DROP COLUMN "DiaChi"')
    monkeypatch.setenv("TTHC_ONE_STOP_DB_TABLE", "tbl_hoso")
    monkeypatch.setenv("TTHC_ONE_STOP_DB_COLUMNS", '{"updated_at": "LastModified"}')
    cfg = OneStopSqlSettings.from_settings(get_settings())
    _, rows = _pull(eng, cfg, START, FAR)
    assert len(rows) == 40
    assert all(r["NgayCapNhat"] for r in rows) and all(r["DiaChi"] is None for r in rows)
    # without the override the required column is missing, and the error names it
    monkeypatch.delenv("TTHC_ONE_STOP_DB_COLUMNS")
    with pytest.raises(PullError, match="NgayCapNhat.*TTHC_ONE_STOP_DB_COLUMNS"):
        _pull(eng, OneStopSqlSettings.from_settings(get_settings()), START, FAR)
    eng.dispose()


def test_the_pull_spec_carries_the_replica_settings_it_was_built_from(tmp_path, dossiers, monkeypatch):
    # the flow hands its settings to configured_pulls; the pull reads the table from the spec, never the settings
    from transforms.pull.run import configured_pulls, describe_source, iter_records
    from transforms.pull.window import Window

    url = f"sqlite:///{tmp_path / 'vendor.sqlite'}"
    eng = sa.create_engine(url)
    create_replica(eng, dossiers[:25], table="tbl_hoso")
    eng.dispose()
    for name in ("TTHC_DVC_PORTAL_URL", "TTHC_ONE_STOP_URL", "TTHC_ONE_STOP_DB_COLUMNS", "TTHC_ONE_STOP_DB_SCHEMA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TTHC_ONE_STOP_DB_URL", url)
    monkeypatch.setenv("TTHC_ONE_STOP_DB_TABLE", "tbl_hoso")
    [spec] = configured_pulls(get_settings())
    monkeypatch.setenv("TTHC_ONE_STOP_DB_TABLE", "elsewhere")  # what the environment says later is not read
    assert spec.kind == "sql" and spec.sql_config.table == "tbl_hoso"
    window = Window(START, FAR)
    assert "#tbl_hoso?updated_from=" in describe_source(spec, window)
    rows = [r for chunk in iter_records(spec, window, page_size=100) for r in chunk]
    assert len(rows) == 25


def test_missing_table_is_a_clear_error(tmp_path):
    eng = sa.create_engine(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    with pytest.raises(PullError, match="'HoSos' not found"):
        _pull(eng, OneStopSqlSettings(), START, FAR)


def test_to_text():
    assert to_text(True) == "true" and to_text(False) == "false"
    assert to_text(datetime(2025, 1, 2, 3, 4, 5, 678)) == "2025-01-02 03:04:05"
    assert to_text(12000) == "12000" and to_text(None) is None
    from decimal import Decimal
    assert to_text(Decimal("50000.00")) == "50000"
