"""Extractor for the one-stop system's database replica (sources.md section 3); no Prefect here.

SQLAlchemy Core with bound parameters; the table is reflected, so only names come from settings. One
read-only transaction per pull (PostgreSQL: ``REPEATABLE READ, READ ONLY``, so the whole window is one consistent
snapshot and rows updated meanwhile can neither shift nor repeat); rows stream through a server-side cursor in
chunks (``stream_results`` + ``yield_per``). Incremental on ``NgayCapNhat``: ``from <= NgayCapNhat < to``.

Rows come out as dicts keyed by the column names of ``transforms/mappings/onestop_sql.yaml`` (whatever the real
column is called), values as text: timestamps ``YYYY-MM-DD HH:MM:SS``, booleans ``true``/``false``, numbers in
decimal, NULL kept as None; ready for ``records_to_raw_batch(..., fmt="onestop_sql")``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
import yaml
from pydantic import BaseModel, Field, field_validator
from sqlalchemy.pool import NullPool

from transforms.pull.http import PullError
from transforms.pull.window import LOCAL_TZ, Window

MAPPING_FILE = Path(__file__).resolve().parent.parent / "mappings" / "onestop_sql.yaml"
# canonical fields the pull cannot do without (the rest may be absent in another vendor's schema: NULL then)
REQUIRED = ("dossier_id", "procedure_code", "status", "updated_at")


@lru_cache(maxsize=1)
def reference_mapping() -> tuple[str, dict[str, str]]:
    """(table, canonical -> column) of the reference schema, from the mapping file."""
    doc = yaml.safe_load(MAPPING_FILE.read_text(encoding="utf-8"))
    return doc.get("table", "HoSos"), dict(doc["entities"]["dossiers"])


class OneStopSqlSettings(BaseModel):
    """Where the dossiers live in the replica: table, schema, column names (canonical -> real, overriding only the
    names given) and chunk size. Built by the caller from the settings object it was given (``from_settings``:
    env ``TTHC_ONE_STOP_DB_TABLE``, ``TTHC_ONE_STOP_DB_SCHEMA``, ``TTHC_ONE_STOP_DB_COLUMNS`` (JSON),
    ``TTHC_ONE_STOP_DB_CHUNK_ROWS`` or the TOML file; the URL itself is ``TTHC_ONE_STOP_DB_URL``); this module never
    reads the settings itself. ``OneStopSqlSettings()`` is the reference schema."""

    table: str = Field(default_factory=lambda: reference_mapping()[0])
    db_schema: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    chunk_rows: int = 5000

    @classmethod
    def from_settings(cls, s) -> OneStopSqlSettings:
        """From the project's settings object (``tthc.settings.Settings``), passed in by the flow or the CLI."""
        values = {"db_schema": s.one_stop_db_schema, "columns": s.one_stop_db_columns,
                  "chunk_rows": s.one_stop_db_chunk_rows}
        if s.one_stop_db_table:
            values["table"] = s.one_stop_db_table
        return cls(**values)

    @field_validator("columns", mode="before")
    @classmethod
    def _json(cls, v):
        if isinstance(v, str):
            return json.loads(v) if v.strip() else {}
        return v

    def column_map(self) -> dict[str, str]:
        """canonical -> real column name."""
        base = dict(reference_mapping()[1])
        unknown = set(self.columns) - set(base)
        if unknown:
            raise ValueError(f"TTHC_ONE_STOP_DB_COLUMNS names unknown canonical fields: {sorted(unknown)}; "
                             f"known: {sorted(base)}")
        base.update(self.columns)
        return base


def to_text(value: object) -> str | None:
    """A native SQL value as the text raw keeps."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(LOCAL_TZ).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return str(int(value)) if value == value.to_integral_value() else format(value, "f")
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _begin_read_only(conn: sa.Connection) -> None:
    name = conn.dialect.name
    if name == "postgresql":
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    elif name in ("mysql", "mariadb"):
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    elif name == "sqlite":
        conn.exec_driver_sql("PRAGMA query_only = ON")


def build_query(table: sa.Table, columns: dict[str, str], window: Window) -> sa.Select:
    """SELECT the mapped columns (labelled with the reference names) of rows updated in the window."""
    ref = reference_mapping()[1]
    missing = [c for c in REQUIRED if columns[c] not in table.c]
    if missing:
        raise PullError(
            f"one_stop/dossiers: table {table.fullname!r} lacks the column(s) "
            f"{', '.join(f'{columns[c]} ({c})' for c in missing)}; set TTHC_ONE_STOP_DB_COLUMNS to map them",
            source="one_stop", entity="dossiers")
    cols = []
    for canonical, real in columns.items():
        label = ref[canonical]
        cols.append(table.c[real].label(label) if real in table.c else sa.null().label(label))
    updated = table.c[columns["updated_at"]]
    return (sa.select(*cols)
            .where(updated >= window.window_from, updated < window.window_to)
            .order_by(updated, table.c[columns["dossier_id"]]))


def pull_sql_dossiers(db_url: str | None, window_from: datetime, window_to: datetime, *,
                      config: OneStopSqlSettings | None = None, chunk_rows: int | None = None,
                      engine: sa.Engine | None = None) -> Iterator[list[dict]]:
    """Yield the dossiers updated in ``[window_from, window_to)`` in chunks of dicts (text values). ``config``: where
    the dossiers are (``OneStopSqlSettings.from_settings(settings)``); without it, the reference schema."""
    window = Window(window_from, window_to)
    config = config or OneStopSqlSettings()
    chunk_rows = chunk_rows or config.chunk_rows
    columns = config.column_map()
    own_engine = engine is None
    if engine is None:
        if not db_url:
            raise PullError("one_stop/dossiers: no database URL; set TTHC_ONE_STOP_DB_URL",
                            source="one_stop", entity="dossiers")
        engine = sa.create_engine(db_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            try:
                with conn.begin():
                    _begin_read_only(conn)
                    try:
                        table = sa.Table(config.table, sa.MetaData(), schema=config.db_schema,
                                         autoload_with=conn)
                    except sa.exc.NoSuchTableError as exc:
                        where = f"{config.db_schema}.{config.table}" if config.db_schema else config.table
                        raise PullError(f"one_stop/dossiers: table {where!r} not found in the replica; set "
                                        f"TTHC_ONE_STOP_DB_TABLE / TTHC_ONE_STOP_DB_SCHEMA",
                                        source="one_stop", entity="dossiers") from exc
                    stmt = build_query(table, columns, window)
                    result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(stmt)
                    keys = list(result.keys())
                    for part in result.partitions():
                        yield [{k: to_text(v) for k, v in zip(keys, row)} for row in part]
            finally:
                if conn.dialect.name == "sqlite" and not own_engine:
                    conn.exec_driver_sql("PRAGMA query_only = OFF")
    finally:
        if own_engine:
            engine.dispose()
