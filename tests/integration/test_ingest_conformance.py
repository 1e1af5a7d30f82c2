"""Conformance on ../shared/samples/inbox: every file's raw rows equal its manifest data_rows, and exactly the
manifest's invalid rows are quarantined, in the right file, row and column."""

from __future__ import annotations

import json

import duckdb
import pytest

from warehouse import store

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def manifest(sample_inbox):
    return json.loads((sample_inbox / "manifest.json").read_text(encoding="utf-8"))


def _source_of(path: str) -> tuple[str, str]:
    source, entity = path.split("/")[:2]
    return source, entity


def test_raw_rows_per_file_equal_manifest(sample_warehouse, manifest):
    for f in manifest["files"]:
        source, entity = _source_of(f["path"])
        got = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{store.table_glob(sample_warehouse, f'raw_{source}__{entity}')}') "
                         f"WHERE _source_file = '{f['path']}'").fetchall()[0][0]
        assert got == f["data_rows"], f["path"]


def test_exactly_the_manifest_invalid_rows_are_quarantined(sample_warehouse, manifest):
    got = set()
    for t in store.list_tables(sample_warehouse):
        if t.startswith("quarantine_"):
            for row in duckdb.sql(f"SELECT _source_file, _source_row, _source_line, _column, _value, _rule "
                                  f"FROM read_parquet('{store.table_glob(sample_warehouse, t)}')").fetchall():
                got.add(row[:5])
    want = {(r["path"], r["data_row"], r["row"], r["column"], r["value"] or None) for r in manifest["invalid_rows"]}
    assert got == want


def test_staged_plus_quarantined_equals_raw_and_no_personal_data(sample_warehouse):
    from warehouse.ledger import Ledger

    ledger = Ledger(f"sqlite:///{sample_warehouse / '_ledger.sqlite'}")
    ledger.check_balance()
    batches = ledger.recent_batches(100)
    assert batches and all(b["status"] == "passed" for b in batches)  # staged, then through the gate
    ledger.dispose()
    stg_cols = set()
    for t in store.list_tables(sample_warehouse):
        if t.startswith("stg_"):
            stg_cols |= set(duckdb.sql(f"SELECT * FROM read_parquet('{store.table_glob(sample_warehouse, t)}') LIMIT 0").columns)
    assert not stg_cols & {"applicant_name", "applicant_id_number", "applicant_phone", "applicant_address",
                           "sender_name", "content"}


def test_raw_and_quarantine_are_owner_only(sample_warehouse):
    for t in store.list_tables(sample_warehouse):
        if store.is_private(t):
            d = sample_warehouse / t
            assert d.stat().st_mode & 0o077 == 0, t
            for f in store.table_files(sample_warehouse, t):
                assert f.stat().st_mode & 0o077 == 0, f
