"""Analyst access: ``tthc query``, ``tthc explain``, ``tthc dictionary``, ``tthc rulebook``."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tthc.cli import app
from tthc.commands import require_warehouse
from tthc.settings import PROJECT_ROOT, get_settings

console = Console()


def _warehouse(warehouse: Path | None) -> Path:
    return require_warehouse(get_settings(warehouse=warehouse), ledger=False, folder=True)


def _print_arrow(t, title: str | None = None, limit: int = 200) -> None:
    table = Table(title=title, show_lines=False)
    for name in t.column_names:
        table.add_column(name, overflow="fold")
    for row in t.slice(0, limit).to_pylist():
        # values are text, never rich markup: a value such as "[/red]" prints as itself
        table.add_row(*(Text("" if v is None else str(v)) for v in row.values()))
    console.print(table)
    if t.num_rows > limit:
        console.print(f"... {t.num_rows - limit} more rows (use --out to get them all)")


def _write_out(t, out: Path, vi_headers: bool = False) -> None:
    from warehouse.exports import write_table

    headers = None
    if vi_headers:
        from transforms.reports.xlsx_common import vi_headers as labels

        headers = labels(t.column_names)
    try:
        write_table(t, out, headers)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    console.print(f"wrote {t.num_rows} rows to {out}")


_READ_FROM = re.compile(r"read_parquet\(\[?'((?:[^']|'')*)'")
_GLOB = re.compile(r"[*?\[{]")


def view_directories(con) -> list[str]:
    """The folders the connection's views read (their ``read_parquet`` paths up to the first glob character)."""
    dirs: set[str] = set()
    for (sql,) in con.execute("SELECT sql FROM duckdb_views() WHERE NOT internal").fetchall():
        for path in _READ_FROM.findall(sql or ""):
            path = path.replace("''", "'")
            m = _GLOB.search(path)
            head = path[:m.start()] if m else path
            dirs.add(head if head.endswith("/") else head.rsplit("/", 1)[0] + "/")
    return sorted(dirs)


def sandbox(con) -> None:
    """Lock ``con`` to reading what its views read: no other file of the machine (the pseudonym key, raw personal
    data, /etc/passwd), no extension install, no setting changed afterwards."""
    dirs = view_directories(con)
    con.execute("SET allowed_directories = [" + ", ".join("'" + d.replace("'", "''") + "'" for d in dirs) + "]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def read_only_statement(con, sql: str) -> None:
    """Refuse anything but queries (SELECT, WITH, FROM, DESCRIBE, SUMMARIZE, SHOW, EXPLAIN): no COPY ... TO, no
    CREATE, INSERT, ATTACH, SET or PRAGMA."""
    import duckdb

    try:
        stmts = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise typer.BadParameter(str(exc)) from None
    if not stmts:
        raise typer.BadParameter("the SQL gave no rows to show (an empty or non-SELECT statement)")
    allowed = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
    bad = [s for s in stmts if s.type not in allowed]
    if bad:
        kind = str(bad[0].type).rsplit(".", 1)[-1]
        raise typer.BadParameter(f"tthc query only reads the published tables: a {kind} statement is not allowed "
                                 f"(use SELECT ...; --out x.csv, x.xlsx or x.parquet writes the result)")


@app.command()
def query(
    sql: str = typer.Argument(..., help="SQL over the warehouse's tables (each folder is a view)"),
    warehouse: str = typer.Option(None, help="Warehouse root folder or s3://bucket/prefix (TTHC_WAREHOUSE)"),
    out: Path = typer.Option(None, "--out", help="Write the result to x.csv, x.xlsx or x.parquet instead of printing"),
    vi: bool = typer.Option(False, "--vi-headers", help="Vietnamese column headers in x.csv / x.xlsx"),
    limit: int = typer.Option(200, help="Rows to print"),
    include_private: bool = typer.Option(False, "--include-private",
                                         help="Operators only: also the raw_ and quarantine_ tables (personal data)"),
) -> None:
    """Run a read-only query against the published tables (DuckDB views named after the table folders).

    The query reads only what the views read: no other file, no writes (COPY, CREATE, ATTACH are refused)."""
    import duckdb

    from warehouse.views import connect

    from tthc.commands.provinces import read_cache, warehouse_url

    url = warehouse_url(warehouse)  # object storage: a local read copy of what is published (only changes fetched)
    con = connect(read_cache(url, include_private) if url else _warehouse(Path(warehouse) if warehouse else None),
                  include_private=include_private)
    try:
        sandbox(con)
        read_only_statement(con, sql)
        rel = con.sql(sql)
        if rel is None:
            raise typer.BadParameter("the SQL gave no rows to show (an empty or non-SELECT statement)")
        t = rel.to_arrow_table()
    except duckdb.PermissionException:
        raise typer.BadParameter("tthc query reads only the published tables of the warehouse (core_, mart_, stg_"
                                 " views); other files are not readable from it") from None
    except duckdb.Error as exc:  # duckdb errors are plain-worded; show them without a traceback
        raise typer.BadParameter(str(exc)) from None
    finally:
        con.close()
    if out:
        _write_out(t, out, vi)
    else:
        _print_arrow(t, limit=limit)


@app.command()
def explain(
    kpi: str = typer.Option(..., "--kpi", help="kpi_code (on_time_rate...), 766 indicator (2.1...) or form 06 column"),
    agency: str = typer.Option(..., "--agency", help="agency_code (roll-ups include their descendants)"),
    period: str = typer.Option(..., "--period", help="2024-03, 2024-Q1 or 2024"),
    basis: str = typer.Option("calendar", help="calendar or cutoff_15 (form 06)"),
    as_of: str = typer.Option(None, "--as-of", help="Data date (default: the one the marts were built with)"),
    warehouse: Path = typer.Option(None, help="Warehouse root folder (TTHC_WAREHOUSE)"),
    out: Path = typer.Option(None, "--out", help="Write the rows to x.csv, x.xlsx or x.parquet"),
    vi: bool = typer.Option(False, "--vi-headers", help="Vietnamese column headers in x.csv / x.xlsx"),
    limit: int = typer.Option(500, help="Rows to print"),
) -> None:
    """List the dossiers (or feedback items) behind a KPI's numerator and denominator; no personal data."""
    from transforms.marts import explain as explain_rows

    wh = _warehouse(warehouse)
    try:
        t = explain_rows(wh, kpi, agency, period, basis=basis,
                         as_of=date.fromisoformat(as_of) if as_of else None)
    except (KeyError, ValueError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc)) from None
    num = sum(1 for v in t.column("in_numerator").to_pylist() if v)
    title = f"{kpi} · {agency} · {period} ({basis}): numerator {num}, denominator {t.num_rows}"
    if out:
        _write_out(t, out, vi)
        console.print(title)
    else:
        brief = [c for c in t.column_names if c in (
            "dossier_id", "feedback_id", "procedure_code", "counted_for", "status", "received_date", "due_date",
            "answered_date", "deadline_date", "end_date", "class", "in_numerator")]
        _print_arrow(t.select(brief), title=title, limit=limit)


