"""Evaluate a GX suite's expectations exactly, on the whole staged batch, in DuckDB.

Every row-level rule becomes one ``count_if`` in a single aggregate query over the batch Parquet (one scan, only
the columns the suite needs); uniqueness is one GROUP BY; examples (ids and source rows, never personal data)
are fetched only for the rules that failed. This is the authoritative count the gate decides on; the GX
checkpoint (gx_runner) re-runs the same suite on a narrow bounded sample for Data Docs and as a cross-check.
"""

from __future__ import annotations

import json
import re
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


def evaluate(con, path: Path, table: str, warehouse: Path, id_column: str) -> tuple[list[dict], dict]:
    """Run the suite of ``table`` on one batch file. Returns (per-expectation results, batch profile)."""
    suite = load_suite(table)
    schema = pq.read_schema(path)
    types = {f.name: str(f.type) for f in schema}
    src = f"read_parquet({lit(str(path))})"
    out: list[dict] = []
    pending: list[tuple[dict, RuleSQL]] = []
    # a column of the wrong type fails its type rule; its value rules cannot be evaluated meaningfully
    bad_type = {e["kwargs"]["column"] for e in suite["expectations"]
                if e["type"] == "expect_column_values_to_be_of_type" and e["kwargs"]["column"] in types
                and not arrow_type_ok(types[e["kwargs"]["column"]], e["kwargs"]["type_"])}
    for exp in suite["expectations"]:
        t, k = exp["type"], exp["kwargs"]
        missing = [c for c in expectation_columns(exp) if c not in types]
        if t == "expect_column_to_exist":
            ok = k["column"] in types
            out.append(_res(exp, ok, 0 if ok else 1, 1, [], {"present": ok}))
            continue
        if missing:   # already reported by column_present; nothing to evaluate
            continue
        if t != "expect_column_values_to_be_of_type" and set(expectation_columns(exp)) & bad_type:
            continue
        if t == "expect_column_values_to_be_of_type":
            ok = arrow_type_ok(types[k["column"]], k["type_"])
            out.append(_res(exp, ok, 0 if ok else 1, 1, [], {"observed_type": types[k["column"]],
                                                             "expected_type": k["type_"]}))
            continue
        if t == "expect_table_row_count_to_be_between":
            pending.append((exp, None))
            continue
        if t == "expect_compound_columns_to_be_unique":
            pending.append((exp, None))
            continue
        vs = None
        if exp["meta"].get("value_set_from"):
            ref_table, ref_col = exp["meta"]["value_set_from"].split(".")
            if not table_files(warehouse, ref_table):
                out.append(_res(exp, True, 0, 0, [], {"skipped": f"no {ref_table} staged yet"}))
                continue
            vs = [r[0] for r in con.execute(
                f"SELECT DISTINCT {q(ref_col)} FROM read_parquet({lit(table_glob(warehouse, ref_table))}) "
                f"WHERE {q(ref_col)} IS NOT NULL").fetchall()]
        rs = rule_sql(exp, vs)
        if rs is not None:
            pending.append((exp, rs))
    # one scan for every row rule, the row count, and the profile the history checks use
    sel = ["count(*) AS n"]
    for i, (exp, rs) in enumerate(pending):
        if rs is not None:
            sel.append(f"count_if({rs.domain}) AS d{i}, count_if(({rs.domain}) AND ({rs.bad})) AS u{i}")
    prof_cols = [c for c in types if not c.startswith("_")]
    for j, c in enumerate(prof_cols):
        sel.append(f"count({q(c)}) AS nn{j}")
    if "updated_at" in types:
        sel.append('min("updated_at") AS min_upd, max("updated_at") AS max_upd')
    cur = con.execute(f"SELECT {', '.join(sel)} FROM {src}")
    row = dict(zip([d[0] for d in cur.description], cur.fetchone()))
    n = row["n"]
    profile = {"rows": n, "non_null": {c: row[f"nn{j}"] for j, c in enumerate(prof_cols)},
               "types": types, "min_updated_at": row.get("min_upd"), "max_updated_at": row.get("max_upd")}
    key = q(id_column) if id_column in types else "NULL"
    for i, (exp, rs) in enumerate(pending):
        t, k = exp["type"], exp["kwargs"]
        if t == "expect_table_row_count_to_be_between":
            ok = (k.get("min_value") is None or n >= k["min_value"]) and \
                 (k.get("max_value") is None or n <= k["max_value"])
            out.append(_res(exp, ok, 0 if ok else 1, 1, [], {"row_count": n}))
        elif t == "expect_compound_columns_to_be_unique":
            cols = ", ".join(q(c) for c in k["column_list"])
            dup = con.execute(f"SELECT coalesce(sum(c), 0), count(*) FROM (SELECT count(*) c FROM {src} "
                              f"GROUP BY {cols} HAVING count(*) > 1)").fetchone()
            ex = []
            if dup[0]:
                ex = [_ex(r) for r in con.execute(
                    f"SELECT {key}, _source_row FROM {src} WHERE ({cols}) IN (SELECT ({cols}) FROM {src} "
                    f"GROUP BY {cols} HAVING count(*) > 1) ORDER BY _source_row LIMIT {EXAMPLES}").fetchall()]
            out.append(_res(exp, dup[0] == 0, int(dup[0]), n, ex, {"duplicate_keys": int(dup[1])}))
        else:
            dom, bad = row[f"d{i}"], row[f"u{i}"]
            mostly = k.get("mostly", 1.0)
            pct = 100.0 * bad / dom if dom else 0.0
            ok = bad == 0 if mostly >= 1 else (dom == 0 or (dom - bad) / dom >= mostly)
            ex = []
            if bad:
                ex = [_ex(r) for r in con.execute(
                    f"SELECT {key}, _source_row FROM {src} WHERE ({rs.domain}) AND ({rs.bad}) "
                    f"ORDER BY _source_row LIMIT {EXAMPLES}").fetchall()]
            obs = {"mostly": mostly} if mostly < 1 else {}
            out.append(_res(exp, ok, int(bad), int(dom), ex, obs, pct))
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
