"""Hand-built raw batches for the staging tests: text values under canonical names, plus the lineage columns."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa

from transforms.staging import raw_columns


def raw_table(entity: str, rows: list[dict], fmt: str = "flat_export") -> pa.Table:
    """A raw table of ``entity`` as a reader hands it over: every raw column (absent keys null) and the lineage."""
    cols = raw_columns(entity)
    n = len(rows)
    data = {c: pa.array([r.get(c) for r in rows], pa.string()) for c in cols}
    data["_extra"] = pa.nulls(n, pa.string())
    data["_source_row"] = pa.array(range(1, n + 1), pa.int64())
    data["_source_line"] = pa.array(range(2, n + 2), pa.int64())
    data["_batch_id"] = pa.array(["b1"] * n)
    data["_source_file"] = pa.array(["f.csv"] * n)
    data["_ingested_at"] = pa.array([datetime(2026, 1, 1)] * n, pa.timestamp("us"))
    data["_format"] = pa.array([fmt] * n)
    return pa.table(data)