@app.command()
def dictionary(
    out: Path = typer.Option(PROJECT_ROOT / "docs" / "data_dictionary.md", "--out", help="Markdown file to write"),
) -> None:
    """Regenerate the data dictionary (Vietnamese and English) from expectations/tables/*.yaml."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_dictionary(), encoding="utf-8")
    console.print(f"wrote {out}")


@app.command()
def rulebook(
    check: bool = typer.Option(False, "--check", help="Only say whether docs/kpis.md is up to date (exit 1 if not)"),
) -> None:
    """Regenerate the KPI rule book docs/kpis.md from the KPI registry, the rules and the mart contracts."""
    from transforms.kpis.rulebook import main

    raise typer.Exit(main(["--check"] if check else []))


TABLES_DIR = PROJECT_ROOT / "expectations" / "tables"


def render_dictionary(tables_dir: Path = TABLES_DIR) -> str:
    """Markdown data dictionary (Vietnamese and English) of every core_ and mart_ table contract, with the
    measures of the KPI registry under their mart."""
    import yaml

    from transforms.kpis.rulebook import measures_for

    lines = [
        "# Từ điển dữ liệu / Data dictionary",
        "",
        "Generated by `tthc dictionary` from `expectations/tables/*.yaml` and the KPI registry"
        " (`transforms/kpis/registry.py`); do not edit by hand. The rules behind the measures: docs/kpis.md.",
        "Bảng dành cho người phân tích (core_ và mart_). Tables analysts read (core_ and mart_): each is a folder",
        "`<warehouse>/<table>/` of Parquet and a DuckDB view of the same name (`tthc query`, "
        "`warehouse.views.connect`).",
        "",
    ]
    paths = sorted(tables_dir.glob("core_*.yaml")) + sorted(tables_dir.glob("mart_*.yaml"))
    for path in paths:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        lines += [f"## `{spec['table']}`", "", f"- **vi:** {spec.get('vi', '')}", f"- **en:** {spec.get('en', '')}",
                  f"- **key:** {', '.join(f'`{k}`' for k in spec.get('key', []))}", "",
                  "| column | type | vi | en |", "|---|---|---|---|"]
        for c in spec["columns"]:
            vi = str(c.get("vi", "")).replace("|", "\\|")
            en = str(c.get("en", "")).replace("|", "\\|")
            lines.append(f"| `{c['name']}` | {c['type']} | {vi} | {en} |")
        measures = measures_for(spec["table"])  # KPIs, indicators, form 06 columns: transforms/kpis/registry.py
        if measures:
            lines += [""] + measures
        lines.append("")
    return "\n".join(lines)
