"""Generate the Great Expectations suites (``expectations/suites/<table>.json``) from the table contracts.

The contracts in ``expectations/tables/*.yaml`` are the source of truth; the suites are generated JSON that is
reviewed like code (run ``python -m expectations.build_suites`` and read the diff). Every expectation carries
``meta.severity`` (``critical`` stops the batch, ``warning`` is reported) and ``meta.rule`` (a short stable rule
name used in the ledger, reports and alerts). ``meta.engine`` says where the rule is evaluated:
``gx`` rules run in the GX checkpoint (on a narrow, bounded sample) *and* in the DuckDB pass (exact counts on the
whole batch); ``duckdb`` rules (types from the Parquet schema, row count, catalogue look-ups) only in DuckDB.

Severity policy (see docs/alerts.md): anything that means staging let through data it must have quarantined, or
that would corrupt KPIs (missing/typed columns, null keys, duplicate versions, unknown codes, broken date order
above 1% of rows) is critical; what only weakens the numbers (unknown procedure code, odd row count) is a
warning. Batch-vs-history checks (schema drift, volume, freshness, null-share jump) are not GX expectations;
they live in ``transforms/quality/history.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
TABLES = HERE / "tables"
SUITES = HERE / "suites"

# Parquet/Arrow type names per contract type (checked against the staged file's schema)
ARROW_TYPES = {
    "string": "string", "agency": "string", "int": "int64", "money": "int64", "bool": "bool",
    "timestamp": "timestamp", "date": "date32", "code_list": "string", "supplement_list": "list",
}
# date order rules: (later column, earlier column) pairs per table, both must be set for the rule to apply
DATE_ORDER = {
    "stg_one_stop__dossiers": [("due_at", "received_at"), ("finished_at", "received_at"),
                               ("returned_at", "received_at")],
    "stg_dvc_portal__feedback": [("answered_at", "received_at"), ("published_at", "received_at")],
}
DATE_ORDER_MOSTLY = 0.99  # a few mistyped dates are reported (warning via mostly); >1% of rows is critical
MAX_ROWS_PER_BATCH = 5_000_000


def load_contract(table: str) -> dict:
    return yaml.safe_load((TABLES / f"{table}.yaml").read_text(encoding="utf-8"))


def load_codes() -> dict:
    return yaml.safe_load((HERE / "codes.yaml").read_text(encoding="utf-8"))


def _exp(type_: str, kwargs: dict, rule: str, severity: str, engine: str = "gx", **meta) -> dict:
    return {"type": type_, "kwargs": kwargs, "severity": severity,
            "meta": {"rule": rule, "severity": severity, "engine": engine, **meta}}


def build_suite(table: str) -> dict:
    c = load_contract(table)
    codes = load_codes()
    cols = [col for col in c["columns"] if col.get("pii") != "drop"]
    # staging replaces the ID number by its pseudonym
    stg_cols = []
    for col in cols:
        if col.get("pii") == "pseudonym":
            stg_cols.append({"name": col["pseudonym"], "type": "string",
                             "vi": "Bí danh chủ hồ sơ (HMAC)", "en": "Keyed pseudonym of the applicant ID"})
        else:
            stg_cols.append(col)
    exps: list[dict] = []
    for col in stg_cols:
        exps.append(_exp("expect_column_to_exist", {"column": col["name"]}, f"column_present:{col['name']}",
                         "critical"))
    for col in stg_cols:
        typ = ARROW_TYPES.get(col["type"], "string")
        if col["type"] == "code":
            typ = "int64" if all(isinstance(k, int) for k in codes[col["codes"]]) else "string"
        exps.append(_exp("expect_column_values_to_be_of_type", {"column": col["name"], "type_": typ},
                         f"column_type:{col['name']}", "critical", engine="duckdb"))
    for col in stg_cols:
        if col.get("required"):
            exps.append(_exp("expect_column_values_to_not_be_null", {"column": col["name"]},
                             f"not_null:{col['name']}", "critical"))
        elif "required_unless" in col:
            (cond_col, values), = col["required_unless"].items()
            exps.append(_exp("expect_column_values_to_not_be_null",
                             {"column": col["name"], "row_condition": f"{cond_col} not in {sorted(values)}",
                              "condition_parser": "pandas"},
                             f"not_null:{col['name']}", "critical"))
    exps.append(_exp("expect_compound_columns_to_be_unique", {"column_list": list(c["key"])},
                     "unique_version:" + "+".join(c["key"]), "critical"))
    for col in stg_cols:
        if col["type"] == "code":
            keys = list(codes[col["codes"]].keys())
            exps.append(_exp("expect_column_values_to_be_in_set", {"column": col["name"], "value_set": keys},
                             f"code_in_list:{col['name']}", "critical"))
        elif col["type"] == "code_list":
            keys = "|".join(str(k) for k in codes[col["codes"]].keys())
            exps.append(_exp("expect_column_values_to_match_regex",
                             {"column": col["name"], "regex": f"^({keys})(;({keys}))*$"},
                             f"code_in_list:{col['name']}", "critical"))
        if "pattern" in col:
            exps.append(_exp("expect_column_values_to_match_regex", {"column": col["name"], "regex": col["pattern"]},
                             f"pattern:{col['name']}", "critical"))
        if "min" in col:
            exps.append(_exp("expect_column_values_to_be_between", {"column": col["name"], "min_value": col["min"]},
                             f"min:{col['name']}", "critical"))
    for later, earlier in DATE_ORDER.get(table, []):
        exps.append(_exp("expect_column_pair_values_a_to_be_greater_than_b",
                         {"column_A": later, "column_B": earlier, "or_equal": True,
                          "ignore_row_if": "either_value_is_missing", "mostly": DATE_ORDER_MOSTLY},
                         f"date_order:{later}>={earlier}", "critical"))
    if table == "stg_one_stop__dossiers":
        exps.append(_exp("expect_column_values_to_be_in_set", {"column": "procedure_code", "value_set": []},
                         "procedure_known:procedure_code", "warning", engine="duckdb",
                         value_set_from="stg_dvc_portal__procedures.procedure_code"))
    exps.append(_exp("expect_table_row_count_to_be_between", {"min_value": 1, "max_value": MAX_ROWS_PER_BATCH},
                     "row_count", "warning", engine="duckdb"))
    return {
        "name": table,
        "expectations": exps,
        "meta": {
            "table": table, "source": c["source"], "entity": c["entity"], "vi": c["vi"], "en": c["en"],
            "key": list(c["key"]),
            "columns": [{"name": col["name"], "type": col["type"], "vi": col["vi"], "en": col["en"]}
                        for col in stg_cols],
            "generated_by": "expectations/build_suites.py from expectations/tables/" + f"{table}.yaml",
        },
        "notes": None,
    }


def main() -> None:
    SUITES.mkdir(exist_ok=True)
    for path in sorted(TABLES.glob("*.yaml")):
        suite = build_suite(path.stem)
        (SUITES / f"{path.stem}.json").write_text(json.dumps(suite, ensure_ascii=False, indent=1) + "\n",
                                                  encoding="utf-8")
        print(f"{path.stem}: {len(suite['expectations'])} expectations")


if __name__ == "__main__":
    main()
