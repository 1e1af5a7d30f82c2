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
from warehouse.store import PARQUET_GLOB, table_files, table_glob

EXAMPLES = 5
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


def _domain(exp: dict, base: str) -> str:
    k = exp["kwargs"]
    if "row_condition" in k and exp["type"] != "expect_column_values_to_not_be_null":
        return f"({base}) AND {rules.condition_sql(k['row_condition'])}"
    return base


def _key_expr(key: list[str], types: dict) -> str:
    cols = [c for c in key if c in types]
    if not cols:
        return "NULL"
    return "concat_ws('|', " + ", ".join(f"coalesce(CAST({rules.q(c)} AS VARCHAR), '(empty)')" for c in cols) + ")"


UNIQUE = ("expect_compound_columns_to_be_unique", "expect_column_values_to_be_unique")


def _unique_cols(exp: dict) -> str:
    k = exp["kwargs"]
    return ", ".join(rules.q(c) for c in k.get("column_list") or [k["column"]])


def _ex(r) -> str:
    ident, row, *f = r
    return f"{ident} (row {row + 1}" + (f" of {_file_label(Path(f[0]))})" if f else ")")


def _res(exp, ok, bad, dom, examples, observed, pct=None) -> dict:
    if pct is None:
        pct = 100.0 * bad / dom if dom else 0.0
    return {"exp": exp, "success": bool(ok), "unexpected_count": int(bad), "element_count": int(dom),
            "unexpected_percent": float(pct), "examples": examples, "observed": observed}


def evaluate(con, files: list[Path], suite: dict, warehouse: Path | None) -> tuple[list[dict], dict]:
    """Every expectation of ``suite`` on ``files`` (one table), exactly. Returns (results, profile)."""
    types = {f.name: str(f.type) for f in pq.read_schema(files[0])}
    src = _source(files)
    ref = _row_ref(files)
    key = _key_expr(suite["meta"]["key"], types)
    out: list[dict] = []
    pending: list[tuple[dict, str | None, str | None]] = []      # (expectation, domain SQL, bad SQL)
    bad_type = {e["kwargs"]["column"] for e in suite["expectations"]
                if e["type"] == "expect_column_values_to_be_of_type" and e["kwargs"]["column"] in types
                and not rules.arrow_type_ok(types[e["kwargs"]["column"]], e["kwargs"]["type_"])}
    for exp in suite["expectations"]:
        t, k = exp["type"], exp["kwargs"]
        if t == "expect_column_to_exist":
            ok = k["column"] in types
            out.append(_res(exp, ok, 0 if ok else 1, 1, [], {"present": ok}))
            continue
        if t == "unexpected_rows_expectation":
            cond = exp["meta"]["where"]
            needed = set(re.findall(r"[a-z_][a-z0-9_]*", cond)) & set(
                c["name"] for c in suite["meta"]["columns"])
            if needed - set(types) or needed & bad_type:
                continue   # reported by column_present / column_type
            pending.append((exp, "TRUE", cond.replace("{batch}", src)))
            continue
        cols = rules.expectation_columns(exp)
        if any(c not in types for c in cols):
            continue
        if t == "expect_column_values_to_be_of_type":
            ok = rules.arrow_type_ok(types[k["column"]], k["type_"])
            out.append(_res(exp, ok, 0 if ok else 1, 1, [], {"observed_type": types[k["column"]],
                                                             "expected_type": k["type_"]}))
            continue
        if set(cols) & bad_type:
            continue
        if t == "expect_table_row_count_to_be_between" or t in UNIQUE:
            pending.append((exp, None, None))
            continue
        vs = None
        if exp["meta"].get("value_set_from"):
            ref_table, ref_col = exp["meta"]["value_set_from"].split(".")
            if warehouse is None or not table_files(warehouse, ref_table):
                out.append(_res(exp, True, 0, 0, [], {"skipped": f"no {ref_table} published yet"}))
                continue
            vs = [r[0] for r in con.execute(
                f"SELECT DISTINCT {rules.q(ref_col)} FROM read_parquet({rules.lit(table_glob(warehouse, ref_table))})"
                f" WHERE {rules.q(ref_col)} IS NOT NULL").fetchall()]
        rs = rules.rule_sql(exp, vs)
        if rs is not None:
            pending.append((exp, _domain(exp, rs.domain), rs.bad))
    sel = ["count(*) AS n"]
    for i, (exp, dom, bad) in enumerate(pending):
        if dom is not None:
            sel.append(f"count_if({dom}) AS d{i}, count_if(({dom}) AND ({bad})) AS u{i}")
    cur = con.execute(f"SELECT {', '.join(sel)} FROM {src}")
    row = dict(zip([d[0] for d in cur.description], cur.fetchall()[0]))
    n = row["n"]
    for i, (exp, dom, bad) in enumerate(pending):
        t, k = exp["type"], exp["kwargs"]
        if t == "expect_table_row_count_to_be_between":
            ok = (k.get("min_value") is None or n >= k["min_value"]) and \
                 (k.get("max_value") is None or n <= k["max_value"])
            out.append(_res(exp, ok, 0 if ok else 1, 1, [], {"row_count": n}))
        elif t in UNIQUE:
            kc = _unique_cols(exp)
            dup = con.execute(f"SELECT coalesce(sum(c), 0), count(*) FROM (SELECT count(*) c FROM {src} "
                              f"GROUP BY {kc} HAVING count(*) > 1)").fetchall()[0]
            ex = []
            if dup[0]:
                ex = [_ex(r) for r in con.execute(
                    f"SELECT {key}, {ref} FROM {src} WHERE ({kc}) IN (SELECT ({kc}) FROM {src} "
                    f"GROUP BY {kc} HAVING count(*) > 1) ORDER BY {ROWNUM} LIMIT {EXAMPLES}").fetchall()]
            out.append(_res(exp, dup[0] == 0, int(dup[0]), n, ex, {"duplicate_keys": int(dup[1])}))
        else:
            d, u = row[f"d{i}"], row[f"u{i}"]
            mostly = k.get("mostly", 1.0)
            ok = u == 0 if mostly >= 1 else (d == 0 or (d - u) / d >= mostly)
            ex = []
            if u:
                ex = [_ex(r) for r in con.execute(
                    f"SELECT {key}, {ref} FROM {src} WHERE ({dom}) AND ({bad}) "
                    f"ORDER BY {ROWNUM} LIMIT {EXAMPLES}").fetchall()]
            out.append(_res(exp, ok, int(u), int(d), ex, {"mostly": mostly} if mostly < 1 else {}))
    return out, {"rows": n, "types": types}


