"""``tthc run`` (the nightly flow, locally) and ``tthc status`` (the ledger's recent batches)."""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tthc.cli import app
from tthc.commands import require_warehouse
from tthc.settings import get_settings

console = Console(stderr=False, width=None if Console().is_terminal else 160)


def _parse_date(s: str | None) -> date | None:
    if s is None:
        return None
    try:
        return datetime.strptime(s, "%Y-%m-%d").date()
    except ValueError:
        raise typer.BadParameter(f"'{s}' is not a date YYYY-MM-DD") from None


def _batch_table(rows: list[dict], title: str) -> Table:
    t = Table(title=title, show_lines=False)
    for col in ("file", "status", "raw", "staged", "quar.", "batch", "started (UTC)", "note"):
        t.add_column(col, overflow="fold")
    for r in rows:
        note = r.get("error") or ""
        if not note and r.get("unknown_columns") and r["unknown_columns"] != "[]":
            note = "unknown columns: " + ", ".join(json.loads(r["unknown_columns"]))
        style = {"rejected": "red", "failed": "red", "gate_failed": "red"}.get(r.get("status"), None)
        t.add_row(r.get("path") or "", r.get("status") or "",
                  *(str(r.get(k)) if r.get(k) is not None else "" for k in ("rows_raw", "rows_staged",
                                                                             "rows_quarantined")),
                  r["batch_id"], f"{r['started_at']:%Y-%m-%d %H:%M:%S}" if r.get("started_at") else "", note,
                  style=style)
    return t


def _run_flow(s, **params) -> None:
    """Run the nightly flow in this process with progress bars; print the run's batches; exit 1 if it failed."""
    from tthc import watchdog

    watchdog.start()  # first: whatever this run starts (Prefect's temporary API server) ends with it, even on kill -9
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from flows import progress as flow_progress
    from flows.nightly import nightly
    from warehouse.ledger import Ledger

    from transforms.pull.run import configured_pulls
    from tthc.faults import quiet_tracebacks

    quiet_tracebacks()  # Prefect logs a failed task's traceback: to the log file, one line on the console
    if not Path(s.inbox).is_dir() and not configured_pulls(s):
        raise typer.BadParameter(f"inbox folder {s.inbox} does not exist and no source to pull is configured "
                                 f"(--inbox / TTHC_INBOX, or TTHC_DVC_PORTAL_URL / TTHC_ONE_STOP_URL / "
                                 f"TTHC_ONE_STOP_DB_URL)")
    bars: dict[str, int] = {}
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=console,
                  transient=False) as prog:
        def cb(stage: str, done: int, total: int, detail: str) -> None:
            if stage not in bars:
                bars[stage] = prog.add_task(stage, total=total, detail="")
            prog.update(bars[stage], completed=done, total=total, detail=detail[-60:])

        flow_progress.set_callback(cb)
        try:
            state = nightly(inbox=str(s.inbox), warehouse=str(s.warehouse), return_state=True, **params)
        finally:
            flow_progress.set_callback(None)
    ledger = Ledger(s.resolved_ledger_url)
    try:
        runs = ledger.recent_runs(1)
        if runs:
            r = runs[0]
            console.print(_batch_table(ledger.batches_of_run(r["run_id"]), f"Run {r['run_id']} ({r['status']})"))
            summary = json.loads(r["summary_json"] or "{}")
            console.print({k: v for k, v in summary.items() if not isinstance(v, list | dict)})
    finally:
        ledger.dispose()
    if state.is_failed() or state.is_crashed():
        console.print(f"[red]Run failed:[/red] {_failure_sentence(state)}")
        sys.exit(1)
    console.print(f"[green]Run completed:[/green] {state.message}")


def _failure_sentence(state) -> str:
    """The run's failure as the operator reads it: a machine fault (disk full, read-only disk, ledger) as one
    sentence saying what to do; the flow's own message (files, rules) otherwise."""
    from tthc import faults

    try:
        res = state.result(raise_on_failure=False)
    except BaseException as exc:  # noqa: BLE001 - the state's exception is what we want to describe
        res = exc
    if isinstance(res, BaseException) and faults.known(res):
        return faults.sentence(res)
    return state.message or "the run failed (see tthc status)"


@app.command()
def backfill(
    date_from: str = typer.Option(..., "--from", help="First day to re-pull, YYYY-MM-DD"),
    date_to: str = typer.Option(..., "--to", help="Last day to re-pull, YYYY-MM-DD"),
    inbox: Path = typer.Option(None, help="Inbox folder (TTHC_INBOX)"),
    warehouse: Path = typer.Option(None, help="Warehouse root folder (TTHC_WAREHOUSE)"),
    as_of: str = typer.Option(None, "--as-of", help="Data date YYYY-MM-DD (default: yesterday)"),
) -> None:
    """Re-pull a window from every configured source and rebuild every period (idempotent)."""
    from transforms.pull.run import configured_pulls

    s = get_settings(inbox=inbox, warehouse=warehouse)
    lo, hi = _parse_date(date_from), _parse_date(date_to)
    if hi < lo:
        raise typer.BadParameter("--to is before --from")
    if not configured_pulls(s):
        console.print("[yellow]No source to pull is configured[/yellow] (TTHC_DVC_PORTAL_URL, TTHC_ONE_STOP_URL, "
                      "TTHC_ONE_STOP_DB_URL): nothing is re-pulled; the run only rebuilds core and marts from what "
                      "is staged and the inbox.")
    _run_flow(s, as_of=_parse_date(as_of), backfill_from=lo, backfill_to=hi)


