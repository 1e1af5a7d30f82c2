"""Evaluate a GX suite's expectations exactly, on the whole staged batch, in DuckDB.

Every row-level rule becomes one ``count_if`` in a single aggregate query over the batch Parquet (one scan, only
the columns the suite needs); uniqueness is one GROUP BY; examples (ids and source rows, never personal data)
are fetched only for the rules that failed. This is the authoritative count the gate decides on; the GX
checkpoint (gx_runner) re-runs the same suite on a narrow bounded sample for Data Docs and as a cross-check.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pyarrow.parquet as pq

from warehouse.store import table_glob, table_files

SUITES_DIR = Path(__file__).resolve().parents[2] / "expectations" / "suites"
EXAMPLES = 5


@cache
def load_suite(table: str) -> dict:
    return json.loads((SUITES_DIR / f"{table}.json").read_text(encoding="utf-8"))


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def lit(v) -> str:
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int | float):
        return repr(v)
    return "'" + str(v).replace("'", "''") + "'"


_COND = re.compile(r"^\s*(\w+)\s+(not in|in)\s+\[(.*)\]\s*$")


def condition_sql(row_condition: str) -> str:
    """Translate the pandas row conditions the suites use (``col not in [1, 3]``) to SQL."""
    m = _COND.match(row_condition)
    if not m:
        raise ValueError(f"unsupported row_condition {row_condition!r}")
    col, op, values = m.groups()
    items = ", ".join(v.strip() for v in values.split(",") if v.strip())
    return f"{q(col)} {op.upper()} ({items})"


@dataclass
class RuleSQL:
    exp: dict
    domain: str        # SQL: rows the rule looks at
    bad: str           # SQL: rows (within domain) that break it


def expectation_columns(exp: dict) -> list[str]:
    k = exp["kwargs"]
    cols = [k[c] for c in ("column", "column_A", "column_B") if c in k]
    cols += list(k.get("column_list", []))
    if "row_condition" in k:
        cols.append(_COND.match(k["row_condition"]).group(1))
    return cols


def rule_sql(exp: dict, value_set: list | None = None) -> RuleSQL | None:
    """The rule as SQL; a ``row_condition`` narrows the rows it looks at (for not-null it is the whole domain)."""
    rs = _rule_sql(exp, value_set)
    k = exp["kwargs"]
    if rs is not None and "row_condition" in k and exp["type"] != "expect_column_values_to_not_be_null":
        rs.domain = f"({rs.domain}) AND {condition_sql(k['row_condition'])}"
    return rs


def _rule_sql(exp: dict, value_set: list | None) -> RuleSQL | None:
    t, k = exp["type"], exp["kwargs"]
    if t == "expect_column_values_to_not_be_null":
        dom = condition_sql(k["row_condition"]) if "row_condition" in k else "TRUE"
        return RuleSQL(exp, dom, f"{q(k['column'])} IS NULL")
    c = q(k["column"]) if "column" in k else None
    if t == "expect_column_values_to_be_in_set":
        vs = value_set if value_set is not None else k["value_set"]
        return RuleSQL(exp, f"{c} IS NOT NULL", f"{c} NOT IN ({', '.join(lit(v) for v in vs)})" if vs else "TRUE")
    if t == "expect_column_values_to_match_regex":
        return RuleSQL(exp, f"{c} IS NOT NULL", f"NOT regexp_matches({c}, {lit(k['regex'])})")
    if t == "expect_column_values_to_be_between":
        parts = []
        if k.get("min_value") is not None:
            parts.append(f"{c} < {lit(k['min_value'])}")
        if k.get("max_value") is not None:
            parts.append(f"{c} > {lit(k['max_value'])}")
        return RuleSQL(exp, f"{c} IS NOT NULL", " OR ".join(parts) or "FALSE")
    if t == "expect_column_pair_values_a_to_be_greater_than_b":
        a, b = q(k["column_A"]), q(k["column_B"])
        op = "<" if k.get("or_equal") else "<="
        return RuleSQL(exp, f"{a} IS NOT NULL AND {b} IS NOT NULL", f"{a} {op} {b}")
    return None


def arrow_type_ok(actual: str, expected: str) -> bool:
    actual = actual.replace("large_string", "string").replace("string_view", "string")
    if expected == "int64" and actual in ("int8", "int16", "int32", "int64"):
        return True   # any signed integer width holds the code lists and counts (staging writes int32 codes)
    return actual.startswith(expected)


UNIQUE = ("expect_compound_columns_to_be_unique", "expect_column_values_to_be_unique")


def unique_cols(exp: dict) -> str:
    k = exp["kwargs"]
    return ", ".join(q(c) for c in k.get("column_list") or [k["column"]])


@dataclass
class Source:
    """What ``evaluate_suite`` reads, and how its examples name and locate a row."""
    sql: str                          # the relation: read_parquet(...)
    types: dict[str, str]             # column -> Arrow type
    key: str                          # SQL naming a row: its id, or its key values
    locate: str                       # SQL column(s) locating a row in its file(s)
    order: str                        # SQL ordering the examples
    example: Callable[[tuple], str]   # (key, *locate) -> text
    missing_ref: str = "staged"       # "no <table> <missing_ref> yet" when a value_set_from table is absent


Pending = tuple[dict, str | None, str | None]  # (expectation, domain SQL, bad SQL): counted in the scan


def evaluate_suite(con, source: Source, suite: dict, warehouse: Path | None,
                   extra_select: list[str] | None = None) -> tuple[list[dict], dict]:
    """Every expectation of ``suite`` on ``source``, exactly: presence and types from the schema, every row rule
    and identity as a ``count_if`` in one aggregate scan (with ``extra_select``), the key as one GROUP BY,
    examples only for the rules that failed. Returns (per-expectation results, the scan's row: ``n`` and the
    ``extra_select`` aliases)."""
    out, pending = _triage(con, source, suite, warehouse)
    row = _scan(con, source.sql, pending, extra_select)
    out += [_judge(con, source, exp, dom, bad, row, i) for i, (exp, dom, bad) in enumerate(pending)]
    return out, row


def _bad_type_columns(suite: dict, types: dict[str, str]) -> set[str]:
    """Columns of the wrong type: they fail their type rule; their value rules cannot be evaluated meaningfully."""
    return {e["kwargs"]["column"] for e in suite["expectations"]
            if e["type"] == "expect_column_values_to_be_of_type" and e["kwargs"]["column"] in types
            and not arrow_type_ok(types[e["kwargs"]["column"]], e["kwargs"]["type_"])}


def _triage(con, source: Source, suite: dict, warehouse: Path | None) -> tuple[list[dict], list[Pending]]:
    """The results the schema decides (presence, types, a reference table not there yet), in suite order, and
    the expectations left for the scan; an expectation on a missing or mistyped column is left out (reported
    by its presence or type rule)."""
    types, src = source.types, source.sql
    out: list[dict] = []
    pending: list[Pending] = []
    bad_type = _bad_type_columns(suite, types)
    for exp in suite["expectations"]:
        t, k = exp["type"], exp["kwargs"]
        if t == "expect_column_to_exist":
            ok = k["column"] in types
            out.append(_res(exp, ok, 0 if ok else 1, 1, [], {"present": ok}))
            continue
        if t == "unexpected_rows_expectation":
            # meta.where: the rows that break it; meta.domain (default every row): the rows it looks at
            cond, dom = exp["meta"]["where"], exp["meta"].get("domain", "TRUE")
            needed = set(re.findall(r"[a-z_][a-z0-9_]*", f"{dom} {cond}")) & {c["name"] for c in
                                                                               suite["meta"]["columns"]}
            if needed - set(types) or needed & bad_type:
                continue   # reported by column_present / column_type
            pending.append((exp, dom, cond.replace("{batch}", src)))
            continue
        cols = expectation_columns(exp)
        if any(c not in types for c in cols):
            continue   # reported by column_present
        if t == "expect_column_values_to_be_of_type":
            ok = arrow_type_ok(types[k["column"]], k["type_"])
            out.append(_res(exp, ok, 0 if ok else 1, 1, [], {"observed_type": types[k["column"]],
                                                             "expected_type": k["type_"]}))
            continue
        if set(cols) & bad_type:
            continue
        if t == "expect_table_row_count_to_be_between" or t in UNIQUE:
            pending.append((exp, None, None))
            continue
        _triage_row_rule(con, source, warehouse, exp, out, pending)
    return out, pending


def _triage_row_rule(con, source: Source, warehouse: Path | None, exp: dict, out: list[dict],
                     pending: list[Pending]) -> None:
    """A row rule goes to the scan, its value set read from the reference table it names (``value_set_from``);
    with that table not there yet the rule is skipped, saying so."""
    vs = None
    if exp["meta"].get("value_set_from"):
        ref_table, ref_col = exp["meta"]["value_set_from"].split(".")
        if warehouse is None or not table_files(warehouse, ref_table):
            out.append(_res(exp, True, 0, 0, [], {"skipped": f"no {ref_table} {source.missing_ref} yet"}))
            return
        vs = [r[0] for r in con.execute(
            f"SELECT DISTINCT {q(ref_col)} FROM read_parquet({lit(table_glob(warehouse, ref_table))}) "
            f"WHERE {q(ref_col)} IS NOT NULL").fetchall()]
    rs = rule_sql(exp, vs)
    if rs is not None:
        pending.append((exp, rs.domain, rs.bad))


def _scan(con, src: str, pending: list[Pending], extra_select: list[str] | None) -> dict:
    """One scan for every row rule, the row count (``n``) and what the caller adds: the row of counts."""
    sel = ["count(*) AS n", *(extra_select or [])]
    for i, (exp, dom, bad) in enumerate(pending):
        if dom is not None:
            # coalesce: count_if of no rows is NULL in DuckDB 2.0 (an empty batch or table)
            sel.append(f"coalesce(count_if({dom}), 0) AS d{i}, coalesce(count_if(({dom}) AND ({bad})), 0) AS u{i}")
    cur = con.execute(f"SELECT {', '.join(sel)} FROM {src}")
    return dict(zip([d[0] for d in cur.description], cur.fetchall()[0]))  # fetchall: the result is complete


def _examples(con, source: Source, where: str) -> list[str]:
    return [source.example(r) for r in con.execute(
        f"SELECT {source.key}, {source.locate} FROM {source.sql} WHERE {where} ORDER BY {source.order} "
        f"LIMIT {EXAMPLES}").fetchall()]


def _judge(con, source: Source, exp: dict, dom: str | None, bad: str | None, row: dict, i: int) -> dict:
    """The result of the ``i``-th expectation left for the scan: the row count, a GROUP BY for uniqueness, the
    scan's counts for a row rule (examples fetched only when it failed)."""
    t, k, n, src = exp["type"], exp["kwargs"], row["n"], source.sql
    if t == "expect_table_row_count_to_be_between":
        ok = (k.get("min_value") is None or n >= k["min_value"]) and \
             (k.get("max_value") is None or n <= k["max_value"])
        return _res(exp, ok, 0 if ok else 1, 1, [], {"row_count": n})
    if t in UNIQUE:
        kc = unique_cols(exp)
        dup = con.execute(f"SELECT coalesce(sum(c), 0), count(*) FROM (SELECT count(*) c FROM {src} "
                          f"GROUP BY {kc} HAVING count(*) > 1)").fetchall()[0]
        ex = _examples(con, source, f"({kc}) IN (SELECT ({kc}) FROM {src} GROUP BY {kc} HAVING count(*) > 1)") \
            if dup[0] else []
        return {**_res(exp, dup[0] == 0, int(dup[0]), n, ex, {"duplicate_keys": int(dup[1])}), "unique_sql": kc}
    d, u = row[f"d{i}"], row[f"u{i}"]
    mostly = k.get("mostly", exp["meta"].get("mostly", 1.0))
    ok = u == 0 if mostly >= 1 else (d == 0 or (d - u) / d >= mostly)
    ex = _examples(con, source, f"({dom}) AND ({bad})") if u else []
    # bad_sql: the very rows counted, what the gate sets aside
    return {**_res(exp, ok, int(u), int(d), ex, {"mostly": mostly} if mostly < 1 else {}),
            "bad_sql": f"({dom}) AND ({bad})"}


