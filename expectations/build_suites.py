"""Generate the Great Expectations suites (``expectations/suites/<table>.json``) from the table contracts.

The contracts in ``expectations/tables/*.yaml`` are the source of truth; the suites are generated JSON that is
reviewed like code (run ``python -m expectations.build_suites`` and read the diff). Every expectation carries
``meta.severity`` (``critical`` stops the batch, ``warning`` is reported) and ``meta.rule`` (a short stable rule
name used in the ledger, reports and alerts). ``meta.engine`` says where the rule is evaluated:
``gx`` rules run in the GX checkpoint (on a narrow, bounded sample) *and* in the DuckDB pass (exact counts on the
whole batch); ``duckdb`` rules (types from the Parquet schema, row count, catalogue look-ups) only in DuckDB.

Severity policy (see docs/alerts.md): anything that means staging let through data it must have quarantined, or
that would corrupt KPIs (missing/typed columns, null keys, duplicate versions, unknown codes, broken date order)
is critical; what only weakens the numbers (unknown procedure code, odd row count) is a
warning. Row problems hold rows, file problems hold files: the rows breaking a failed critical ROW rule are set
aside (moved to the batch's quarantine) before the verdict (transforms/quality/setaside.py); a file is held for a
critical batch rule (a column missing or mistyped) or when more than its contract's ``max_quarantined_share`` of
its rows were set aside (or all of them). Batch-vs-history checks (schema drift, volume, freshness, null-share
jump) are not GX expectations; they live in ``transforms/quality/history.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from transforms.contracts import arrow_type
from transforms.kpis import registry as kpis

HERE = Path(__file__).resolve().parent
TABLES = HERE / "tables"
SUITES = HERE / "suites"

# date order rules: (later column, earlier column) pairs per table, both must be set for the rule to apply
DATE_ORDER = {
    "stg_one_stop__dossiers": [("due_at", "received_at"), ("finished_at", "received_at"),
                               ("returned_at", "received_at")],
    "stg_dvc_portal__feedback": [("answered_at", "received_at"), ("published_at", "received_at")],
}
# core tables: a few dates out of order (a mistyped date in an export) are tolerated below 1% of the rows. The staged
# date_order rules have no such tolerance: every row breaking one is set aside (quarantined) by the gate, and the
# file's tolerance is its max_quarantined_share.
DATE_ORDER_MOSTLY = 0.99


def date_order_sql(later: str, earlier: str) -> tuple[str, str]:
    """(rows looked at, rows breaking ``later >= earlier``) as SQL. A later-side value at exactly 00:00:00 is a
    date given without a time: that whole day (a same-day procedure, received 08:57 and due that day, is on time
    in every format: CSV 'dd/mm/yyyy', an XLSX date cell, JSON 'yyyy-mm-dd'); it is compared by date."""
    domain = f"{later} IS NOT NULL AND {earlier} IS NOT NULL"
    bad = (f"CASE WHEN CAST({later} AS TIME) = TIME '00:00:00' THEN CAST({later} AS DATE) < CAST({earlier} AS DATE) "
           f"ELSE {later} < {earlier} END")
    return domain, bad


# Rows set aside (quarantined, by staging or by the gate's row rules) above this share of a file's rows hold the
# whole file (critical ``quarantined_share``; contract key ``max_quarantined_share`` per stg table). 5 %: the
# damaged exports seen (a status code outside the list on 20 % of a file, a yes/no column unreadable on every row
# of an NFD file, a required column missing) are far above it, while an ordinary export sets aside well under 1 %
# (the shared sample: at most 3 of 1,491 rows, 0.2 %); a handful of bad rows is then a warning, not a lost file.
MAX_QUARANTINED_SHARE = 0.05
# ... and never for this few rows (contract key ``quarantine_allowance_rows``): on a 13-row feedback file one bad
# row is 7.7 %, a share that says nothing about the export (measured on the generated inboxes at scale 0.1).
QUARANTINE_ALLOWANCE_ROWS = 3
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
        typ = arrow_type(col["type"], col.get("codes"))  # checked against the staged file's schema
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
                             {"column": col["name"], "regex": f"^(?:{keys})(?:;(?:{keys}))*$"},
                             f"code_in_list:{col['name']}", "critical"))
        if "pattern" in col:
            exps.append(_exp("expect_column_values_to_match_regex", {"column": col["name"], "regex": col["pattern"]},
                             f"pattern:{col['name']}", "critical"))
        if "min" in col:
            exps.append(_exp("expect_column_values_to_be_between", {"column": col["name"], "min_value": col["min"]},
                             f"min:{col['name']}", "critical"))
    for later, earlier in DATE_ORDER.get(table, []):
        # GX's pair expectation cannot compare by day when the later side has no time, and its unexpected-rows
        # expectation needs a SQL datasource (the checkpoint samples a pandas frame): evaluated in DuckDB only
        domain, bad = date_order_sql(later, earlier)
        exps.append(_exp("unexpected_rows_expectation",
                         {"unexpected_rows_query": f"SELECT * FROM {{batch}} WHERE {domain} AND ({bad})"},
                         f"date_order:{later}>={earlier}", "critical", engine="duckdb", where=bad, domain=domain,
                         columns=[later, earlier]))
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
            "max_quarantined_share": float(c.get("max_quarantined_share", MAX_QUARANTINED_SHARE)),
            "quarantine_allowance_rows": int(c.get("quarantine_allowance_rows", QUARANTINE_ALLOWANCE_ROWS)),
            "columns": [{"name": col["name"], "type": col["type"], "vi": col["vi"], "en": col["en"]}
                        for col in stg_cols],
            "generated_by": "expectations/build_suites.py from expectations/tables/" + f"{table}.yaml",
        },
        "notes": None,
    }


# ---------------------------------------------------------------------------------------------------------------
# core_* and mart_* tables: one suite per rebuilt table, checked on the file written aside before it is swapped in
# (transforms/quality/tables.py). Column names/types/descriptions come from the table's YAML; code lists, patterns,
# minimums and "required" are inherited from the staged contract of the same entity for columns that keep their
# name; the derived-field rules below are this project's reading of docs/kpis.md.
# ---------------------------------------------------------------------------------------------------------------
PERIOD_TYPES = ["month", "quarter", "year"]
AGENCY_LEVELS = ["province", "district", "commune", "department"]
# literal code lists of derived columns (the staged contracts do not know them)
DERIVED_CODES: dict[str, dict[str, list]] = {
    "core_agencies": {"level": AGENCY_LEVELS, "procedure_level": ["commune", "district", "province"]},
    "core_dossiers": {"due_date_source": ["due_at", "legal_days"], "supplement_rule": ["list", "flat"],
                      "source_format": ["flat_export", "national_sync", "onestop_sql"]},
    "mart_kpi__agency_period": {"period_type": PERIOD_TYPES, "agency_level": AGENCY_LEVELS},
    "mart_766__agency_period": {"period_type": PERIOD_TYPES},
    "mart_tt01_form06__agency_period": {"period_basis": ["calendar", "cutoff_15"], "period_type": PERIOD_TYPES},
    "mart_dq__agency_source_period": {"source": ["one_stop", "dvc_portal"],
                                      "entity": ["dossiers", "procedures", "payments", "ratings", "feedback",
                                                 "e_certifications"]},
}
# columns never null (besides the key and the staged contract's required columns): flags the build coalesces
DERIVED_NOT_NULL = {
    "core_dossiers": ["owner_agency_code", "channel", "is_received", "is_paper_result", "supplement_rule",
                      "supplement_count", "has_digitized_components", "has_e_result", "reused_digitized_data"],
    "core_feedback": ["likes", "dislikes", "is_re_complaint"],
    "core_procedures": ["version_no", "is_latest_version"],
    "core_payments": ["is_success"],
    "core_ratings": ["is_dissatisfied"],
    "core_e_certifications": ["owner_agency_code"],
    "mart_kpi__agency_period": ["period_start", "period_end", "numerator"],
    "mart_766__agency_period": ["numerator", "denominator"],
    "mart_tt01_form06__agency_period": [f"c{i:02d}" for i in range(3, 14)],   # expanded to full names below
    "mart_dq__agency_source_period": ["rows_received", "rows_staged", "rows_quarantined", "quarantined_rate",
                                      "rule_shares"],
}
# key columns whose emptiness is legitimate data, not a build error: reported (warning) instead of critical.
# Form 06: a dossier whose procedure is unknown to the catalogue and that carries no Mã lĩnh vực has no field.
NULLABLE_KEY = {"mart_tt01_form06__agency_period": ["field_code", "field_name"]}
# minimum values of derived counts (counts >= 0, form-06 rows exist only where c03 > 0)
DERIVED_MIN = {
    "core_procedures": {"version_no": 1},
    "mart_kpi__agency_period": {"numerator": 0, "denominator": 0, "value": 0},
    "mart_766__agency_period": {"numerator": 0, "denominator": 0, "score": 0},
    "mart_tt01_form06__agency_period": {**{f"c{i:02d}": 0 for i in range(4, 14)}, "c03": 1},
    "mart_dq__agency_source_period": {"rows_received": 1, "rows_staged": 0, "rows_quarantined": 0},
}
# rates in [0, 1]: (column, row_condition or None)
RATES = {
    # e_certified_copies is a count and its target last year's count: not rates
    "mart_kpi__agency_period": [("value", "kpi_code not in ['e_certified_copies']"),
                                ("target", "kpi_code not in ['e_certified_copies']")],
    "mart_766__agency_period": [("ratio", None)],
    "mart_dq__agency_source_period": [("quarantined_rate", None), ("digitization_completeness", None),
                                      ("e_result_completeness", None), ("channel_completeness", None)],
}
# a <= b on the same row: (a, b, severity, row_condition, mostly, rule note). Numerator <= denominator holds for
# every KPI and 766 indicator: each numerator counts a subset of the records its denominator counts
# (kpis.md); e_certified_copies has no denominator (null: the rule ignores the row).
AT_MOST = {
    "core_agencies": [("valid_from", "valid_to", "critical", None, 1.0)],
    "core_dossiers": [
        # add_working_days(d, n) >= d for n >= 0: a due date computed from the legal time is never before receipt
        ("received_date", "due_date", "critical", "due_date_source in ['legal_days']", 1.0),
        # a promised date as exported is taken as written (kpis.md: due = date(due_at)); one before the receipt
        # is possible in real exports (staging lets up to 1% through) and classes the dossier late/overdue
        ("received_date", "due_date", "warning", "due_date_source in ['due_at']", 1.0),
        ("received_date", "end_date", "critical", None, DATE_ORDER_MOSTLY),
    ],
    "core_feedback": [("received_date", "answered_date", "critical", None, DATE_ORDER_MOSTLY),
                      ("received_date", "deadline_date", "critical", None, 1.0)],
    "core_procedures": [("in_force_from", "in_force_to", "critical", None, 1.0)],
    "mart_kpi__agency_period": [("numerator", "denominator", "critical", None, 1.0),
                                ("period_start", "period_end", "critical", None, 1.0)],
    "mart_766__agency_period": [("numerator", "denominator", "critical", None, 1.0),
                                ("score", "max_score", "critical", None, 1.0)],
    "mart_tt01_form06__agency_period": [("period_start", "period_end", "critical", None, 1.0)],
}


def _ratio_sql(num: str, den: str) -> str:
    return f"CASE WHEN {den} = 0 THEN NULL ELSE {num} / {den} END"


def _same_double(col: str, expr: str) -> str:
    """SQL true when ``col`` differs from ``expr`` (both doubles; nulls must agree)."""
    return f"NOT coalesce(abs({col} - ({expr})) <= 1e-9, {col} IS NULL AND ({expr}) IS NULL)"


F06_IDENTITIES = [
    ("c03=c04+c05+c06", "c03_received_total <> c04_received_online + c05_received_direct_postal + c06_carried_over"),
    ("c03=c07+c11", "c03_received_total <> c07_resolved_total + c11_in_progress_total"),
    ("c07=c08+c09+c10", "c07_resolved_total <> c08_resolved_early + c09_resolved_on_time + c10_resolved_late"),
    ("c11=c12+c13", "c11_in_progress_total <> c12_in_progress_within_time + c13_in_progress_overdue"),
]
MAX_SCORE_SQL = ("CASE indicator_code " + " ".join(f"WHEN '{i.code}' THEN {i.max_score}" for i in kpis.INDICATORS
                                                    if i.max_score is not None) + " END")
# the codes a mart may hold (transforms/kpis/registry.py)
MEASURE_CODES = {"mart_kpi__agency_period": {"kpi_code": [k.code for k in kpis.KPIS]},
                 "mart_766__agency_period": {"indicator_code": [i.code for i in kpis.INDICATORS]}}
KPI_VALUE_SQL = ("CASE WHEN kpi_code = 'e_certified_copies' THEN CAST(numerator AS DOUBLE) "
                 "WHEN denominator = 0 THEN NULL ELSE numerator / denominator END")
# rows that break an identity of the table: (rule suffix, SQL condition selecting the bad rows, severity).
# Evaluated exactly in DuckDB; stored as GX ``unexpected_rows_expectation`` (its query over ``{batch}``).
IDENTITIES: dict[str, list[tuple[str, str, str]]] = {
    "core_agencies": [
        ("successor_known", "successor_code IS NOT NULL AND successor_code NOT IN "
                            "(SELECT agency_code FROM {batch})", "critical"),
        ("parent_known", "parent_code IS NOT NULL AND parent_code NOT IN (SELECT agency_code FROM {batch})",
         "warning"),
    ],
    "core_procedures": [
        ("is_latest_version=(in_force_to is null)", "is_latest_version <> (in_force_to IS NULL)", "critical"),
        ("in_force_from=null_only_for_version_1", "(version_no = 1) <> (in_force_from IS NULL)", "critical"),
        ("version_date=date(updated_at)", "version_date IS DISTINCT FROM CAST(updated_at AS DATE)", "critical"),
    ],
    "core_dossiers": [
        ("is_received", "is_received <> (status NOT IN (1, 3) AND received_at IS NOT NULL)", "critical"),
        ("received_date=date(received_at)", "received_date IS DISTINCT FROM CAST(received_at AS DATE)",
         "critical"),
        ("due_date=date(due_at)", "due_date_source = 'due_at' AND due_date IS DISTINCT FROM CAST(due_at AS DATE)",
         "critical"),
        ("due_date_source", "(due_date IS NULL) <> (due_date_source IS NULL)", "critical"),
        ("end_date", "end_date IS DISTINCT FROM coalesce(CAST(finished_at AS DATE), CASE WHEN status BETWEEN 7 "
                     "AND 10 THEN CAST(returned_at AS DATE) END)", "critical"),
    ],
    "core_feedback": [
        ("received_date=date(received_at)", "received_date IS DISTINCT FROM CAST(received_at AS DATE)",
         "critical"),
        ("answered_date=date(answered_at)", "answered_date IS DISTINCT FROM CAST(answered_at AS DATE)",
         "critical"),
        ("deadline_date", "received_date IS NOT NULL AND deadline_date IS NULL", "critical"),
    ],
    "core_payments": [
        ("is_success", "is_success IS DISTINCT FROM (status = 'success')", "critical"),
        ("paid_date=date(paid_at)", "paid_date IS DISTINCT FROM CAST(paid_at AS DATE)", "critical"),
    ],
    "core_ratings": [
        ("is_dissatisfied", "is_dissatisfied IS DISTINCT FROM (rating = 1)", "critical"),
        ("rated_date=date(rated_at)", "rated_date IS DISTINCT FROM CAST(rated_at AS DATE)", "critical"),
    ],
    "core_e_certifications": [
        ("certified_date=date(certified_at)", "certified_date IS DISTINCT FROM CAST(certified_at AS DATE)",
         "critical"),
    ],
    "mart_kpi__agency_period": [
        ("value=numerator/denominator", _same_double("value", KPI_VALUE_SQL), "critical"),
        ("denominator_null_only_for_counts", "(kpi_code = 'e_certified_copies') <> (denominator IS NULL)",
         "critical"),
        ("meets_target", "meets_target IS DISTINCT FROM (CASE WHEN kpi_code = 'e_certified_copies' "
                         "THEN value > target ELSE value >= target END)", "critical"),
    ],
    "mart_766__agency_period": [
        ("ratio=numerator/denominator", _same_double("ratio", _ratio_sql("numerator", "denominator")),
         "critical"),
        ("max_score", f"max_score IS DISTINCT FROM {MAX_SCORE_SQL}", "critical"),
        ("no_score_for_3.3_3.6", "indicator_code IN ('3.3', '3.6') AND score IS NOT NULL", "critical"),
    ],
    "mart_tt01_form06__agency_period": [(name, cond, "critical") for name, cond in F06_IDENTITIES],
    "mart_dq__agency_source_period": [
        ("rows_received=rows_staged+rows_quarantined",
         "rows_received IS DISTINCT FROM rows_staged + rows_quarantined", "critical"),
        ("quarantined_rate=rows_quarantined/rows_received",
         "abs(quarantined_rate - rows_quarantined / rows_received) > 1e-9", "critical"),
        # each rule's share counts rows of the quarantined ones: together they make the quarantined rate
        ("sum(rule_shares)=quarantined_rate",
         "abs(coalesce(list_sum(map_values(rule_shares)), 0) - quarantined_rate) > 1e-9", "critical"),
    ],
}
# values that must exist in another rebuilt table (read from its published file): (column, table.column, severity)
REFERENCES = {
    "core_dossiers": [("procedure_code", "core_procedures.procedure_code", "procedure_known", "warning"),
                      ("owner_agency_code", "core_agencies.agency_code", "agency_known", "warning")],
    "core_feedback": [("owner_agency_code", "core_agencies.agency_code", "agency_known", "warning")],
    "core_e_certifications": [("owner_agency_code", "core_agencies.agency_code", "agency_known", "warning")],
    "mart_kpi__agency_period": [("agency_code", "core_agencies.agency_code", "agency_known", "warning")],
    "mart_766__agency_period": [("agency_code", "core_agencies.agency_code", "agency_known", "warning")],
    "mart_tt01_form06__agency_period": [("agency_code", "core_agencies.agency_code", "agency_known", "warning")],
}
# tables that always have rows once the warehouse holds any data (an empty one is reported)
NON_EMPTY = {"core_agencies", "core_procedures", "core_dossiers", "mart_kpi__agency_period",
             "mart_766__agency_period"}


def _staged_contract(table: str) -> dict:
    """Column specs of the staged table of the same entity (``core_dossiers`` -> ``stg_*__dossiers``)."""
    entity = table.removeprefix("core_")
    found = sorted(TABLES.glob(f"stg_*__{entity}.yaml")) if table.startswith("core_") else []
    return {c["name"]: c for c in load_contract(found[0].stem)["columns"]} if found else {}


def _full(cols: list[str], names: list[str]) -> list[str]:
    """Expand a short form-06 name (``c03``) to its column (``c03_received_total``)."""
    out = []
    for n in names:
        out += [c for c in cols if c == n or c.startswith(n + "_")][:1]
    return out


def build_derived_suite(table: str) -> dict:
    c = load_contract(table)
    codes = load_codes()
    cols = c["columns"]
    names = [col["name"] for col in cols]
    stg = _staged_contract(table)
    key = list(c["key"])
    exps: list[dict] = []
    for col in cols:
        exps.append(_exp("expect_column_to_exist", {"column": col["name"]}, f"column_present:{col['name']}",
                         "critical"))
    for col in cols:
        exps.append(_exp("expect_column_values_to_be_of_type",
                         {"column": col["name"], "type_": arrow_type(col["type"])},
                         f"column_type:{col['name']}", "critical", engine="duckdb"))
    not_null = [n for n in key if n not in NULLABLE_KEY.get(table, [])]
    not_null += [n for n in names if stg.get(n, {}).get("required")]
    not_null += _full(names, DERIVED_NOT_NULL.get(table, []))
    for n in dict.fromkeys(not_null):
        exps.append(_exp("expect_column_values_to_not_be_null", {"column": n}, f"not_null:{n}", "critical"))
    for n in NULLABLE_KEY.get(table, []):
        exps.append(_exp("expect_column_values_to_not_be_null", {"column": n}, f"not_null:{n}", "warning"))
    if len(key) == 1:   # GX wants two or more columns in a compound key
        exps.append(_exp("expect_column_values_to_be_unique", {"column": key[0]}, f"unique_key:{key[0]}",
                         "critical"))
    else:
        exps.append(_exp("expect_compound_columns_to_be_unique", {"column_list": key},
                         "unique_key:" + "+".join(key), "critical"))
    # codes: inherited from the staged contract, derived lists, the KPI/indicator codes of the registry
    derived_codes = dict(DERIVED_CODES.get(table, {}))
    derived_codes.update(MEASURE_CODES.get(table, {}))
    for n in names:
        s = stg.get(n, {})
        if s.get("type") == "code":
            exps.append(_exp("expect_column_values_to_be_in_set",
                             {"column": n, "value_set": list(codes[s["codes"]].keys())}, f"code_in_list:{n}",
                             "critical"))
        elif s.get("type") == "code_list":
            keys = "|".join(str(k) for k in codes[s["codes"]].keys())
            exps.append(_exp("expect_column_values_to_match_regex",
                             {"column": n, "regex": f"^(?:{keys})(?:;(?:{keys}))*$"}, f"code_in_list:{n}", "critical"))
        elif n in derived_codes:
            exps.append(_exp("expect_column_values_to_be_in_set", {"column": n, "value_set": derived_codes[n]},
                             f"code_in_list:{n}", "critical"))
        if "pattern" in s:
            exps.append(_exp("expect_column_values_to_match_regex", {"column": n, "regex": s["pattern"]},
                             f"pattern:{n}", "critical"))
    mins = {n: stg[n]["min"] for n in names if "min" in stg.get(n, {})}
    for short, v in DERIVED_MIN.get(table, {}).items():
        for n in _full(names, [short]):
            mins[n] = v
    for n, v in mins.items():
        exps.append(_exp("expect_column_values_to_be_between", {"column": n, "min_value": v}, f"min:{n}",
                         "critical"))
    for n, cond in RATES.get(table, []):
        kw = {"column": n, "min_value": 0, "max_value": 1}
        if cond:
            kw.update(row_condition=cond, condition_parser="pandas")
        exps.append(_exp("expect_column_values_to_be_between", kw, f"rate_in_0_1:{n}", "critical"))
    for a, b, sev, cond, mostly in AT_MOST.get(table, []):
        kw = {"column_A": b, "column_B": a, "or_equal": True, "ignore_row_if": "either_value_is_missing"}
        if mostly < 1:
            kw["mostly"] = mostly
        if cond:
            kw.update(row_condition=cond, condition_parser="pandas")
        prefix = "date_order" if a.endswith(("_date", "_from", "_start")) else "at_most"
        rule = f"{prefix}:{b}>={a}" + (f"[{cond.split(' in ')[-1].strip(' []')}]" if cond else "")
        exps.append(_exp("expect_column_pair_values_a_to_be_greater_than_b", kw, rule.replace("'", ""), sev))
    for name, cond, sev in IDENTITIES.get(table, []):
        exps.append(_exp("unexpected_rows_expectation",
                         {"unexpected_rows_query": "SELECT * FROM {batch} WHERE " + cond},
                         f"identity:{name}", sev, engine="duckdb", where=cond))
    for n, ref, rule, sev in REFERENCES.get(table, []):
        exps.append(_exp("expect_column_values_to_be_in_set", {"column": n, "value_set": []}, f"{rule}:{n}", sev,
                         engine="duckdb", value_set_from=ref))
    exps.append(_exp("expect_table_row_count_to_be_between",
                     {"min_value": 1 if table in NON_EMPTY else 0, "max_value": None}, "row_count", "warning",
                     engine="duckdb"))
    layer, _, entity = table.partition("_")
    return {
        "name": table,
        "expectations": exps,
        "meta": {
            "table": table, "source": layer, "entity": entity, "vi": c["vi"], "en": c["en"], "key": key,
            "columns": [{"name": col["name"], "type": col["type"], "vi": col["vi"], "en": col["en"]}
                        for col in cols],
            "generated_by": "expectations/build_suites.py from expectations/tables/" + f"{table}.yaml",
        },
        "notes": None,
    }


def main() -> None:
    SUITES.mkdir(exist_ok=True)
    for path in sorted(TABLES.glob("*.yaml")):
        stem = path.stem
        suite = build_suite(stem) if stem.startswith("stg_") else build_derived_suite(stem)
        (SUITES / f"{stem}.json").write_text(json.dumps(suite, ensure_ascii=False, indent=1) + "\n",
                                                  encoding="utf-8")
        print(f"{stem}: {len(suite['expectations'])} expectations")


if __name__ == "__main__":
    main()
