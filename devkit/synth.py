"""Synthetic staged dossier batches (valid by default) for the gate's tests and bench; built in DuckDB."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

from warehouse.store import table_dir

DOSSIERS = "stg_one_stop__dossiers"


def batch_id_for(ingested: datetime, n: int) -> str:
    return f"b{ingested:%Y%m%dT%H%M%S}-{n:010x}"


def write_dossier_batch(warehouse: Path, rows: int, *, end: date, days: int = 1, agencies: int = 5,
                        ingested: datetime | None = None, fmt: str = "flat_export", seed: int = 1,
                        drop_columns: tuple[str, ...] = (), overrides: dict[str, str] | None = None,
                        source_file: str | None = None, agency_weights: dict[int, float] | None = None,
                        raw: bool = True) -> str:
    """Write ``rows`` valid staged dossiers updated over ``days`` days ending ``end``; return the batch id.

    ``overrides`` replaces a column's SQL expression (``i`` is the row ordinal) to craft a bad batch. With ``raw``
    the batch's raw file is written too (the staged values as text, the lineage), as ingest leaves it: the gate
    takes the raw text of the rows it sets aside from there."""
    import duckdb

    ingested = ingested or datetime.combine(end + timedelta(days=1), datetime.min.time()).replace(hour=1)
    bid = batch_id_for(ingested, seed)
    start = datetime.combine(end - timedelta(days=days - 1), datetime.min.time())
    secs = days * 86400 - 1
    ag = f"'H19.' || (26290 + (hash(i, {seed}) % {agencies}))::VARCHAR"
    exprs = {
        "dossier_id": f"{ag} || '-' || strftime(upd, '%y%m%d') || '-' || lpad(i::VARCHAR, 7, '0')",
        "procedure_code": "'1.00' || lpad((1000 + hash(i) % 40)::VARCHAR, 4, '0')",
        "procedure_name": "'Thủ tục ' || (hash(i) % 40)::VARCHAR",
        "field_code": "'F' || (hash(i) % 7)::VARCHAR",
        "field_name": "'Lĩnh vực ' || (hash(i) % 7)::VARCHAR",
        "agency_code": ag,
        "channel": "(1 + hash(i, 2) % 3)::BIGINT",
        "status": "(2 + hash(i, 3) % 9)::BIGINT",
        "submitted_at": "rec - INTERVAL 1 HOUR",
        "received_at": "rec",
        "due_at": "rec + INTERVAL 5 DAY",
        "finished_at": "CASE WHEN hash(i, 4) % 2 = 0 THEN rec + INTERVAL 3 DAY END",
        "returned_at": "CASE WHEN hash(i, 4) % 2 = 0 THEN rec + INTERVAL 4 DAY END",
        "supplement_count": "(hash(i, 5) % 2)::BIGINT",
        "supplement_requested_at": "CASE WHEN hash(i, 5) % 2 = 1 THEN rec + INTERVAL 1 DAY END",
        "supplement_received_at": "CASE WHEN hash(i, 5) % 2 = 1 THEN rec + INTERVAL 2 DAY END",
        "supplement_requests": "CAST(NULL AS STRUCT(requested_at TIMESTAMP, received_at TIMESTAMP)[])",
        "has_digitized_components": "hash(i, 6) % 3 = 0",
        "has_e_result": "hash(i, 7) % 2 = 0",
        "reused_digitized_data": "hash(i, 8) % 5 = 0",
        "online_payment": "CASE WHEN hash(i, 9) % 4 = 0 THEN (1 + hash(i, 10) % 2)::BIGINT END",
        "fee_vnd": "((hash(i, 11) % 5) * 10000)::BIGINT",
        "applicant_pseudonym": "md5(i::VARCHAR)",
        "updated_at": "upd",
        "_batch_id": f"'{bid}'",
        "_source_file": f"'{source_file or f'one_stop/dossiers/export_{end:%Y%m%d}.csv'}'",
        "_source_row": "i + 1",
        "_ingested_at": f"TIMESTAMP '{ingested:%Y-%m-%d %H:%M:%S}'",
        "_format": f"'{fmt}'",
    }
    exprs.update(overrides or {})
    cols = ", ".join(f"{v} AS \"{k}\"" for k, v in exprs.items() if k not in drop_columns)
    d = table_dir(warehouse, DOSSIERS)
    d.mkdir(parents=True, exist_ok=True)
    out = d / f"{bid}.parquet"
    con = duckdb.connect()
    try:
        con.execute(f"""COPY (
            WITH b AS (SELECT i, TIMESTAMP '{start:%Y-%m-%d %H:%M:%S}' + to_seconds((hash(i, {seed}, 99) % {secs})::BIGINT) AS upd
                       FROM range({rows}) t(i)),
                 c AS (SELECT *, upd - to_seconds((3600 * 24 * (hash(i, 12) % 20))::BIGINT) AS rec FROM b)
            SELECT {cols} FROM c ORDER BY i) TO '{out}' (FORMAT parquet, COMPRESSION zstd)""")
        if raw:
            _write_raw(con, warehouse, out, bid)
    finally:
        con.close()
    return bid


def _write_raw(con, warehouse: Path, staged: Path, bid: str) -> None:
    """The raw file of a synthetic staged batch: every raw column as text (null where staging has no such
    column), ``_extra`` and the lineage, the staged rows in order."""
    import pyarrow.parquet as pq

    from transforms.staging import raw_columns

    have = {f.name for f in pq.read_schema(staged)}
    cols = [f'CAST("{c}" AS VARCHAR) AS "{c}"' if c in have else f'CAST(NULL AS VARCHAR) AS "{c}"'
            for c in raw_columns("dossiers")]
    lineage = ['CAST(NULL AS VARCHAR) AS "_extra"'] + [
        f'"{c}"' if c in have else f'CAST(NULL AS VARCHAR) AS "{c}"'
        for c in ("_batch_id", "_source_file", "_source_row")] + [
        '"_source_row" + 1 AS "_source_line"' if "_source_row" in have else 'CAST(NULL AS BIGINT) AS "_source_line"'
    ] + [f'"{c}"' if c in have else f'CAST(NULL AS VARCHAR) AS "{c}"' for c in ("_ingested_at", "_format")]
    d = table_dir(warehouse, "raw_one_stop__dossiers")
    d.mkdir(parents=True, exist_ok=True)
    con.execute(f"COPY (SELECT {', '.join(cols + lineage)} FROM read_parquet('{staged}')) "
                f"TO '{d / f'{bid}.parquet'}' (FORMAT parquet)")
