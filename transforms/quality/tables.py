"""Contracts of the rebuilt tables (core_*, mart_*): validate a Parquet file before it is swapped in.

``validate_table(path, table)`` runs ``expectations/suites/<table>.json`` on one file, with the design of the
staged-batch gate (gate.check_batch):
1. every expectation exactly, in DuckDB (one aggregate scan for the row rules, one GROUP BY for the key, the
   ``unexpected_rows_expectation`` identities as ``count_if`` of their condition, look-ups of another table's
   published file for ``value_set_from`` rules) -> the counts the decision uses;
2. a GX checkpoint on a narrow bounded sample (random rows + the rows DuckDB found breaking a rule, only the columns
   the GX rules read) -> Data Docs and a cross-check stored under ``observed.gx_sample``;
and records one ``dq_results`` row per expectation when a ledger is given.

``validator(table)`` returns the ``validate`` hook of ``warehouse.store.write_table``: it raises
``ContractViolation`` (table, rule, count, examples) when a critical expectation fails, so the new file is deleted
and the previous table stays published. Rebuilt tables have no ``_source_row`` of their own: examples are the
row's key values and its 1-based row number in the file.

Prefect-free; GX is imported only when a sample is validated.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq

from transforms.quality import rules
from transforms.quality.model import GateResult
from warehouse.store import PARQUET_GLOB

ROWNUM = "file_row_number"     # DuckDB's read_parquet(file_row_number=true) column (0-based)


class ContractViolation(Exception):
    """A rebuilt table broke a critical expectation of its contract; nothing was published."""

    def __init__(self, result: GateResult):
        self.result = result
        self.table = result.table
        self.failures = result.criticals
        parts = [r.message for r in self.failures]
        super().__init__(f"{result.table}: contract violated, table not published ({len(parts)} critical "
                         f"rule(s) failed): " + "; ".join(parts))


def _files(path) -> list[Path]:
    """A file, a list of files, or a table folder (its published files) -> the files validated together."""
    if isinstance(path, (list, tuple)):
        return [Path(p) for p in path]
    path = Path(path)
    if path.is_dir():
        return sorted(path.glob(PARQUET_GLOB))
    return [path]


def _source(files: list[Path]) -> str:
    if len(files) == 1:
        return f"read_parquet({rules.lit(str(files[0]))}, file_row_number=true)"
    lst = "[" + ", ".join(rules.lit(str(f)) for f in files) + "]"
    return f"read_parquet({lst}, file_row_number=true, filename=true, union_by_name=true)"


def _row_ref(files: list[Path]) -> str:
    return ROWNUM if len(files) == 1 else f"{ROWNUM}, filename"


def _file_label(path: Path) -> str:
    """``.data.1a2b3c4d.tmp`` (written aside by warehouse.store) -> ``data.parquet``, the name it is published as."""
    m = re.match(r"^\.(.+)\.[0-9a-f]{8}\.tmp$", path.name)
    return f"{m.group(1)}.parquet" if m else path.name


def _key_expr(key: list[str], types: dict) -> str:
    cols = [c for c in key if c in types]
    if not cols:
        return "NULL"
    return "concat_ws('|', " + ", ".join(f"coalesce(CAST({rules.q(c)} AS VARCHAR), '(empty)')" for c in cols) + ")"


def _ex(r) -> str:
    ident, row, *f = r
    return f"{ident} (row {row + 1}" + (f" of {_file_label(Path(f[0]))})" if f else ")")


def evaluate(con, files: list[Path], suite: dict, warehouse: Path | None) -> tuple[list[dict], dict]:
    """Every expectation of ``suite`` on ``files`` (one table), exactly. Returns (results, profile)."""
    types = {f.name: str(f.type) for f in pq.read_schema(files[0])}
    source = rules.Source(sql=_source(files), types=types, key=_key_expr(suite["meta"]["key"], types),
                          locate=_row_ref(files), order=ROWNUM, example=_ex, missing_ref="published")
    out, row = rules.evaluate_suite(con, source, suite, warehouse)
    return out, {"rows": row["n"], "types": types}


def _gx_sample(con, files: list[Path], suite: dict, types: dict, results: list[dict], n: int):
    """The rows GX validates: ``n`` random rows plus up to BAD_ROWS_PER_RULE failing rows per failed rule."""
    from transforms.quality import gx_runner

    exps = [e for e in gx_runner.gx_expectations(suite) if all(c in types for c in rules.expectation_columns(e))]
    need = {c for e in exps for c in rules.expectation_columns(e)}
    cols = [c for c in types if c in need]
    src = _source(files)
    # row numbers restart in every file: with several files, sample on (file, row)
    row_ref = f"({ROWNUM}, filename)" if len(files) > 1 else ROWNUM
    picks = rules.sample_rows_sql(src, row_ref, n, results, gx_runner.BAD_ROWS_PER_RULE)
    sel = ", ".join(rules.q(c) for c in cols) or ROWNUM
    df = con.sql(f"SELECT {sel} FROM {src} WHERE {row_ref} IN ({picks})").to_arrow_table().to_pandas()
    return gx_runner, df


def _connect(settings=None):
    import duckdb

    return duckdb.connect(config={"threads": 2, "memory_limit": getattr(settings, "dq_memory_limit", None) or "1GB",
                                  "preserve_insertion_order": False})


def validate_table(path: Path | list[Path], table: str, *, ledger=None, run_id=None, warehouse: Path | None = None,
                   settings=None, gx_sample_rows: int | None = None) -> GateResult:
    """Run the contract of ``table`` on the Parquet file ``path``; record the results in ``ledger.dq_results``.

    ``path`` may also be a list of files or a table folder, validated together as one table (a partitioned table:
    the key must be unique across its files); pass ``warehouse`` then.

    ``warehouse`` (default: the folder above the table's folder) is where ``value_set_from`` look-ups read the
    published reference tables (core_procedures, core_agencies). ``gx_sample_rows`` (default: settings'
    ``dq_gx_sample_rows``, else 5,000) bounds the GX checkpoint's random sample; 0 skips GX.
    """
    from transforms.quality.gate import attach_gx, check_result, ledger_rows

    files = _files(path)
    missing = [f for f in files if not f.exists()]
    if missing or not files:
        raise FileNotFoundError(f"{table}: file to validate not found: {missing[0] if missing else path}")
    suite = rules.load_suite(table)
    if warehouse is None:
        warehouse = files[0].parent.parent
    if gx_sample_rows is None:
        gx_sample_rows = getattr(settings, "dq_gx_sample_rows", None)
        gx_sample_rows = 5_000 if gx_sample_rows is None else int(gx_sample_rows)
    fname = _file_label(files[0]) if len(files) == 1 else f"{len(files)} files"
    batch_id = f"rebuild-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}"
    con = _connect(settings)
    t0 = time.perf_counter()
    gx_seconds = 0.0
    try:
        raw, profile = evaluate(con, files, suite, Path(warehouse))
        t1 = time.perf_counter()
        results = [check_result(r, table, fname, batch_id) for r in raw]
        if gx_sample_rows > 0 and profile["rows"] > 0:
            gx_runner, df = _gx_sample(con, files, suite, profile["types"], raw, gx_sample_rows)
            gx_seconds = attach_gx(gx_runner, df, table, batch_id, suite, results)
    finally:
        con.close()
    gr = GateResult(table=table, batch_id=batch_id, source_file=fname, rows=profile["rows"], results=results,
                    gx_seconds=gx_seconds, duckdb_seconds=t1 - t0)
    if ledger is not None:
        ledger.record_dq(ledger_rows(gr, suite["meta"], run_id))
    return gr


def validator(table: str, ledger=None, run_id=None, **kwargs) -> Callable[[Path], None]:
    """The ``validate`` hook for ``warehouse.store.write_table(wh, table, data, validate=validator(table, ...))``.

    Validates the file written aside; raises ``ContractViolation`` on a critical failure (write_table then deletes
    the file and the previous table stays). Warnings pass and are recorded. ``kwargs`` go to ``validate_table``
    (``warehouse``, ``settings``, ``gx_sample_rows``). The last result is kept on ``hook.last``.
    """
    def hook(path: Path) -> None:
        gr = validate_table(path, table, ledger=ledger, run_id=run_id, **kwargs)
        hook.last = gr
        if not gr.passed:
            raise ContractViolation(gr)

    hook.last = None
    hook.table = table
    return hook