def sample_rows_sql(src: str, row_ref: str, n: int, failed: list[dict], per_rule: int) -> str:
    """The rows a GX checkpoint validates, as a UNION of ``row_ref`` values: ``n`` random rows plus up to
    ``per_rule`` breaking rows of each failed GX-engine rule (so GX sees the failures DuckDB counted)."""
    picks = [f"(SELECT {row_ref} FROM {src} USING SAMPLE reservoir({int(n)} ROWS) REPEATABLE (7))"]
    for r in failed:
        e = r["exp"]
        if r["success"] or e["meta"].get("engine", "gx") != "gx":
            continue
        if e["type"] in UNIQUE:
            kc = unique_cols(e)
            picks.append(f"(SELECT {row_ref} FROM {src} WHERE ({kc}) IN (SELECT ({kc}) FROM {src} GROUP BY {kc} "
                         f"HAVING count(*) > 1) LIMIT {per_rule})")
        else:
            w = bad_rows_sql(e)
            if w:
                picks.append(f"(SELECT {row_ref} FROM {src} WHERE {w} LIMIT {per_rule})")
    return " UNION ".join(picks)


def evaluate(con, path: Path, table: str, warehouse: Path, id_column: str) -> tuple[list[dict], dict]:
    """Run the suite of ``table`` on one batch file. Returns (per-expectation results, batch profile)."""
    suite = load_suite(table)
    types = {f.name: str(f.type) for f in pq.read_schema(path)}
    # the profile the history checks use, read in the same scan
    prof_cols = [c for c in types if not c.startswith("_")]
    extra = [f"count({q(c)}) AS nn{j}" for j, c in enumerate(prof_cols)]
    source = Source(sql=f"read_parquet({lit(str(path))})", types=types,
                    key=q(id_column) if id_column in types else "NULL", locate="_source_row", order="_source_row",
                    example=_ex)
    out, row = evaluate_suite(con, source, suite, warehouse, extra)
    profile = {"rows": row["n"], "non_null": {c: row[f"nn{j}"] for j, c in enumerate(prof_cols)}, "types": types}
    return out, profile


def _ex(r) -> str:
    ident, row = r
    return f"{ident if ident is not None else '(empty id)'} (row {row})"


def _res(exp, ok, bad, dom, examples, observed, pct=None) -> dict:
    if pct is None:
        pct = 100.0 * bad / dom if dom else 0.0
    return {"exp": exp, "success": bool(ok), "unexpected_count": int(bad), "element_count": int(dom),
            "unexpected_percent": float(pct), "examples": examples, "observed": observed}


def bad_rows_sql(exp: dict, value_set: list | None = None) -> str | None:
    """WHERE clause selecting the rows that break a row rule (the GX sample keeps them)."""
    rs = rule_sql(exp, value_set)
    return None if rs is None else f"({rs.domain}) AND ({rs.bad})"
