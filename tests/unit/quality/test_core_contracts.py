"""Contracts of the rebuilt tables: every core/mart suite passes on the sample's tables and fails on crafted bad files.

The sample tables come from the session fixture ``sample_warehouse`` (the nightly flow once on
../shared/samples/inbox); the crafted files are those tables with one defect written into a copy, so each test
shows which rule catches which defect and that nothing else breaks.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from expectations.build_suites import TABLES, build_derived_suite
from transforms.quality.tables import ContractViolation, validate_table, validator
from warehouse.store import table_files, table_glob, write_table

SUITES = Path(__file__).resolve().parents[3] / "expectations" / "suites"
DERIVED = sorted(p.stem for p in TABLES.glob("*.yaml") if p.stem.startswith(("core_", "mart_")))
KPI, I766, F06 = "mart_kpi__agency_period", "mart_766__agency_period", "mart_tt01_form06__agency_period"


# --- the generated suites ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("table", DERIVED)
def test_committed_suite_is_the_generated_one(table):
    """The reviewed JSON is what build_suites generates from the YAML (run ``python -m expectations.build_suites``)."""
    committed = json.loads((SUITES / f"{table}.json").read_text(encoding="utf-8"))
    assert committed == json.loads(json.dumps(build_derived_suite(table)))
    for e in committed["expectations"]:
        assert e["meta"]["severity"] in ("critical", "warning") and e["meta"]["rule"]


def test_suites_carry_the_rules_the_marts_need():
    rules = {t: {e["meta"]["rule"]: e for e in json.loads((SUITES / f"{t}.json").read_text())["expectations"]}
             for t in DERIVED}
    f06 = rules[F06]
    for ident in ("c03=c04+c05+c06", "c03=c07+c11", "c07=c08+c09+c10", "c11=c12+c13"):
        assert f06[f"identity:{ident}"]["severity"] == "critical"
    assert rules[KPI]["at_most:denominator>=numerator"]["severity"] == "critical"
    assert rules[I766]["at_most:max_score>=score"]["severity"] == "critical"
    assert rules["core_dossiers"]["procedure_known:procedure_code"]["severity"] == "warning"
    # a due date as exported may precede the receipt (warning); one computed from the legal time may not
    assert rules["core_dossiers"]["date_order:due_date>=received_date[due_at]"]["severity"] == "warning"
    assert rules["core_dossiers"]["date_order:due_date>=received_date[legal_days]"]["severity"] == "critical"
    kpis = set(rules[KPI]["code_in_list:kpi_code"]["kwargs"]["value_set"])
    assert {"on_time_rate", "e_certified_copies", "procedures_simplified_rate"} <= kpis
    for t in DERIVED:
        assert any(r.startswith("unique_key:") for r in rules[t]), t


# --- the sample's tables pass -------------------------------------------------------------------------------------
@pytest.mark.parametrize("table", DERIVED)
def test_sample_tables_pass(sample_warehouse, table):
    # a table folder is validated as one table (core_dossiers may be written as one file per month)
    g = validate_table(sample_warehouse / table, table, gx_sample_rows=0)
    assert g.rows > 0
    assert g.passed, [r.message for r in g.criticals]
    assert not g.warnings, [r.message for r in g.warnings]
    names = {r.name for r in g.results}
    assert any(n.startswith("unique_key:") for n in names) and "row_count" in names


def test_gx_checkpoint_agrees_on_the_sample(sample_warehouse):
    """The GX checkpoint (narrow sample) runs every GX-engine expectation without error and agrees with DuckDB."""
    for table in ("core_dossiers", KPI, F06):
        g = validate_table(sample_warehouse / table, table, gx_sample_rows=500)
        checked = [r for r in g.results if "gx_sample" in r.observed]
        assert len(checked) > 10
        for r in checked:
            gx = r.observed["gx_sample"]
            assert gx["exception"] is None, (r.name, gx)
            assert gx["success"] == r.success, (r.name, gx)


# --- crafted bad files --------------------------------------------------------------------------------------------
def _craft(sample: Path, tmp: Path, table: str, sql: str) -> Path:
    """Copy the sample's reference tables into a fresh warehouse and write ``table`` changed by ``sql``
    (a query over ``t``) as a file written aside, as warehouse.store does before the swap."""
    for ref in ("core_agencies", "core_procedures"):
        (tmp / ref).mkdir(parents=True, exist_ok=True)
        for f in table_files(sample, ref):
            shutil.copy(f, tmp / ref / f.name)
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS SELECT * FROM read_parquet('{table_glob(sample, table)}')")
    data = con.sql(sql).to_arrow_table()
    con.close()
    (tmp / table).mkdir(parents=True, exist_ok=True)
    path = tmp / table / ".data.0badf11e.tmp"
    pq.write_table(data, path)
    return path


def _critical(g, rule):
    bad = {r.name: r for r in g.criticals}
    assert not g.passed and rule in bad, [r.name for r in g.criticals]
    return bad[rule]


def test_duplicate_key_is_critical(sample_warehouse, tmp_path):
    p = _craft(sample_warehouse, tmp_path, "core_dossiers",
               "SELECT * FROM t UNION ALL (SELECT * FROM t ORDER BY dossier_id LIMIT 1)")
    g = validate_table(p, "core_dossiers", gx_sample_rows=0)
    r = _critical(g, "unique_key:dossier_id")
    assert r.unexpected_count == 2 and r.observed["duplicate_keys"] == 1
    first = duckdb.sql(f"SELECT min(dossier_id) FROM '{table_glob(sample_warehouse, 'core_dossiers')}'"
                       ).fetchall()[0][0]
    assert r.examples[0].startswith(first) and "data.parquet" in r.message
    assert [x.name for x in g.criticals] == ["unique_key:dossier_id"]   # nothing else broke


def test_rate_above_one_is_critical(sample_warehouse, tmp_path):
    p = _craft(sample_warehouse, tmp_path, KPI, """
        WITH one AS (SELECT agency_code, period_type, period FROM t WHERE kpi_code = 'on_time_rate'
                     AND denominator > 0 ORDER BY ALL LIMIT 1)
        SELECT t.* REPLACE (CASE WHEN one.period IS NOT NULL AND t.kpi_code = 'on_time_rate' THEN 1.5
                                 ELSE t.value END AS value)
        FROM t LEFT JOIN one USING (agency_code, period_type, period)""")
    g = validate_table(p, KPI, gx_sample_rows=0)
    r = _critical(g, "rate_in_0_1:value")
    assert r.unexpected_count == 1 and "on_time_rate" in r.examples[0]
    assert _critical(g, "identity:value=numerator/denominator").unexpected_count == 1


def test_numerator_above_denominator_is_critical(sample_warehouse, tmp_path):
    p = _craft(sample_warehouse, tmp_path, I766, """
        SELECT * REPLACE (CASE WHEN indicator_code = '4.3' AND denominator > 0 THEN denominator + 1
                               ELSE numerator END AS numerator) FROM t""")
    n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{p}') WHERE indicator_code = '4.3' AND denominator > 0"
                   ).fetchall()[0][0]
    g = validate_table(p, I766, gx_sample_rows=0)
    r = _critical(g, "at_most:denominator>=numerator")
    assert n > 0 and r.unexpected_count == n
    # the stored ratio no longer matches the counts either
    assert _critical(g, "identity:ratio=numerator/denominator").unexpected_count == n


def test_form06_identity_broken_is_critical(sample_warehouse, tmp_path):
    p = _craft(sample_warehouse, tmp_path, F06, """
        SELECT * REPLACE (CASE WHEN agency_code = (SELECT min(agency_code) FROM t) AND period = '2025'
                               THEN c04_received_online + 1 ELSE c04_received_online END AS c04_received_online)
        FROM t""")
    g = validate_table(p, F06, gx_sample_rows=0)
    r = _critical(g, "identity:c03=c04+c05+c06")
    assert r.unexpected_count > 0 and "|2025|" in r.examples[0]
    assert {x.name for x in g.criticals} == {"identity:c03=c04+c05+c06"}


def test_due_date_before_receipt(sample_warehouse, tmp_path):
    """A promised date before the receipt is reported (warning); a computed one is a build error (critical)."""
    p = _craft(sample_warehouse, tmp_path, "core_dossiers", """
        SELECT * REPLACE (CASE WHEN dossier_id = (SELECT min(dossier_id) FROM t WHERE due_date_source = 'due_at')
                               THEN received_at - INTERVAL 3 DAY ELSE due_at END AS due_at,
                          CASE WHEN dossier_id = (SELECT min(dossier_id) FROM t WHERE due_date_source = 'due_at')
                               THEN received_date - 3 ELSE due_date END AS due_date) FROM t""")
    g = validate_table(p, "core_dossiers", gx_sample_rows=0)
    assert g.passed, [r.message for r in g.criticals]
    assert [r.name for r in g.warnings] == ["date_order:due_date>=received_date[due_at]"]
    p2 = _craft(sample_warehouse, tmp_path / "b", "core_dossiers", """
        SELECT * REPLACE (CASE WHEN due_date_source = 'legal_days' THEN received_date - 1 ELSE due_date END
                          AS due_date) FROM t""")
    g2 = validate_table(p2, "core_dossiers", gx_sample_rows=0)
    _critical(g2, "date_order:due_date>=received_date[legal_days]")


def test_validator_keeps_the_previous_table_and_records_the_ledger(sample_warehouse, tmp_path):
    from warehouse.ledger import Ledger

    wh = tmp_path / "wh"
    good = pq.read_table(sample_warehouse / F06 / "data.parquet")
    led = Ledger(f"sqlite:///{tmp_path / 'l.sqlite'}")
    try:
        write_table(wh, F06, good, validate=validator(F06, ledger=led, run_id="r1", gx_sample_rows=0))
        before = (wh / F06 / "data.parquet").read_bytes()
        c = good.column("c07_resolved_total").to_pylist()
        c[0] += 1
        bad = good.set_column(good.schema.get_field_index("c07_resolved_total"), "c07_resolved_total",
                              pa.array(c, pa.int64()))
        with pytest.raises(ContractViolation) as ei:
            write_table(wh, F06, bad, validate=validator(F06, ledger=led, run_id="r2", gx_sample_rows=0))
        msg = str(ei.value)
        assert F06 in msg and "identity:c03=c07+c11" in msg and "identity:c07=c08+c09+c10" in msg
        assert "1 of" in msg and "(row 1)" in msg
        assert ei.value.table == F06 and {r.name for r in ei.value.failures} == {
            "identity:c03=c07+c11", "identity:c07=c08+c09+c10"}
        assert (wh / F06 / "data.parquet").read_bytes() == before
        assert sorted(p.name for p in (wh / F06).iterdir()) == ["data.parquet"]
        rows = led.dq_history(run_id="r2")
        failed = {r["check_name"] for r in rows if not r["success"]}
        assert failed == {"identity:c03=c07+c11", "identity:c07=c08+c09+c10"}
        assert {r["table_name"] for r in rows} == {F06} and {r["source"] for r in rows} == {"mart"}
        assert all(r["success"] for r in led.dq_history(run_id="r1"))
    finally:
        led.dispose()


def test_dq_mart_counts_that_do_not_add_up_are_critical(sample_warehouse, tmp_path):
    """mart_dq__agency_source_period: received = staged + quarantined, and the rules' shares make the quarantined
    rate; one row with a quarantined row too many breaks both, and nothing else."""
    dq = "mart_dq__agency_source_period"
    p = _craft(sample_warehouse, tmp_path, dq, """
        WITH one AS (SELECT agency_code, source, entity, period FROM t WHERE rows_quarantined > 0
                     ORDER BY ALL LIMIT 1)
        SELECT t.* REPLACE (t.rows_quarantined + CASE WHEN one.period IS NULL THEN 0 ELSE 1 END
                              AS rows_quarantined)
        FROM t LEFT JOIN one USING (agency_code, source, entity, period)""")
    g = validate_table(p, dq, gx_sample_rows=0)
    assert _critical(g, "identity:rows_received=rows_staged+rows_quarantined").unexpected_count == 1
    assert _critical(g, "identity:quarantined_rate=rows_quarantined/rows_received").unexpected_count == 1
    assert {r.name for r in g.criticals} == {"identity:rows_received=rows_staged+rows_quarantined",
                                            "identity:quarantined_rate=rows_quarantined/rows_received"}


@pytest.mark.parametrize("table", ["core_ratings", "core_dossiers", KPI])
def test_an_empty_table_passes_its_contract_with_a_row_count_warning(sample_warehouse, tmp_path, table):
    """An inbox without ratings (or any entity) builds an empty core table: its contract counts nothing broken
    (count_if over no rows is NULL in DuckDB 2.0 and crashed the build); at most the row count warns."""
    p = _craft(sample_warehouse, tmp_path, table, "SELECT * FROM t LIMIT 0")
    g = validate_table(p, table, gx_sample_rows=0)
    assert g.passed and g.rows == 0
    assert {r.name for r in g.warnings} <= {"row_count"}  # some tables may be empty by contract
