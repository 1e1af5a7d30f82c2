"""Follow-up of the KPIs: ``tthc reconcile`` (the portal's 766 scores against the marts) and ``tthc due`` (open
dossiers to act on before the period closes)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tthc.cli import app
from tthc.commands import require_warehouse
from tthc.settings import get_settings

console = Console()


def _wh(warehouse: Path | None) -> Path:
    return require_warehouse(get_settings(warehouse=warehouse), ledger=False, folder=True)


def _num(x, digits: int = 2) -> str:
    from transforms.reports.texts import number

    return number(x, digits) if x is not None else ""


@app.command()
def reconcile(
    portal_scores: Path = typer.Option(..., "--portal-scores",
                                       help="The portal's 766 score export (.csv or .xlsx): agency code or name, "
                                            "period, indicator, score, maximum"),
    warehouse: Path = typer.Option(None, help="Warehouse root folder (TTHC_WAREHOUSE)"),
    tolerance: float = typer.Option(0.01, "--tolerance", help="Differences up to this many points are not listed"),
    out: Path = typer.Option(None, "--out", help="Also write the differences to F.csv or F.xlsx"),
) -> None:
    """Compare the national portal's Decision 766 scores with the project's (mart_766__agency_period): every
    difference above the tolerance with the counts behind the project's score and the command listing the
    dossiers."""
    from transforms.reports.reconcile import RESULT_HEADERS_VI, ReconcileError
    from transforms.reports.reconcile import reconcile as run
    from transforms.reports.reconcile import write_differences

    wh = _wh(warehouse)
    if tolerance < 0:
        raise typer.BadParameter("--tolerance must be 0 or more")
    if out is not None and out.suffix.lower() not in (".csv", ".xlsx"):
        raise typer.BadParameter(f"--out must end in .csv or .xlsx, got {out.name}")
    try:
        res = run(wh, portal_scores, tolerance=tolerance, warehouse_arg=str(warehouse or wh))
    except ReconcileError as exc:
        raise typer.BadParameter(str(exc)) from None
    for p in res.problems:
        console.print(Text(f"! {p}", style="yellow"))
    for n in res.notes:
        console.print(Text(f"- {n}", style="dim"))
    cols = ("agency_code", "agency_name", "period", "indicator_code", "portal_score", "project_score",
            "difference", "numerator", "denominator", "explain")
    t = Table(title=f"{len(res.differences)} khác biệt trên {tolerance:g} điểm / {res.compared} dòng đã so sánh")
    for c in cols:
        t.add_column(RESULT_HEADERS_VI[c], overflow="fold")
    for d in res.differences:
        t.add_row(*(Text(_num(d[c]) if isinstance(d[c], float) else "" if d[c] is None else str(d[c]))
                    for c in cols))
    console.print(t)
    if out is not None:
        write_differences(res, out)
        console.print(f"wrote {len(res.differences)} rows to {out}")
    if res.problems:
        raise typer.Exit(1)


@app.command()
def due(
    warehouse: Path = typer.Option(None, help="Warehouse root folder (TTHC_WAREHOUSE)"),
    agency: str = typer.Option(None, "--agency", help="Agency code (default: every agency at the top, with units)"),
    days: int = typer.Option(5, "--days", help="Due within this many working days"),
    as_of: str = typer.Option(None, "--as-of", help="Data date YYYY-MM-DD (default: the marts')"),
    period_type: str = typer.Option("quarter", "--period-type", help="month, quarter or year"),
    out: Path = typer.Option(None, "--out", help="Also write the lists to F.csv or F.xlsx (Vietnamese headers)"),
) -> None:
    """Per agency: the open dossiers due within N working days and those already overdue, with what the period's
    on-time rate becomes (no personal data)."""
    from transforms.reports.due import DUE_HEADERS_VI, due_lists, due_table
    from transforms.reports.texts import percent

    wh = _wh(warehouse)
    settings = get_settings(warehouse=warehouse)
    if period_type not in ("month", "quarter", "year"):
        raise typer.BadParameter("--period-type must be month, quarter or year")
    if out is not None and out.suffix.lower() not in (".csv", ".xlsx"):
        raise typer.BadParameter(f"--out must end in .csv or .xlsx, got {out.name}")
    try:
        lists = due_lists(wh, agency=agency, days=days, period_type=period_type,
                          as_of=date.fromisoformat(as_of) if as_of else None,
                          extra_days_off=settings.resolved_extra_days_off_path)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if out is not None:
        from warehouse.exports import write_table

        t = due_table(lists)
        write_table(t, out, DUE_HEADERS_VI)
        console.print(f"wrote {t.num_rows} rows to {out}")
    if not lists:
        console.print(f"Không có hồ sơ đang giải quyết đã quá hạn hoặc đến hạn trong {days} ngày làm việc.")
        return
    for a in lists:
        console.print(Text(f"{a.agency_name} ({a.agency_code}) · kỳ {a.period}: tỷ lệ đúng hạn "
                           f"{percent(a.rate_now)} nếu giải quyết đúng hạn tất cả; {percent(a.rate_if_late)} "
                           f"nếu các hồ sơ đến hạn trong kỳ bị trễ", style="bold"))
        t = Table(show_lines=False)
        for h in ("", "Mã hồ sơ", "Thủ tục", "Lĩnh vực", "Ngày tiếp nhận", "Hạn xử lý", "Ngày làm việc còn lại",
                  "Ghi chú"):
            t.add_column(h, overflow="fold")
        for label, items in (("Quá hạn", a.overdue), ("Đến hạn", a.due_soon)):
            for i in items:
                t.add_row(label, i["dossier_id"], Text(i["procedure_name"] or i["procedure_code"] or ""),
                          Text(i["field_name"] or ""), f"{i['received_date']:%d/%m/%Y}",
                          f"{i['due_date']:%d/%m/%Y}" if i["due_date"] else "",
                          "" if i["days_left"] is None else str(i["days_left"]), Text(i["note"]))
        console.print(t)
