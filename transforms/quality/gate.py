"""The publish gate: one call per staged batch, Prefect-free.

``check_batch`` runs, on ``<warehouse>/<table>/<batch_id>.parquet``:
1. the table's GX suite exactly, in one DuckDB scan (rules.py) -> the counts the gate decides on;
2. row problems hold rows: the rows breaking a critical row rule that failed are set aside to the batch's
   quarantine (setaside.py) and the suite runs again on what is left; each such rule becomes a warning;
3. file problems hold files: ``quarantined_share``, the rows staging and the gate set aside against the table's
   ``max_quarantined_share`` (critical above it, or when every row went; a warning below);
4. the batch-vs-history checks (history.py): schema drift, volume per agency, freshness, null-share jump;
5. a GX checkpoint on a narrow bounded sample (gx_runner.py) -> Data Docs and a cross-check;
and records one ledger row per check (``Ledger.record_dq``) and the batch's staged/quarantined counts.
``GateResult.passed`` is False iff a critical check failed; the flow then keeps this batch out of core and marts.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq

from transforms.calendar import yesterday
from transforms.quality import history, rules, setaside
from transforms.quality.model import CheckResult, GateResult
from warehouse.store import table_dir


def _as_of(settings, as_of: date | None) -> date:
    if as_of is not None:
        return as_of
    if settings is not None and getattr(settings, "as_of", None):
        return settings.as_of
    return yesterday()


def _connect(settings=None):
    import duckdb

    con = duckdb.connect(config={"threads": 2, "memory_limit": getattr(settings, "dq_memory_limit", None) or "1GB",
                                 "preserve_insertion_order": False})
    return con


def _message(table, source_file, rule, r: dict) -> str:
    e = r["exp"]
    where = f"{table}, file {source_file or '?'}"
    if r["success"]:
        return f"{where}: rule {rule} passed"
    t = e["type"]
    if t == "expect_column_to_exist":
        return f"{where}: rule {rule} failed: column {e['kwargs']['column']} is missing"
    if t == "expect_column_values_to_be_of_type":
        o = r["observed"]
        return f"{where}: rule {rule} failed: type is {o['observed_type']}, expected {o['expected_type']}"
    if t == "expect_table_row_count_to_be_between":
        return (f"{where}: rule {rule} failed: {r['observed']['row_count']} rows, expected between "
                f"{e['kwargs'].get('min_value')} and {e['kwargs'].get('max_value')}")
    ex = f"; e.g. {', '.join(r['examples'][:3])}" if r["examples"] else ""
    return (f"{where}: rule {rule} failed on {r['unexpected_count']:,} of {r['element_count']:,} rows "
            f"({r['unexpected_percent']:.2f}%){ex}")


def _gx_sample(con, path: Path, suite: dict, types: dict, failed: list[dict], id_column: str, n: int):
    from transforms.quality import gx_runner

    exps = [e for e in gx_runner.gx_expectations(suite)
            if all(c in types for c in rules.expectation_columns(e))]
    cols = {"_source_row", id_column} | {c for e in exps for c in rules.expectation_columns(e)}
    cols = [c for c in types if c in cols]
    src = f"read_parquet({rules.lit(str(path))})"
    picks = rules.sample_rows_sql(src, "_source_row", n, failed, gx_runner.BAD_ROWS_PER_RULE)
    sql = f"SELECT {', '.join(rules.q(c) for c in cols)} FROM {src} WHERE _source_row IN ({picks})"
    cur = con.cursor()
    try:
        df = cur.sql(sql).to_arrow_table().to_pandas()
    finally:
        cur.close()
    return gx_runner, df


def _validity(settings) -> dict | None:
    """agency -> (valid_from, valid_to) from the agencies list the settings name, read by the one agencies loader
    (any encoding and delimiter; the warehouse's last good list when that one is broken), when there is one."""
    from transforms.agencies import validity

    return validity(settings)


def check_result(r: dict, table: str, fname: str, batch_id: str = "") -> CheckResult:
    """One evaluated expectation (``rules.evaluate``) as the gate's result, with its plain-words message."""
    e = r["exp"]
    rule = e["meta"]["rule"]
    return CheckResult(
        name=rule, severity=e["meta"]["severity"], success=r["success"],
        unexpected_count=r["unexpected_count"], unexpected_percent=round(r["unexpected_percent"], 4),
        examples=r["examples"], message=_message(table, fname, rule, r), expectation_type=e["type"],
        element_count=r["element_count"],
        kind="batch_rule" if e["type"].startswith("expect_table") or e["type"] in (
            "expect_column_to_exist", "expect_column_values_to_be_of_type") else "row_rule",
        observed=r["observed"], table=table, batch_id=batch_id, source_file=fname)


def attach_gx(gx_runner, df, table: str, batch_id: str, suite: dict, results: list[CheckResult]) -> float:
    """Run the GX checkpoint on the sample and file its verdicts beside DuckDB's; returns GX's seconds."""
    g0 = time.perf_counter()
    gx = gx_runner.validate_sample(table, batch_id, suite, df)
    for cr in results:
        if cr.name in gx:
            cr.observed["gx_sample"] = {**gx[cr.name], "sample_rows": len(df)}
    return time.perf_counter() - g0


def check_batch(warehouse: Path, table: str, batch_id: str, *, ledger=None, run_id=None, settings=None,
                as_of: date | None = None) -> GateResult:
    warehouse = Path(warehouse)
    path = table_dir(warehouse, table) / f"{batch_id}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"staged batch not found: {path}")
    suite = rules.load_suite(table)
    meta = suite["meta"]
    id_column = meta["key"][0]
    th = history.Thresholds.from_settings(settings)
    day = _as_of(settings, as_of)
    con = _connect(settings)
    t0 = time.perf_counter()
    try:
        raw, profile = rules.evaluate(con, path, table, warehouse, id_column)
        source_file = _source_file(con, [path, *setaside.paths(warehouse, table, batch_id)])
        fname = Path(source_file).name if source_file else batch_id
        label = f"{table}, file {fname}"
        # rows breaking a failed critical row rule leave the batch (to its quarantine) before any verdict
        moved, final, no_raw = setaside.SetAside(), raw, None
        failures = setaside.critical_row_failures(raw)
        if failures:
            try:
                moved = setaside.set_aside(con, warehouse, table, batch_id, path, failures)
            except setaside.RawRowsMissing as exc:
                no_raw = str(exc)
            if moved.moved:
                final, profile = rules.evaluate(con, path, table, warehouse, id_column)
        results = _rule_results(raw, final, moved, no_raw, table, fname, label)
        results.append(quarantined_share(con, warehouse, table, batch_id, path, meta, fname, profile["rows"]))
        # history
        # updated_at later than the day after as_of does not count as fresh data (history.freshness)
        idx = history.batch_index(con, warehouse, table, newest_before=datetime.combine(day + timedelta(days=2),
                                                                                         datetime.min.time()))
        pos = next((i for i, b in enumerate(idx) if b["batch_id"] == batch_id), len(idx))
        earlier = idx[:pos]
        fmt = next((b["format"] for b in idx if b["batch_id"] == batch_id), None)
        prev = next((b for b in reversed(earlier) if b["format"] == fmt), None)
        prev_profile = None
        if prev is not None:
            prev_profile = _profile(con, prev["path"])
        results += history.schema_drift(prev["path"] if prev else None, path, prev_profile, profile, label)
        results += history.null_share_jump(prev_profile, profile, label, th, prev["batch_id"] if prev else None)
        if "updated_at" in profile["types"] and profile["rows"]:  # an empty batch has no format: row_count says it
            results += history.freshness(table, idx, batch_id, day, th, label)
        results += history.volume(con, table, path, earlier, profile, th, label, _validity(settings))
        t1 = time.perf_counter()
        # GX checkpoint on a narrow bounded sample of the batch as it now is (rows set aside are gone)
        gx_seconds = 0.0
        n_sample = getattr(settings, "dq_gx_sample_rows", None)
        n_sample = 5_000 if n_sample is None else int(n_sample)
        if n_sample > 0 and profile["rows"] > 0:
            failed = [r for r in final if not r["success"]]
            gx_runner, df = _gx_sample(con, path, suite, profile["types"], failed, id_column, n_sample)
            gx_seconds = attach_gx(gx_runner, df, table, batch_id, suite,
                                   [r for r in results if "set_aside" not in r.observed])
    finally:
        con.close()
    for cr in results:
        cr.table, cr.batch_id, cr.source_file = table, batch_id, fname
    gr = GateResult(table=table, batch_id=batch_id, source_file=fname, rows=profile["rows"], results=results,
                    gx_seconds=gx_seconds, duckdb_seconds=t1 - t0, set_aside=moved.as_dict())
    if ledger is not None:
        ledger.record_dq(ledger_rows(gr, meta, run_id))
        record_counts(ledger, warehouse, gr)
    return gr


def _source_file(con, paths: list[Path]) -> str | None:
    """The batch's file as the inbox named it: from the staged rows, else (every row set aside) the raw ones."""
    for p in paths:
        if p.exists() and "_source_file" in pq.read_schema(p).names:
            found = con.execute(f"SELECT any_value(_source_file) FROM read_parquet({rules.lit(str(p))})").fetchone()[0]
            if found:
                return found
    return None


def _rule_results(raw: list[dict], final: list[dict], moved: setaside.SetAside, no_raw: str | None, table: str,
                  fname: str, label: str) -> list[CheckResult]:
    """The suite's results on the batch as it is now; a rule whose breaking rows were set aside is reported as a
    warning with what it found on the batch as it came (the rows, the column, examples)."""
    after = {r["exp"]["meta"]["rule"]: r for r in final}
    out = []
    for r in raw:
        rule = r["exp"]["meta"]["rule"]
        n = moved.by_rule.get(rule, 0)
        if not n:
            cr = check_result(after.get(rule, r), table, fname)
            if no_raw and r in setaside.critical_row_failures(raw):
                cr.message += f"; {no_raw}: the batch is held"
            out.append(cr)
            continue
        cr = check_result(r, table, fname)
        col = moved.columns.get(rule) or setaside._column(r["exp"])
        what = ("the earlier rows of each repeated version (the later row of the file is kept), rule "
                f"{setaside.DUPLICATE_RULE}" if "unique_sql" in r else f"rule {rule}")
        ex = f"; e.g. {', '.join(r['examples'][:3])}" if r["examples"] else ""
        where = setaside.place(fname, moved.lines.get(rule, []), n)
        cr.severity, cr.observed = "warning", {**cr.observed, "set_aside": n}
        cr.message = (f"{label}: {n:,} rows set aside (quarantined): {what}, column {col}"
                      + (f", {where}" if where else "") + f"; it failed on {r['unexpected_count']:,} of "
                      f"{r['element_count']:,} rows{ex}; the other rows are used")
        out.append(cr)
    return out


# rules whose quarantined values may be quoted in messages (codes, yes/no, dates, numbers, agency codes); never
# free text, where a name or a phone number pasted into the wrong column would land
QUOTABLE = ("unknown_code", "invalid_bool", "invalid_date", "invalid_number", "out_of_range", "unknown_agency",
            "code_in_list:", "min:", "date_order:", setaside.DUPLICATE_RULE)


def _quotable(rule: str, value) -> bool:
    import re

    return (value is not None and rule.startswith(QUOTABLE) and len(str(value)) <= 20
            and re.search(r"\d{7,}", str(value)) is None)


def quarantined_share(con, warehouse: Path, table: str, batch_id: str, staged: Path, meta: dict, fname: str,
                      rows_staged: int) -> CheckResult:
    """The file verdict on the rows set aside (by staging and by the gate): critical above the contract's
    ``max_quarantined_share`` of the file's rows (and more than ``quarantine_allowance_rows`` rows), or when every
    row of a non-empty file was set aside; a warning naming rules, columns and counts when some were."""
    raw_n, _stg, _q = setaside.file_counts(warehouse, table, batch_id, staged)
    q_path = setaside.paths(warehouse, table, batch_id)[1]
    groups = []
    if q_path.exists():
        groups = con.execute(f"SELECT _rule, _column, count(*) AS n, list_sort(list_distinct(list(_value)))[1:6], "
                             f"list(_source_line ORDER BY _source_row)[1:3] "
                             f"FROM read_parquet({rules.lit(str(q_path))}) GROUP BY 1, 2 ORDER BY n DESC, 1, 2"
                             ).fetchall()
    q = sum(g[2] for g in groups)
    groups = [(rule, col, n, values, [x for x in lines or [] if x is not None]) for rule, col, n, values, lines in groups]
    rows = raw_n if raw_n is not None else rows_staged + q
    share = q / rows if rows else 0.0
    limit = float(meta.get("max_quarantined_share", 0.05))
    allowance = int(meta.get("quarantine_allowance_rows", 0))
    every = rows > 0 and rows_staged == 0 and q > 0
    held = every or (q > allowance and share > limit)
    parts = []
    for rule, col, n, values, lines in groups[:4]:
        vals = [str(v) for v in values or [] if _quotable(rule, v)][:3]
        where = setaside.place(fname, lines, n)
        parts.append(f"{rule} {n:,} (column {col}" + (f", values {', '.join(vals)}" if vals else "")
                     + (f"; {where}" if where else "") + ")")
    if len(groups) > 4:
        parts.append(f"and {len(groups) - 4} more rule(s)")
    what = meta.get("entity", table).replace("_", " ")
    head = f"file {fname}: {q:,} of {rows:,} rows ({100 * share:.1f}%) set aside: {', '.join(parts)}"
    if every:
        msg = (f"file {fname}: every row ({rows:,}) set aside: {', '.join(parts)}; nothing of this file can be used: "
               f"ask the unit to check the export")
    elif held:
        msg = f"{head}; above the {limit:.0%} allowed for {what}: ask the unit to check the export"
    elif q:
        msg = (f"{head}; within the {limit:.0%} allowed for {what}, the other rows are used: ask the unit to correct "
               f"these rows in its next export")
    else:
        msg = f"file {fname}: no row set aside"
    return CheckResult(
        name="quarantined_share", severity="critical" if held or not q else "warning", success=q == 0,
        unexpected_count=q, element_count=rows, unexpected_percent=round(100 * share, 4),
        examples=[f"{rule} {n:,} ({col})" for rule, col, n, _v, _l in groups[:5]], message=msg, kind="batch_rule",
        expectation_type="batch:quarantined_share",
        observed={"rows_raw": rows, "rows_staged": rows_staged, "rows_quarantined": q, "share": share,
                  "max_quarantined_share": limit, "quarantine_allowance_rows": allowance, "every_row": every,
                  "rules": [{"rule": r, "column": c, "rows": n, "lines": ls} for r, c, n, _v, ls in groups]})


def record_counts(ledger, warehouse: Path, gr: GateResult) -> None:
    """The ledger batch's staged and quarantined rows as the files now hold them (the gate may have moved rows;
    raw = staged + quarantined still holds)."""
    import pyarrow as pa

    path = table_dir(warehouse, gr.table) / f"{gr.batch_id}.parquet"
    if not path.exists():
        return
    try:
        _raw, staged, quarantined = setaside.file_counts(warehouse, gr.table, gr.batch_id, path)
    except pa.ArrowException:  # a file the checks could not read either (gate_error): its counts stay as staged
        return
    ledger.update_batch(gr.batch_id, rows_staged=staged, rows_quarantined=quarantined)


def gate_batch(warehouse: Path, source: str, entity: str, batch_id: str, *, ledger, run_id: str | None,
               settings=None, as_of: date | None = None) -> GateResult:
    """``check_batch`` as the flows run it: the verdict, recorded in the ledger once the checks are over. When the
    checks themselves fail on the batch (a bug, a file they cannot read back), the verdict is ``crashed``'s: held.
    Trouble of the machine (disk, memory) is raised instead: the batch stays staged and the next run gates it
    again. A failed ledger write is raised too, never turned into a verdict on the batch."""
    from transforms.contracts import stg_table

    table = stg_table(source, entity)
    try:
        g = check_batch(warehouse, table, batch_id, ledger=None, run_id=run_id, settings=settings, as_of=as_of)
    except Exception as exc:
        if _machine_trouble(exc):
            raise
        g = crashed(table, batch_id, exc)
    ledger.record_dq(ledger_rows(g, {"source": source, "entity": entity}, run_id))
    record_counts(ledger, warehouse, g)
    return g


def _machine_trouble(exc: BaseException) -> bool:
    import duckdb

    return isinstance(exc, OSError | MemoryError | duckdb.IOException | duckdb.OutOfMemoryException)


def crashed(table: str, batch_id: str, exc: BaseException) -> GateResult:
    """The verdict on a batch whose checks themselves failed (a bug, a broken file): held like a critical failure,
    so its data is not published, the run fails and alerts, and ``tthc release`` can let it through once looked at,
    instead of the same batch failing every later run before any other batch is built."""
    msg = (f"{table}, batch {batch_id}: the quality gate could not check it ({type(exc).__name__}: {exc}); "
           f"held until looked at")
    return GateResult(table=table, batch_id=batch_id, source_file=batch_id, rows=0, results=[CheckResult(
        name="gate_error", severity="critical", success=False, unexpected_count=1, element_count=1, message=msg,
        kind="batch_rule", expectation_type="gate_error", table=table, batch_id=batch_id, source_file=batch_id,
        observed={"error": f"{type(exc).__name__}: {exc}"})])


def _profile(con, path: Path) -> dict:
    import pyarrow.parquet as pq

    types = {f.name: str(f.type) for f in pq.read_schema(path)}
    cols = [c for c in types if not c.startswith("_")]
    sel = ", ".join(["count(*)"] + [f"count({rules.q(c)})" for c in cols])
    row = con.execute(f"SELECT {sel} FROM read_parquet({rules.lit(str(path))})").fetchone()
    return {"rows": row[0], "non_null": dict(zip(cols, row[1:])), "types": types}


def ledger_rows(gr: GateResult, meta: dict, run_id: str | None) -> list[dict]:
    return [{
        "run_id": run_id, "batch_id": gr.batch_id, "table_name": gr.table, "source": meta["source"],
        "entity": meta["entity"], "agency_code": r.agency_code, "check_name": r.name,
        "expectation_type": r.expectation_type, "severity": r.severity, "success": r.success,
        "element_count": r.element_count, "unexpected_count": r.unexpected_count,
        "unexpected_percent": r.unexpected_percent, "examples_json": r.examples,
        "observed_json": {**r.observed, "message": r.message, "source_file": gr.source_file, "kind": r.kind},
    } for r in gr.results]
