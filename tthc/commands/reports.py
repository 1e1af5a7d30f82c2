"""``tthc report``: the KPI report of a period (report.html, report.pdf where Chromium is installed, form06.xlsx,
kpi.xlsx) for an agency and its units, from the published marts."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from tthc.cli import app
from tthc.commands import require_warehouse
from tthc.settings import get_settings

console = Console()


@app.command()
def report(
    period: str = typer.Option(..., "--period", help="2025-11 (month), 2025-Q4 (quarter) or 2025 (year)"),
    out: Path = typer.Option(..., "--out", help="Folder to write report.html, report.pdf, form06.xlsx, kpi.xlsx"),
    agency: str = typer.Option(None, "--agency", help="Agency code (default: every agency at the top of the "
                                                      "hierarchy, with its units)"),
    warehouse: Path = typer.Option(None, help="Warehouse root folder (TTHC_WAREHOUSE)"),
    pdf: bool = typer.Option(True, "--pdf/--no-pdf", help="Print report.pdf with headless Chromium"),
    portal_scores: Path = typer.Option(None, "--portal-scores", help="The portal's 766 score export (.csv/.xlsx): "
                                                                      "a section comparing it with the marts "
                                                                      "(TTHC_PORTAL_SCORES_PATH)"),
    due_days: int = typer.Option(None, "--due-days", help="Open dossiers due within this many working days "
                                                          "(TTHC_DUE_DAYS, 5)"),
) -> None:
    """Write the KPI report of a period in Vietnamese: the page (offline, charts inline), its PDF, form 06 and the
    KPI workbook."""
    from transforms.reports.data import ReportDataError, load
    from transforms.reports.kpi_report import write_report
    from transforms.reports.periods import PeriodError, parse
    from transforms.reports.workbooks import write_workbooks

    settings = get_settings(warehouse=warehouse)
    wh = require_warehouse(settings, ledger=False, folder=True)
    portal_scores = portal_scores or settings.portal_scores_path
    due_days = settings.due_days if due_days is None else due_days
    try:
        p = parse(period)
        d = load(wh, p, agency)
    except (PeriodError, ReportDataError) as exc:
        raise typer.BadParameter(str(exc)) from None
    from transforms.reports.reconcile import ReconcileError

    try:
        files = write_report(wh, p, out, agency, pdf=pdf, data=d, portal_scores=portal_scores, due_days=due_days)
    except ReconcileError as exc:
        raise typer.BadParameter(str(exc)) from None
    books = write_workbooks(wh, p, agency, out, loaded=d)
    for f in (files.html, files.pdf, books.get("form06"), books.get("kpi")):
        if f is not None:
            console.print(f"wrote {f}")
    if pdf and files.pdf is None:
        console.print(files.note, style="yellow", markup=False)
