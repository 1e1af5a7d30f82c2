"""The streamed ingest (reader thread one chunk ahead, writer thread behind): a file that breaks after several
chunks were already staged is rejected whole, leaves no file behind and no thread running."""

from __future__ import annotations

import threading

import pyarrow.parquet as pq
import pytest

from transforms import ingest
from warehouse.ledger import Ledger


@pytest.fixture
def bulk_csv(tmp_path):
    from devkit.sample.bulk import write_agencies_csv, write_dossier_csv

    d = tmp_path / "in"
    d.mkdir()
    path = d / "hoso.csv"
    write_dossier_csv(path, 12_000, seed=5)
    write_agencies_csv(d / "agencies.csv")
    codes = [a["agency_code"] for a in ingest.load_agencies(d / "agencies.csv")]
    return path, codes


def _ingest(tmp_path, path, codes):
    wh = tmp_path / "wh"
    wh.mkdir(exist_ok=True)
    ledger = Ledger(f"sqlite:///{wh / '_ledger.sqlite'}")
    f = ingest.InboxFile(path, "one_stop/dossiers/" + path.name, "one_stop", "dossiers", "csv")
    try:
        return wh, ingest.ingest_file(f, warehouse=wh, ledger=ledger, run_id="r1", agency_codes=codes,
                                      pseudonym_key=b"k")
    finally:
        ledger.dispose()


def test_many_chunks_stage_in_order(tmp_path, bulk_csv, monkeypatch):
    path, codes = bulk_csv
    monkeypatch.setattr(ingest.raw, "ROW_GROUP_ROWS", 1_500)
    wh, out = _ingest(tmp_path, path, codes)
    assert out.status == "staged", out.error
    assert out.rows_raw == 12_000 == out.rows_staged + out.rows_quarantined
    raw = pq.read_table(wh / "raw_one_stop__dossiers" / f"{out.batch_id}.parquet", columns=["_source_row"])
    assert raw.column(0).to_pylist() == list(range(1, 12_001))
    stg = pq.read_table(wh / "stg_one_stop__dossiers" / f"{out.batch_id}.parquet", columns=["_source_row"])
    rows = stg.column(0).to_pylist()
    assert rows == sorted(rows) and len(rows) == out.rows_staged
    assert not [t for t in threading.enumerate() if t.name == "ingest-reader"]


def test_a_break_after_several_chunks_rejects_the_file_and_leaves_nothing(tmp_path, bulk_csv, monkeypatch):
    path, codes = bulk_csv
    lines = path.read_bytes().split(b"\n")
    lines[11_000] = lines[11_000] + b',"one field too many"'
    path.write_bytes(b"\n".join(lines))
    monkeypatch.setattr(ingest.raw, "ROW_GROUP_ROWS", 1_500)
    wh, out = _ingest(tmp_path, path, codes)
    assert out.status == "rejected", out
    assert "cannot be read as CSV" in out.error
    left = [p for p in wh.rglob("*") if p.is_file() and not p.name.startswith("_ledger")]
    assert left == []
    assert not [t for t in threading.enumerate() if t.name == "ingest-reader"]


def test_an_error_while_staging_stops_the_reader_thread(tmp_path, bulk_csv, monkeypatch):
    path, codes = bulk_csv
    monkeypatch.setattr(ingest.raw, "ROW_GROUP_ROWS", 1_500)
    from transforms import staging

    calls = []
    real_add = staging.ChunkStager.add

    def add(self, chunk, write=None, prepared=None):
        calls.append(chunk.num_rows)
        if len(calls) == 3:
            raise RuntimeError("disk on fire")
        return real_add(self, chunk, write, prepared)

    monkeypatch.setattr(staging.ChunkStager, "add", add)
    wh, out = _ingest(tmp_path, path, codes)
    assert out.status == "failed" and "disk on fire" in out.error
    assert len(calls) == 3
    assert [p for p in wh.rglob("*") if p.is_file() and not p.name.startswith("_ledger")] == []
    assert not [t for t in threading.enumerate() if t.name == "ingest-reader"]
