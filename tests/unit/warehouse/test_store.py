"""The Parquet layout: atomic writes (old table or new, never half), batch files, crash clean-up, permissions."""

from __future__ import annotations

import hashlib
import stat

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from warehouse import store


def _table(n: int, tag: str = "a") -> pa.Table:
    return pa.table({"id": pa.array(range(n), pa.int64()), "tag": pa.array([tag] * n, pa.string())})


def _digest(p) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _leftovers(d) -> list[str]:
    return sorted(f.name for f in d.iterdir() if f.name.startswith("."))


def test_write_table_publishes_and_replaces(tmp_path):
    p1 = store.write_table(tmp_path, "mart_x__year", _table(3, "old"))
    assert p1 == tmp_path / "mart_x__year" / "data.parquet"
    assert pq.read_table(p1).num_rows == 3
    store.write_table(tmp_path, "mart_x__year", _table(5, "new"))
    t = pq.read_table(p1)
    assert t.num_rows == 5 and set(t.column("tag").to_pylist()) == {"new"}
    assert _leftovers(p1.parent) == []
    assert store.table_files(tmp_path, "mart_x__year") == [p1]
    assert stat.S_IMODE(p1.stat().st_mode) == 0o644  # marts are for analysts


def test_failing_validate_leaves_the_old_file_untouched_and_no_temp(tmp_path):
    p = store.write_table(tmp_path, "core_dossiers", _table(4, "old"))
    before, mtime = _digest(p), p.stat().st_mtime_ns
    seen = []

    def validate(tmp):
        seen.append(tmp)
        assert tmp.name.startswith(".")  # the new file is aside, under a name readers skip
        assert pq.read_table(tmp).num_rows == 7  # complete before validation
        assert store.table_files(tmp_path, "core_dossiers") == [p]  # invisible to readers meanwhile
        raise ValueError("contract broken")

    with pytest.raises(ValueError, match="contract broken"):
        store.write_table(tmp_path, "core_dossiers", _table(7, "new"), validate=validate)
    assert seen, "validate was not called"
    assert _digest(p) == before and p.stat().st_mtime_ns == mtime
    assert _leftovers(p.parent) == []
    assert pq.read_table(p).column("tag").to_pylist() == ["old"] * 4


def test_passing_validate_sees_the_new_data_then_it_is_swapped_in(tmp_path):
    store.write_table(tmp_path, "core_dossiers", _table(2, "old"))
    calls = []
    store.write_table(tmp_path, "core_dossiers", _table(6, "new"),
                      validate=lambda tmp: calls.append(pq.read_table(tmp).num_rows))
    assert calls == [6]
    assert pq.read_table(tmp_path / "core_dossiers" / "data.parquet").num_rows == 6