@app.command()
def run(
    inbox: Path = typer.Option(None, help="Inbox folder: <inbox>/<source>/<entity>/<file> (TTHC_INBOX)"),
    warehouse: str = typer.Option(None, help="Warehouse root folder or s3://bucket/prefix (TTHC_WAREHOUSE)"),
    as_of: str = typer.Option(None, "--as-of", help="Data date YYYY-MM-DD (default: yesterday, Vietnam time)"),
    full_rebuild: bool = typer.Option(False, "--full-rebuild", help="Rebuild every period of core and marts"),
) -> None:
    """Run the nightly flow now, in this process (Prefect's local API unless PREFECT_API_URL is set)."""
    from tthc.commands.provinces import run_on_object_storage, warehouse_url

    url = warehouse_url(warehouse)
    if url:  # a local working copy, published back with a conditional write (warehouse/objectstore.py)
        return run_on_object_storage(inbox or get_settings().inbox, url, _parse_date(as_of), full_rebuild)
    s = get_settings(inbox=inbox, warehouse=Path(warehouse) if warehouse else None)
    _run_flow(s, as_of=_parse_date(as_of), full_rebuild=full_rebuild)


FAILED_RUN = ("failed", "crashed", "running")
FAILED_BATCH = ("rejected", "failed", "gate_failed")


@app.command()
def status(
    warehouse: Path = typer.Option(None, help="Warehouse root folder (TTHC_WAREHOUSE)"),
    limit: int = typer.Option(10, "--limit", help="How many runs, and how many batches, to show"),
    failed: bool = typer.Option(False, "--failed", help="Only runs and batches that failed, rejected or held"),
) -> None:
    """Print the ledger's recent runs and batches, failures first (a failed night is never pushed off the list by
    later no-op pulls: the last failures are looked up on their own)."""
    from warehouse.ledger import Ledger

    s = get_settings(warehouse=warehouse)
    require_warehouse(s)
    ledger = Ledger(s.resolved_ledger_url, read_only=True)
    try:
        recent = ledger.recent_runs(max(limit * 20, 200))
        failures = [r for r in recent if (r["status"] or "running") in FAILED_RUN][:limit]
        others = [] if failed else [r for r in recent[:limit] if r not in failures]
        t = Table(title=f"Recent runs ({len(failures)} failed first)")
        for col in ("run", "status", "as_of", "started (UTC)", "finished (UTC)", "summary"):
            t.add_column(col, overflow="fold")
        for r in failures + others:
            summ = json.loads(r["summary_json"] or "{}")
            brief = ", ".join(f"{k}={v}" for k, v in summ.items() if not isinstance(v, list | dict))
            t.add_row(r["run_id"], r["status"] or "", str(r["as_of"] or ""),
                      f"{r['started_at']:%Y-%m-%d %H:%M:%S}" if r["started_at"] else "",
                      f"{r['finished_at']:%Y-%m-%d %H:%M:%S}" if r["finished_at"] else "", brief,
                      style="red" if r in failures else None)
        console.print(t)
        batches = ledger.recent_batches(max(limit * 60, 600))
        bad = [b for b in batches if b.get("status") in FAILED_BATCH][:limit]
        rest = [] if failed else [b for b in batches if b not in bad][:max(limit - len(bad), 0)]
        console.print(_batch_table(bad + rest, f"Recent batches ({len(bad)} rejected, failed or held first)"))
    finally:
        ledger.dispose()


@app.command()
def release(
    batch_id: str = typer.Argument(None, help="The held batch to release; omit to list the held batches"),
    reason: str = typer.Option(None, "--reason", help="Why the batch is right after all (kept in the ledger)"),
    warehouse: Path = typer.Option(None, help="Warehouse root folder (TTHC_WAREHOUSE)"),
) -> None:
    """List batches the quality gate is holding, or release one into core and marts at the next run."""
    from transforms import ingest
    from warehouse.ledger import Ledger
    from warehouse.lock import warehouse_lock

    s = get_settings(warehouse=warehouse)
    require_warehouse(s, ledger=batch_id is not None, folder=True)
    if batch_id is None:
        held = ingest.held_batches(s.warehouse)
        t = Table(title=f"Held batches in {s.warehouse}")
        t.add_column("batch")
        t.add_column("table")
        for p in held:
            t.add_row(p.stem, p.parent.name)
        console.print(t if held else "No batch is held.")
        return
    if not reason:
        raise typer.BadParameter("say why with --reason (it is kept in the ledger)")
    with warehouse_lock(s.warehouse, wait_seconds=60):
        ledger = Ledger(s.resolved_ledger_url)
        try:
            dst = ingest.release_batch(s.warehouse, ledger, batch_id, reason)
        except (FileNotFoundError, ingest.ReleaseRefused) as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
        finally:
            ledger.dispose()
    console.print(f"released {batch_id} -> {dst}; the next run builds it into core and marts")
