"""The DuckDB session of a core build, the staged tables as core reads them (every contract column, typed) and the
core tables it writes."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from transforms.contracts import duckdb_type
from warehouse.store import copy_query_to_table, table_exists, table_glob

EXPECTATIONS = Path(__file__).resolve().parents[2] / "expectations" / "tables"

# entity -> the staged table core reads it from
STAGED = {
    "dossiers": "stg_one_stop__dossiers",
    "procedures": "stg_dvc_portal__procedures",
    "payments": "stg_dvc_portal__payments",
    "ratings": "stg_dvc_portal__ratings",
    "feedback": "stg_dvc_portal__feedback",
    "e_certifications": "stg_dvc_portal__e_certifications",
}
LINEAGE = {"_batch_id": "VARCHAR", "_source_file": "VARCHAR", "_source_row": "BIGINT",
           "_ingested_at": "TIMESTAMP", "_format": "VARCHAR"}
# "the file ingested later wins" on an updated_at tie
LATER_INGEST = "_ingested_at DESC NULLS LAST, _batch_id DESC NULLS LAST, _source_row DESC NULLS LAST"


def duck(warehouse: Path | None = None, memory_limit: str | None = None, threads: int | None = None):
    """A DuckDB connection with bounded memory (spills to ``<warehouse>/.duckdb_tmp``)."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET memory_limit='{memory_limit or os.environ.get('TTHC_DUCKDB_MEMORY', '1GB')}'")
    con.execute(f"SET threads={threads or min(4, os.cpu_count() or 1)}")
    con.execute("SET preserve_insertion_order=false")
    con.execute("SET enable_progress_bar=false")
    if warehouse is not None:
        tmp = Path(warehouse) / ".duckdb_tmp"
        con.execute(f"SET temp_directory='{tmp}'")
    return con


def staged_columns(table: str) -> dict[str, str]:
    """Column -> DuckDB type of a staged table (contract columns without dropped personal data + lineage)."""
    spec = yaml.safe_load((EXPECTATIONS / f"{table}.yaml").read_text(encoding="utf-8"))
    cols: dict[str, str] = {}
    for c in spec["columns"]:
        if c.get("pii") == "drop":
            continue
        if c.get("pii") == "pseudonym":
            cols[c.get("pseudonym", "applicant_pseudonym")] = "VARCHAR"
            continue
        cols[c["name"]] = duckdb_type(c["type"], c.get("codes"))
    cols.update(LINEAGE)
    return cols


def staged_relation(con, warehouse: Path, table: str, files: list[Path] | None = None,
                    types: dict[str, str] | None = None) -> str:
    """SQL for a staged table (or only its ``files``) with every contract column present and typed (missing ones
    as typed NULLs); ``types`` overrides the type of some columns (``dossier_enums``)."""
    cols = {c: (types or {}).get(c, t) for c, t in staged_columns(table).items()}
    if not table_exists(warehouse, table) or files == []:
        select = ", ".join(f"CAST(NULL AS {t}) AS {c}" for c, t in cols.items())
        return f"(SELECT {select} WHERE false)"
    where = f"'{table_glob(warehouse, table)}'" if files is None else repr([str(f) for f in files])
    source = f"read_parquet({where}, union_by_name=true)"
    present = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    select = ", ".join(f"CAST({c} AS {t}) AS {c}" if c in present else f"CAST(NULL AS {t}) AS {c}"
                       for c, t in cols.items())
    return f"(SELECT {select} FROM {source})"


def staged_relations(con, warehouse: Path) -> dict[str, str]:
    """entity -> ``staged_relation`` of its whole staged table."""
    return {entity: staged_relation(con, warehouse, table) for entity, table in STAGED.items()}


def latest_version_sql(staged: str, key: str, order: str = "updated_at DESC NULLS LAST") -> str:
    """The latest version of each record of ``staged`` by ``key`` (ties: the later ingest)."""
    return (f"SELECT * FROM {staged} WHERE {key} IS NOT NULL "
            f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY {order}, {LATER_INGEST}) = 1")


def write_table(con, warehouse: Path, table: str, sql: str, order_by: str | None) -> int:
    """Replace core table ``table`` with the rows of ``sql`` (sorted by ``order_by``); returns its row count."""
    copy_query_to_table(con, f"SELECT * FROM ({sql})" + (f" ORDER BY {order_by}" if order_by else ""),
                        warehouse, table)
    return count_rows(con, warehouse, table)


def count_rows(con, warehouse: Path, table: str) -> int:
    return con.execute(f"SELECT count(*) FROM read_parquet('{table_glob(warehouse, table)}')").fetchone()[0]