def test_interrupted_write_keeps_old_file(tmp_path, monkeypatch):
    p = store.write_table(tmp_path, "mart_y__month", _table(3, "old"))
    before = _digest(p)

    def boom(*a, **k):
        raise KeyboardInterrupt  # a BaseException, as when the process is being stopped

    monkeypatch.setattr(store.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        store.write_table(tmp_path, "mart_y__month", _table(9, "new"))
    monkeypatch.undo()
    assert _digest(p) == before
    assert _leftovers(p.parent) == []


def test_copy_query_to_table_atomic_on_sql_error(tmp_path):
    con = duckdb.connect()
    p = store.copy_query_to_table(con, "SELECT 1 AS a UNION ALL SELECT 2", tmp_path, "mart_z__year")
    assert pq.read_table(p).num_rows == 2
    before = _digest(p)
    with pytest.raises(duckdb.Error):
        store.copy_query_to_table(con, "SELECT * FROM no_such_table", tmp_path, "mart_z__year")
    assert _digest(p) == before
    assert _leftovers(p.parent) == []


def test_batch_file_writer_streams_and_publishes_on_close(tmp_path):
    schema = _table(0).schema
    w = store.BatchFileWriter(tmp_path, "stg_one_stop__dossiers", "b1", schema)
    w.write(_table(3))
    w.write(pa.RecordBatch.from_pydict({"id": [7], "tag": ["z"]}, schema=schema))
    w.write(_table(0))
    assert store.table_files(tmp_path, "stg_one_stop__dossiers") == []  # not visible until closed
    assert len(_leftovers(tmp_path / "stg_one_stop__dossiers")) == 1
    final = w.close()
    assert w.rows == 4
    assert final == tmp_path / "stg_one_stop__dossiers" / "b1.parquet"
    assert pq.read_table(final).column("id").to_pylist() == [0, 1, 2, 7]
    assert _leftovers(final.parent) == []


def test_batch_file_writer_abort_leaves_nothing(tmp_path):
    w = store.BatchFileWriter(tmp_path, "raw_one_stop__dossiers", "b2", _table(0).schema)
    w.write(_table(10))
    w.abort()
    d = tmp_path / "raw_one_stop__dossiers"
    assert list(d.iterdir()) == []
    assert not store.table_exists(tmp_path, "raw_one_stop__dossiers")


def test_remove_batch_files_removes_only_the_named_batches_and_temp_files(tmp_path):
    for t in ("raw_one_stop__dossiers", "stg_one_stop__dossiers", "quarantine_one_stop__dossiers"):
        for b in ("bkeep", "bgone"):
            store.write_table(tmp_path, t, _table(1), name=b)
    (tmp_path / "stg_one_stop__dossiers" / ".bhalf.1234abcd.tmp").write_bytes(b"half a parquet")
    (tmp_path / "_secrets").mkdir()
    (tmp_path / "_secrets" / "bgone.parquet").write_bytes(b"not a table")  # '_' folders are not tables
    removed = store.remove_batch_files(tmp_path, ["bgone"])
    assert sorted(p.name for p in removed) == [".bhalf.1234abcd.tmp"] + ["bgone.parquet"] * 3
    for t in ("raw_one_stop__dossiers", "stg_one_stop__dossiers", "quarantine_one_stop__dossiers"):
        assert [p.name for p in (tmp_path / t).iterdir()] == ["bkeep.parquet"]
    assert (tmp_path / "_secrets" / "bgone.parquet").exists()
    assert store.remove_batch_files(tmp_path / "absent", ["x"]) == []


@pytest.mark.parametrize("table,private", [("raw_one_stop__dossiers", True), ("quarantine_dvc_portal__feedback", True),
                                           ("stg_one_stop__dossiers", False), ("mart_kpi__month", False)])
def test_personal_data_layers_are_owner_only(tmp_path, table, private):
    p = store.write_table(tmp_path, table, _table(2), name="b1")
    w = store.BatchFileWriter(tmp_path, table, "b2", _table(0).schema)
    w.write(_table(1))
    p2 = w.close()
    for f in (p, p2):
        mode = stat.S_IMODE(f.stat().st_mode)
        assert (mode & 0o077 == 0) is private, (f, oct(mode))
        assert mode & 0o600 == 0o600
    dmode = stat.S_IMODE((tmp_path / table).stat().st_mode)
    if private:
        assert dmode == 0o700
    assert store.is_private(table) is private


def test_list_tables_and_globs_skip_dot_and_underscore(tmp_path):
    store.write_table(tmp_path, "mart_a__year", _table(1))
    (tmp_path / "mart_b__year").mkdir()
    (tmp_path / "mart_b__year" / ".data.x.tmp").write_bytes(b"")
    (tmp_path / "mart_b__year" / ".hidden.parquet").write_bytes(b"junk")
    (tmp_path / "_held").mkdir()
    store.write_table(tmp_path / "_held", "stg_x__y", _table(1))
    assert store.list_tables(tmp_path) == ["mart_a__year"]
    assert store.table_files(tmp_path, "mart_b__year") == []
    # the glob DuckDB uses reads the published file and never the dot files
    n = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{store.table_glob(tmp_path, 'mart_a__year')}')"
                                 ).fetchone()[0]
    assert n == 1