def _gx_sample(con, files: list[Path], suite: dict, types: dict, results: list[dict], n: int):
    """The rows GX validates: ``n`` random rows plus up to BAD_ROWS_PER_RULE failing rows per failed rule."""
    from transforms.quality import gx_runner

    exps = [e for e in gx_runner.gx_expectations(suite) if all(c in types for c in rules.expectation_columns(e))]
    need = {c for e in exps for c in rules.expectation_columns(e)}
    cols = [c for c in types if c in need]
    src = _source(files)
    if len(files) > 1:   # row numbers restart in every file: sample on (file, row)
        row_ref = f"({ROWNUM}, filename)"
    else:
        row_ref = ROWNUM
    picks = [f"(SELECT {row_ref} FROM {src} USING SAMPLE reservoir({int(n)} ROWS) REPEATABLE (7))"]
    for r in results:
        e = r["exp"]
        if r["success"] or e["meta"].get("engine", "gx") != "gx":
            continue
        if e["type"] in UNIQUE:
            kc = _unique_cols(e)
            picks.append(f"(SELECT {row_ref} FROM {src} WHERE ({kc}) IN (SELECT ({kc}) FROM {src} GROUP BY {kc} "
                         f"HAVING count(*) > 1) LIMIT {gx_runner.BAD_ROWS_PER_RULE})")
        else:
            rs = rules.rule_sql(e)
            if rs is not None:
                picks.append(f"(SELECT {row_ref} FROM {src} WHERE ({_domain(e, rs.domain)}) AND ({rs.bad}) "
                             f"LIMIT {gx_runner.BAD_ROWS_PER_RULE})")
    sel = ", ".join(rules.q(c) for c in cols) or ROWNUM
    df = con.sql(f"SELECT {sel} FROM {src} WHERE {row_ref} IN ({' UNION '.join(picks)})").to_arrow_table().to_pandas()
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
