"""``tthc dq``: the latest data-quality results from the ledger, as a table."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tthc.cli import app
from tthc.commands import require_warehouse
from tthc.settings import get_settings


def _say_when_older(shown: str, source, entity, agency, s) -> None:
    """When the filters matched only an older run's checks, say so, and name what the latest run failed on that
    the filters cannot see (a held file whose checks name no agency)."""
    from warehouse.ledger import Ledger

    led = Ledger(s.resolved_ledger_url, read_only=True)
    try:
        newest = led.dq_history(limit=1)
        if not newest or newest[0]["run_id"] == shown:
            return
        last = newest[0]["run_id"]
        unseen = [r for r in led.dq_history(run_id=last, limit=100_000) if not r["success"]]
    finally:
        led.dispose()
    asked = ", ".join(f"{k} {v}" for k, v in (("--source", source), ("--entity", entity), ("--agency", agency)) if v)
    typer.secho(f"Note: the latest checks (run {last}) have no result for {asked}; what follows is from the earlier "
                f"run {shown}.", fg="yellow")
    if unseen:
        crit = sum(1 for r in unseen if r["severity"] == "critical")
        typer.secho(f"Run {last} failed {len(unseen)} check(s) ({crit} critical) that these filters do not match "
                    f"(e.g. a held file): see `tthc dq --run {last}`.", fg="red")


@app.command("dq")
def dq(warehouse: Path = typer.Option(None, "--warehouse", help="Warehouse folder (default: TTHC_WAREHOUSE)."),
       run_id: str = typer.Option(None, "--run", help="A run id (default: the latest run with DQ results)."),
       all_checks: bool = typer.Option(False, "--all", help="Show passed checks too."),
       source: str = typer.Option(None, help="Only this source (one_stop, dvc_portal)."),
       entity: str = typer.Option(None, help="Only this entity (dossiers, feedback, ...)."),
       agency: str = typer.Option(None, help="Only this agency code.")) -> None:
    """Print the latest data-quality results (failed checks first; --all for every check)."""
    from warehouse.ledger import Ledger

    s = get_settings(warehouse=warehouse)
    require_warehouse(s)
    led = Ledger(s.resolved_ledger_url, read_only=True)
    try:
        rows = led.dq_history(source=source, entity=entity, agency_code=agency, run_id=run_id, limit=100_000)
    finally:
        led.dispose()
    if not rows:
        asked = {"--run": run_id, "--source": source, "--entity": entity, "--agency": agency}
        asked = ", ".join(f"{k} {v}" for k, v in asked.items() if v)
        typer.echo(f"No data-quality results match {asked}." if asked else "No data-quality results in the ledger yet.")
        raise typer.Exit(0)
    latest = run_id or rows[0]["run_id"]
    rows = [r for r in rows if r["run_id"] == latest]
    if run_id is None:
        _say_when_older(latest, source, entity, agency, s)
    failed = [r for r in rows if not r["success"]]
    shown = sorted(rows if all_checks else failed,
                   key=lambda r: (r["success"], r["severity"] != "critical", r["table_name"] or "", r["check_name"]))
    t = Table(title=f"Data quality, run {latest}: {len(rows)} checks, {len(failed)} failed "
                    f"({sum(1 for r in failed if r['severity'] == 'critical')} critical)")
    for col in ("severity", "ok", "table", "batch", "agency", "rule", "unexpected", "%", "examples"):
        t.add_column(col, overflow="fold")
    for r in shown:
        ex = json.loads(r["examples_json"]) if r.get("examples_json") else []
        style = None if r["success"] else ("red" if r["severity"] == "critical" else "yellow")
        t.add_row(r["severity"], "yes" if r["success"] else "NO", r["table_name"] or "", r["batch_id"] or "",
                  r["agency_code"] or "", r["check_name"], f"{r['unexpected_count'] or 0:,}",
                  f"{r['unexpected_percent'] or 0:.2f}", ", ".join(ex[:3]), style=style)
    Console(width=200).print(t)
    if not shown:
        typer.echo("All checks passed.")
