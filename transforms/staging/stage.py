"""Staging one batch: from its complete raw file (``stage_raw_file``) or chunk by chunk while its raw file is
written (``ChunkStager``); both write the staged file, the quarantine file when a row broke a rule, and count both
sides."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from transforms.contracts import ENTITY_SOURCE, contract, quarantine_table, stg_table
from transforms.staging.formats import _lit, _q, setup_connection
from transforms.staging.rules import STG_CONSTANT, STG_LINEAGE, staging_select
from transforms.staging.text import (
    HAS_CONTROL,
    TRIMMED,
    control_columns,
    mark_control_characters,
    raw_columns,
    trim_for_staging,
)
from transforms.staging.writers import staged_writer
from warehouse import store


@dataclass
class StageResult:
    batch_id: str
    rows_raw: int
    rows_staged: int
    rows_quarantined: int
    rules: dict[str, int]
    min_updated_at: object = None
    max_updated_at: object = None
    seconds: float = 0.0


def x_marked_columns(con: duckdb.DuckDBPyConnection, raw_relation: str, entity: str) -> set[str]:
    """Yes/no columns that mark yes with 'x' in this file: there an empty cell means no (sources.md)."""
    c = contract(stg_table(ENTITY_SOURCE[entity], entity))
    bools = [col.name for col in c.columns if col.type == "bool"]
    if not bools:
        return set()
    exprs = ", ".join(f"bool_or(lower(trim({_q(b)})) = 'x') AS {_q(b)}" for b in bools)
    row = con.execute(f"SELECT {exprs} FROM {raw_relation}").fetchone()
    return {b for b, flag in zip(bools, row, strict=True) if flag}


def stage_raw_file(raw_file: Path, *, warehouse: Path, source: str, entity: str, fmt: str, batch_id: str,
                   agency_codes: list[str], pseudonym_key: bytes, threads: int | None = None,
                   memory_limit: str = "1GB") -> StageResult:
    """Stage one raw batch file into staging + quarantine, atomically, and count both sides."""
    t0 = time.perf_counter()
    con = duckdb.connect()
    try:
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        con.execute(f"SET memory_limit = '{memory_limit}'")
        con.execute("SET preserve_insertion_order = false")
        setup_connection(con, pseudonym_key)
        con.execute("CREATE TEMP TABLE agencies (agency_code VARCHAR)")
        if agency_codes:
            con.executemany("INSERT INTO agencies VALUES (?)", [[a] for a in agency_codes])
        con.execute(f"CREATE VIEW raw AS SELECT * FROM read_parquet({_lit(str(raw_file))})")
        xcols = x_marked_columns(con, "raw", entity)
        staged_sql, _ = staging_select(source, entity, fmt, "raw", "agencies", xcols)
        stg_path = store.copy_query_to_table(con, staged_sql, warehouse, stg_table(source, entity), name=batch_id)
        _, quarantine_sql = staging_select(source, entity, fmt, "raw", "agencies", xcols,
                                           staged_relation=f"read_parquet({_lit(str(stg_path))})")
        q_path = store.copy_query_to_table(con, quarantine_sql, warehouse, quarantine_table(source, entity),
                                           name=batch_id)
        rows_raw = con.execute("SELECT count(*) FROM raw").fetchone()[0]
        rows_staged = con.execute(f"SELECT count(*) FROM read_parquet({_lit(str(stg_path))})").fetchone()[0]
        rules = dict(con.execute(f"SELECT _rule, count(*) FROM read_parquet({_lit(str(q_path))}) GROUP BY 1")
                     .fetchall())
        rows_q = sum(rules.values())
        if rows_q == 0:
            q_path.unlink(missing_ok=True)  # no empty quarantine files
        ts_col = "rated_at" if entity == "ratings" else "updated_at"
        lo, hi = con.execute(f"SELECT min({ts_col}), max({ts_col}) FROM read_parquet({_lit(str(stg_path))})"
                             ).fetchone()
    finally:
        con.close()
    return StageResult(batch_id, rows_raw, rows_staged, rows_q, rules, lo, hi, time.perf_counter() - t0)


class ChunkStager:
    """Stages a batch chunk by chunk while its raw file is being written: one pass over the data.

    Each chunk (raw text + lineage, as an Arrow table) is typed by the same SQL as ``stage_raw_file``; passing rows
    go to the staging file, the others to quarantine. Whether a yes/no column marks yes with 'x' is a property of
    the whole file; it is read from the first chunk, and if a later chunk shows 'x' in another column the batch is
    staged again from its complete raw file (``needs_restage``), so the file-level rule always holds.
    """

    def __init__(self, *, warehouse: Path, source: str, entity: str, fmt: str, batch_id: str,
                 agency_codes: list[str], pseudonym_key: bytes, memory_limit: str = "1GB", threads: int | None = None):
        self.warehouse, self.source, self.entity, self.fmt, self.batch_id = warehouse, source, entity, fmt, batch_id
        self.con = duckdb.connect()
        self.con.execute(f"SET memory_limit = '{memory_limit}'")
        if threads:  # default: DuckDB's own (one per core); one thread was cheaper only on a busy machine
            self.con.execute(f"SET threads = {int(threads)}")
        setup_connection(self.con, pseudonym_key)
        self.con.execute("CREATE TEMP TABLE agencies (agency_code VARCHAR)")
        if agency_codes:
            self.con.executemany("INSERT INTO agencies VALUES (?)", [[a] for a in agency_codes])
        c = contract(stg_table(source, entity))
        self.bools = [col.name for col in c.columns if col.type == "bool"]
        # the raw columns the staging SQL reads, which prepare() trims (the SQL does not depend on x_cols here)
        sql = " ".join(staging_select(source, entity, fmt, "raw_chunk", "agencies", set(), pretrimmed=True))
        self.raw_cols = [rc for rc in raw_columns(entity) if _q(TRIMMED + rc) in sql]
        self.control_cols = control_columns(entity, fmt)
        self.x_cols: set[str] | None = None
        self.needs_restage = False
        self.sql: dict[bool, tuple[str, str]] = {}
        self.stg_writer: store.BatchFileWriter | None = None
        self.q_writer: store.BatchFileWriter | None = None
        self.rows_raw = self.rows_staged = 0
        self.rules: dict[str, int] = {}
        self.ts_col = "rated_at" if entity == "ratings" else "updated_at"
        self.lo = self.hi = None
        self.t0 = time.perf_counter()

    def _x_in(self, chunk) -> set[str]:
        import pyarrow.compute as pc

        out = set()
        for b in self.bools:
            col = chunk.column(b)
            if col.null_count < len(col) and pc.any(pc.equal(pc.utf8_lower(pc.utf8_trim_whitespace(col)), "x")
                                                    ).as_py():
                out.add(b)
        return out

    def _sql(self, xs: set[str]) -> None:
        """(staged, quarantine) SQL for a clean chunk and for one holding a control character (``__cc``)."""
        self.sql = {}
        for damaged in (False, True):
            staged, _ = staging_select(self.source, self.entity, self.fmt, "raw_chunk", "agencies", xs,
                                       pretrimmed=True, constant_lineage=False, control_characters=damaged)
            _, quarantined = staging_select(self.source, self.entity, self.fmt, "raw_chunk", "agencies", xs,
                                            staged_relation="staged_rows", pretrimmed=True,
                                            control_characters=damaged)
            self.sql[damaged] = (staged, quarantined)

    def _staged_writer(self, schema) -> store.BatchFileWriter:
        return staged_writer(self.warehouse, self.source, self.entity, self.batch_id, schema)

    @staticmethod
    def _with_constants(staged, chunk):
        """Staged rows (``_source_row`` last) + the batch-constant lineage, in STG_LINEAGE order. ingest_raw gives
        every row of a batch the same ``_batch_id, _source_file, _ingested_at, _format`` (``_with_lineage``)."""
        import pyarrow as pa

        n = staged.num_rows
        for name in STG_CONSTANT:
            col = chunk.column(name)
            value = col[0] if len(col) else pa.scalar(None, col.type)
            staged = staged.append_column(name, pa.repeat(value, n) if n else pa.array([], col.type))
        return staged.select([f for f in staged.column_names if f not in STG_LINEAGE] + STG_LINEAGE)

    def prepare(self, chunk):
        """The chunk as the staging SQL reads it (raw columns plus their trimmed text and the control-character
        flag). Thread-safe, so the ingest prepares the next chunk on its reader thread while DuckDB stages this
        one."""
        return mark_control_characters(trim_for_staging(chunk, self.raw_cols), self.control_cols)

    def add(self, chunk, write=None, prepared=None) -> None:
        """Stage one chunk; ``write(writer, table)`` does the Parquet writes (the ingest hands them to its writer
        thread, so encoding overlaps with typing the next chunk); by default they happen here. ``prepared``:
        ``self.prepare(chunk)`` when the caller already has it."""
        write = write or (lambda w, t: w.write(t))

        xs = self._x_in(chunk)
        if self.x_cols is None:
            self.x_cols = xs
            self._sql(xs)
        elif not xs <= self.x_cols:
            self.needs_restage = True
        self.rows_raw += chunk.num_rows
        prepared = prepared if prepared is not None else self.prepare(chunk)
        staged_sql, quarantine_sql = self.sql[bool(prepared.num_rows) and prepared.column(HAS_CONTROL)[0].as_py()]
        self.con.register("raw_chunk", prepared)
        try:
            staged = self._with_constants(self.con.sql(staged_sql).to_arrow_table(), chunk)
            self._write_staged(staged, write)
            if staged.num_rows < chunk.num_rows:
                self._write_quarantined(staged, quarantine_sql, write)
        finally:
            self.con.unregister("raw_chunk")

    def _write_staged(self, staged, write) -> None:
        """Hand the chunk's staged rows to the staged file; keep the batch's range of ``updated_at``."""
        import pyarrow.compute as pc

        if self.stg_writer is None:
            self.stg_writer = self._staged_writer(staged.schema)
        write(self.stg_writer, staged)
        self.rows_staged += staged.num_rows
        if staged.num_rows:
            mm = pc.min_max(staged.column(self.ts_col))
            lo, hi = mm["min"].as_py(), mm["max"].as_py()
            self.lo = lo if self.lo is None or (lo is not None and lo < self.lo) else self.lo
            self.hi = hi if self.hi is None or (hi is not None and hi > self.hi) else self.hi

    def _write_quarantined(self, staged, quarantine_sql: str, write) -> None:
        """The chunk's rows missing from ``staged`` to the quarantine file, counted per rule."""
        import pyarrow.compute as pc

        self.con.register("staged_rows", staged.select(["_source_row"]))
        q = self.con.sql(quarantine_sql).to_arrow_table()
        self.con.unregister("staged_rows")
        if self.q_writer is None:
            self.q_writer = store.BatchFileWriter(self.warehouse, quarantine_table(self.source, self.entity),
                                                  self.batch_id, q.schema)
        write(self.q_writer, q)
        for r, n in zip(*pc.value_counts(q.column("_rule")).flatten(), strict=True):
            self.rules[r.as_py()] = self.rules.get(r.as_py(), 0) + n.as_py()

    def finish(self, empty_raw) -> StageResult:
        """Publish staging (and quarantine, when any) atomically; ``empty_raw``: a 0-row raw table for the schema."""
        if self.stg_writer is None:  # no rows at all: an empty staging file still records the batch
            if self.x_cols is None:
                self._sql(set())
            self.con.register("raw_chunk", self.prepare(empty_raw))
            schema = self._with_constants(self.con.sql(self.sql[False][0]).to_arrow_table(), empty_raw).schema
            self.con.unregister("raw_chunk")
            self.stg_writer = self._staged_writer(schema)
        self.stg_writer.close()
        if self.q_writer is not None:
            self.q_writer.close()
        self.con.close()
        rows_q = sum(self.rules.values())
        return StageResult(self.batch_id, self.rows_raw, self.rows_staged, rows_q, dict(self.rules), self.lo,
                           self.hi, time.perf_counter() - self.t0)

    def abort(self) -> None:
        for w in (self.stg_writer, self.q_writer):
            if w is not None:
                w.abort()
        self.con.close()
