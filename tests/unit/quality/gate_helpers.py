"""A batch as ingest leaves it: the raw file in the warehouse, staged (and quarantined) by the real staging SQL."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from transforms.contracts import ENTITY_SOURCE, raw_table
from transforms.staging import raw_columns, stage_raw_file

AGENCIES = ["H19", "H19.26293", "H19.26380", "H19.STP"]
KEY = b"unit-test-key"


def stage_rows(warehouse: Path, entity: str, rows: list[dict], *, batch_id: str = "b20251231T010000-00000001",
               fmt: str = "flat_export", source_file: str = "hoso_2025_11.csv", ingested: datetime | None = None):
    """Write ``rows`` (raw text under canonical names) as the batch's raw file and stage it; returns the
    StageResult. ``_source_row`` is the row's place in ``rows`` (1-based)."""
    source = ENTITY_SOURCE[entity]
    n = len(rows)
    data = {c: pa.array([r.get(c) for r in rows], pa.string()) for c in raw_columns(entity)}
    data["_extra"] = pa.nulls(n, pa.string())
    data["_batch_id"] = pa.array([batch_id] * n, pa.string())
    data["_source_file"] = pa.array([f"{source}/{entity}/{source_file}"] * n, pa.string())
    data["_source_row"] = pa.array(range(1, n + 1), pa.int64())
    data["_source_line"] = pa.array(range(2, n + 2), pa.int64())
    data["_ingested_at"] = pa.array([ingested or datetime(2026, 1, 1, 1)] * n, pa.timestamp("us"))
    data["_format"] = pa.array([fmt] * n, pa.string())
    raw_dir = Path(warehouse) / raw_table(source, entity)
    raw_dir.mkdir(parents=True, exist_ok=True)
    raw_file = raw_dir / f"{batch_id}.parquet"
    pq.write_table(pa.table(data), raw_file)
    return stage_raw_file(raw_file, warehouse=warehouse, source=source, entity=entity, fmt=fmt, batch_id=batch_id,
                          agency_codes=AGENCIES, pseudonym_key=KEY)


def dossier(i: int, **kw) -> dict:
    """A valid dossier row of the flat export, numbered ``i``."""
    base = {"dossier_id": f"H19.26293-251103-{i:05d}", "procedure_code": f"1.00{1000 + i % 40:04d}",
            "agency_code": "H19.26293", "status": "4", "received_at": "03/11/2025 08:57:00",
            "due_at": "10/11/2025 17:00:00", "updated_at": f"05/11/2025 {8 + i % 9:02d}:{i % 60:02d}:00",
            "applicant_name": "Nguyễn Văn An", "applicant_phone": "0912345678"}
    base.update(kw)
    return base
