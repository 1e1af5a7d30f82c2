"""Every file of the shared sample inbox reads with the manifest's row counts, and the manifest's invalid rows
are found at the `_source_line` it names, holding the offending value in the named column."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from transforms.readers import normalize_header, raw_schema, read_file
from transforms.readers._common import header_lookup

SAMPLE_INBOX = Path(__file__).resolve().parents[4] / "shared" / "samples" / "inbox"  # ../shared beside the repo

pytestmark = pytest.mark.skipif(not (SAMPLE_INBOX / "manifest.json").exists(),
                                reason=f"the shared sample inbox is absent ({SAMPLE_INBOX})")


def _manifest() -> dict:
    return json.loads((SAMPLE_INBOX / "manifest.json").read_text(encoding="utf-8"))


def _read(rel: str) -> tuple:
    source, entity = rel.split("/")[:2]
    res = read_file(SAMPLE_INBOX / rel, source, entity)
    return res, pa.Table.from_batches(list(res.batches), schema=raw_schema(source, entity))


def test_every_sample_file_matches_manifest():
    man = _manifest()
    listed = {f["path"] for f in man["files"]}
    on_disk = {str(p.relative_to(SAMPLE_INBOX)) for p in SAMPLE_INBOX.glob("*/*/*") if p.is_file()}
    assert listed == on_disk
    for f in man["files"]:
        res, t = _read(f["path"])
        assert t.num_rows == f["data_rows"], f["path"]
        assert res.header_rows == f["header_rows"], f["path"]
        assert res.first_data_line == f["first_data_row"], f["path"]
        assert t.column("_source_row").to_pylist() == list(range(1, t.num_rows + 1))
        assert res.unknown_columns == [], f["path"]


def test_manifest_invalid_rows_are_where_it_says():
    for inv in _manifest()["invalid_rows"]:
        source, entity = inv["path"].split("/")[:2]
        fmt = "national_sync" if inv["path"].endswith((".json", ".jsonl")) else "flat_export"
        canon = header_lookup(fmt, entity)[normalize_header(inv["column"])]
        _, t = _read(inv["path"])
        hits = [r for r in t.to_pylist() if r["_source_line"] == inv["row"]]
        assert len(hits) == 1, inv
        expected = inv["value"] if inv["value"] != "" else None
        assert hits[0][canon] == expected, inv
        assert hits[0]["_source_row"] == inv["data_row"], inv
