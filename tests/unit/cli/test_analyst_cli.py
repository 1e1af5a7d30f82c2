"""`tthc query` and `tthc explain` on a built warehouse, as an analyst types them: tables, files, mistakes."""

from __future__ import annotations

import csv

import duckdb
import pytest
from typer.testing import CliRunner

from tthc.cli import app


@pytest.fixture
def built(staged):
    staged.procedure()
    staged.dossier("C1-1", finished_at="2024-03-05", status=10)
    staged.dossier("C2-1", status=4, procedure_name="Đăng ký khai sinh")
    staged.build()
    return staged.wh


def _run(*args):
    return CliRunner().invoke(app, [*args], catch_exceptions=False)


def _flat(output: str) -> str:
    """The output with rich's error box and line folds taken out."""
    return " ".join(output.replace("│", " ").split())


def test_query_prints_writes_csv_for_excel_and_parquet(built, tmp_path):
    sql = ("SELECT agency_code, period, numerator, denominator FROM mart_kpi__agency_period "
           "WHERE kpi_code = 'on_time_rate' AND period = '2024-Q1' ORDER BY agency_code")
    res = _run("query", "--warehouse", str(built), sql)
    assert res.exit_code == 0 and "C1" in res.output and "2024-Q1" in res.output, res.output
    out = tmp_path / "r.csv"
    assert _run("query", "--warehouse", str(built), "--out", str(out),
                "SELECT dossier_id, procedure_name FROM core_dossiers ORDER BY 1").exit_code == 0
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # a BOM: Excel reads the Vietnamese names right
    rows = list(csv.reader(raw.decode("utf-8-sig").splitlines()))
    assert rows[0] == ["dossier_id", "procedure_name"] and rows[2] == ["C2-1", "Đăng ký khai sinh"]
    pq = tmp_path / "r.parquet"
    assert _run("query", "--warehouse", str(built), "--out", str(pq), sql).exit_code == 0
    got = duckdb.sql(f"SELECT agency_code, numerator, denominator FROM '{pq}' WHERE agency_code = 'C1'").fetchall()
    assert got == [("C1", 1, 1)]
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("sql, says", [("", "no rows to show"), ("SELECT * FROM mart_nope", "mart_nope"),
                                       ("SELEC 1", "syntax")])
def test_query_mistakes_are_named_without_a_traceback(built, sql, says):
    res = CliRunner().invoke(app, ["query", "--warehouse", str(built), sql])
    assert res.exit_code == 2 and says in _flat(res.output), res.output


def test_explain_lists_the_dossiers_and_refuses_a_wrong_agency(built, tmp_path):
    res = _run("explain", "--warehouse", str(built), "--kpi", "on_time_rate", "--agency", "P", "--period", "2024-Q1")
    assert res.exit_code == 0 and "numerator" in res.output and "C1-1" in res.output, res.output
    out = tmp_path / "e.csv"
    assert _run("explain", "--warehouse", str(built), "--kpi", "on_time_rate", "--agency", "P", "--period",
                "2024-Q1", "--out", str(out)).exit_code == 0
    assert {r["dossier_id"] for r in csv.DictReader(out.read_text(encoding="utf-8-sig").splitlines())} == {
        "C1-1", "C2-1"}
    res = CliRunner().invoke(app, ["explain", "--warehouse", str(built), "--kpi", "on_time_rate", "--agency", "p",
                                   "--period", "2024-Q1"])
    assert res.exit_code == 2 and "nearest: P, C1" in _flat(res.output), res.output


@pytest.mark.parametrize("cmd", [["query", "SELECT 1"],
                                 ["explain", "--kpi", "on_time_rate", "--agency", "P", "--period", "2024"]])
def test_query_and_explain_on_a_missing_warehouse_say_so(tmp_path, cmd):
    res = CliRunner().invoke(app, [*cmd, "--warehouse", str(tmp_path / "absent")])
    assert res.exit_code == 2 and "No warehouse at" in _flat(res.output) and "absent" in res.output, res.output


def test_csv_out_neutralises_formulas_and_markup_prints_as_text(staged, tmp_path):
    """A field name such as =HYPERLINK(...) or @SUM(...) from an export must not run when the CSV is opened in
    Excel, and a value that looks like rich markup prints as itself instead of crashing the table print."""
    staged.procedure()
    hostile = ['=HYPERLINK("http://x.example/a","bấm")', "+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0",
               "-2+3", "\t=1+1", "[/red]"]
    for i, name in enumerate(hostile, start=1):
        staged.dossier(f"C1-{i}", status=4, field_name=name)
    staged.build()
    out = tmp_path / "f.csv"
    sql = "SELECT dossier_id, field_name, 1 - 3 AS negative FROM core_dossiers ORDER BY dossier_id"
    assert _run("query", "--warehouse", str(staged.wh), "--out", str(out), sql).exit_code == 0
    rows = list(csv.DictReader(out.read_text(encoding="utf-8-sig").splitlines()))
    got = {r["dossier_id"]: r["field_name"] for r in rows}
    assert [got[f"C1-{i}"] for i in range(1, 6)] == ["'" + v for v in hostile[:5]]
    assert got["C1-6"] == "[/red]"  # not formula-like: written as it is
    assert {r["negative"] for r in rows} == {"-2"}  # a number stays a number
    res = _run("query", "--warehouse", str(staged.wh), "SELECT field_name FROM core_dossiers ORDER BY 1")
    assert res.exit_code == 0 and "[/red]" in res.output


@pytest.mark.parametrize("sql, says", [
    ("SELECT * FROM read_csv('/etc/passwd')", "only the published tables"),
    ("SELECT * FROM read_parquet('{wh}/raw_one_stop__dossiers/*.parquet')", "only the published tables"),
    ("SELECT * FROM read_text('{wh}/_secrets/pseudonym.key')", "only the published tables"),
    ("COPY (SELECT 1) TO '{wh}/mart_kpi__agency_period/evil.parquet'", "COPY statement is not allowed"),
    ("CREATE TABLE x AS SELECT 1", "not allowed"),
    ("ATTACH '{wh}/x.db'", "not allowed"),
    ("SET enable_external_access = true", "not allowed"),
    ("SELECT 1; COPY (SELECT 1) TO '{wh}/x.csv'", "not allowed"),
])
def test_query_reads_only_the_published_tables(built, sql, says):
    """tthc query cannot read other files of the machine (the pseudonym key, raw personal data) nor write any."""
    (built / "_secrets").mkdir(exist_ok=True)
    (built / "_secrets" / "pseudonym.key").write_text("secret")
    (built / "raw_one_stop__dossiers").mkdir(exist_ok=True)
    before = sorted(p.relative_to(built) for p in built.rglob("*"))
    res = CliRunner().invoke(app, ["query", "--warehouse", str(built), sql.format(wh=built)])
    assert res.exit_code == 2 and says in _flat(res.output), res.output
    assert "secret" not in res.output
    assert sorted(p.relative_to(built) for p in built.rglob("*")) == before  # nothing written


def test_query_still_reads_every_published_view(built):
    res = _run("query", "--warehouse", str(built),
               "SELECT (SELECT count(*) FROM core_dossiers) AS d, (SELECT count(*) FROM mart_kpi__agency_period) > 0 "
               "AS k, (SELECT count(*) FROM stg_one_stop__dossiers) AS s")
    assert res.exit_code == 0 and "2" in res.output and "True" in res.output, res.output
