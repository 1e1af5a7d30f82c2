"""Object-storage warehouses against a real S3 API server (moto_server on 127.0.0.1): pull/publish round trip,
the conditional pointer (two writers), an interrupted publish seen and repaired, readers of one generation."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.cluster import s3_server
from warehouse import generations, objectstore, store


@pytest.fixture(scope="module")
def s3():
    with s3_server() as env, pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        yield env


def _gen(wh, value: int) -> str:
    with generations.GenerationWriter(wh) as gw:
        for t in ("mart_a", "mart_b"):
            gw.write(t, pa.table({"v": [value]}))
        return gw.publish({"built_from": {"as_of": "2025-12-31"}}).name


def _batch(wh, table: str, batch: str) -> None:
    store.write_table(wh, table, pa.table({"x": [1]}), name=batch)


def test_round_trip_and_pointer(s3, tmp_path):
    url = "s3://tthc-test/rt/p1"
    a = objectstore.ObjectWarehouse(url, local=tmp_path / "a")
    assert a.pull().generation is None
    _batch(a.local, "stg_x__y", "b1")
    g1 = _gen(a.local, 1)
    assert a.publish("r1") == g1
    keys = a.listing()
    assert objectstore.POINTER in keys and objectstore.MARKER not in keys
    assert f"_marts/{g1}/mart_a/data.parquet" in keys and "stg_x__y/b1.parquet" in keys
    # a second copy sees the same warehouse, links made
    b = objectstore.ObjectWarehouse(url, local=tmp_path / "b")
    pulled = b.pull()
    assert pulled.generation == g1 and pulled.interrupted is None
    assert pq.read_table(b.local / "mart_a" / "data.parquet").column("v").to_pylist() == [1]
    # a second build: new generation published, the first kept as previous, nothing re-downloaded that is unchanged
    g2 = _gen(b.local, 2)
    b.publish("r2")
    assert a.pull().downloaded == 3  # mart_a, mart_b, manifest of g2 only
    assert pq.read_table(a.local / "mart_b" / "data.parquet").column("v").to_pylist() == [2]
    assert b.published_generation()[0] == g2
    # a writer that pulled before that publish is refused: the pointer's ETag changed (S3 conditional write)
    c = objectstore.ObjectWarehouse(url, local=tmp_path / "c")
    c.pull()
    _gen(a.local, 3)
    a.publish("r3")
    _gen(c.local, 4)
    with pytest.raises(objectstore.PublishConflict):
        c.publish("r4")
    assert pq.read_table(objectstore.ObjectWarehouse(url, local=tmp_path / "d").pull() and
                         tmp_path / "d" / "mart_a" / "data.parquet").column("v").to_pylist() == [3]


def test_interrupted_publish_is_seen_and_orphans_removed(s3, tmp_path, monkeypatch):
    url = "s3://tthc-test/rt/p2"
    a = objectstore.ObjectWarehouse(url, local=tmp_path / "a")
    a.pull()
    _batch(a.local, "stg_x__y", "b1")
    _gen(a.local, 1)
    a.publish("r1")
    # the next run: a new batch and marts, killed before the ledger and the pointer were sent
    _batch(a.local, "stg_x__y", "b2")
    _gen(a.local, 2)

    def fail_pointer(**kw):
        if kw["Key"].endswith(objectstore.POINTER):
            raise KeyboardInterrupt  # the process stops right before the commit
        return real(**kw)

    real = a.s3.put_object
    monkeypatch.setattr(a.s3, "put_object", fail_pointer)
    with pytest.raises(KeyboardInterrupt):
        a.publish("r2")
    monkeypatch.undo()
    # readers still see generation 1, whole
    r = objectstore.ObjectWarehouse(url, local=tmp_path / "r")
    pulled = r.pull()
    assert pulled.interrupted is not None and json.loads(json.dumps(pulled.interrupted))["run"] == "r2"
    assert pq.read_table(r.local / "mart_a" / "data.parquet").column("v").to_pylist() == [1]
    # b2 reached the bucket but no ledger names it: removed by the repair (here: a ledger naming b1 only)
    import sqlite3

    db = r.local / objectstore.LEDGER
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE batches (batch_id TEXT)")
    con.execute("INSERT INTO batches VALUES ('b1')")
    con.commit()
    con.close()
    removed = objectstore.remove_orphan_batches(r.local, f"sqlite:///{db}")
    assert [p.stem for p in removed] == ["b2"]
    _gen(r.local, 5)
    r.publish("r3")
    assert objectstore.MARKER not in r.listing() and "stg_x__y/b2.parquet" not in r.listing()
    assert r.pull().interrupted is None


def test_pull_drops_what_an_unpublished_run_left(s3, tmp_path):
    """A run killed before publishing: its new files and the ledger's write-ahead log (which would name batches
    whose files are gone) are dropped by the next pull; the published state comes back as it was."""
    url = "s3://tthc-test/rt/p3"
    a = objectstore.ObjectWarehouse(url, local=tmp_path / "a")
    a.pull()
    _batch(a.local, "stg_x__y", "b1")
    import sqlite3

    con = sqlite3.connect(a.local / objectstore.LEDGER)
    con.execute("CREATE TABLE batches (batch_id TEXT)")
    con.commit()
    con.close()
    published = (a.local / objectstore.LEDGER).read_bytes()
    a.publish("r1")
    _batch(a.local, "stg_x__y", "b2")
    (a.local / f"{objectstore.LEDGER}-wal").write_bytes(b"unpublished rows")
    pulled = a.pull()
    assert pulled.removed == 1 and not (a.local / "stg_x__y" / "b2.parquet").exists()
    assert not (a.local / f"{objectstore.LEDGER}-wal").exists()
    assert (a.local / objectstore.LEDGER).read_bytes() == published


def test_tthc_query_reads_the_published_marts_on_object_storage(s3, tmp_path, monkeypatch):
    """`tthc query --warehouse s3://...` reads the published generation through a local read copy, and keeps the
    sandbox: no other file of the machine is readable."""
    from typer.testing import CliRunner

    from tthc.cli import app

    monkeypatch.setenv("TTHC_CACHE_DIR", str(tmp_path / "cache"))
    url = "s3://tthc-test/rt/q"
    a = objectstore.ObjectWarehouse(url, local=tmp_path / "a")
    a.pull()
    _gen(a.local, 7)
    a.publish("r1")
    run = CliRunner().invoke(app, ["query", "--warehouse", url, "SELECT v FROM mart_a", "--out",
                                   str(tmp_path / "out.parquet")])
    assert run.exit_code == 0, run.output
    assert pq.read_table(tmp_path / "out.parquet").column("v").to_pylist() == [7]
    bad = CliRunner().invoke(app, ["query", "--warehouse", url, "SELECT * FROM read_text('/etc/passwd')"])
    assert bad.exit_code == 2 and "published tables" in bad.output
