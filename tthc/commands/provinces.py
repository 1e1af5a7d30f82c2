"""``tthc run-provinces``: every province folder of an inbox root, in parallel on Dask, then the national roll-up."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tthc.cli import app

console = Console(stderr=False, width=None if Console().is_terminal else 160)


def warehouse_url(option: str | None) -> str | None:
    """The ``s3://`` URL given by ``--warehouse`` or ``TTHC_WAREHOUSE`` (settings keep folders only), else None."""
    from warehouse.objectstore import is_url

    where = option or os.environ.get("TTHC_WAREHOUSE")
    return where if is_url(where) else None


def read_cache(url: str, include_private: bool = False) -> Path:
    """A local read-only copy of a warehouse on object storage, for ``tthc query``: the published generation of the
    KPI marts and the other public tables (raw_ and quarantine_ only with ``include_private``), only changed objects
    downloaded; never the ledger, secrets or reports."""
    from warehouse import generations, objectstore, store

    def wanted(rel: str) -> bool:
        top = rel.split("/", 1)[0]
        if top == generations.GENERATIONS:
            return True
        return not top.startswith(("_", ".")) and "/" in rel and (include_private or not store.is_private(top))

    kind = "read-private" if include_private else "read"
    try:
        ow = objectstore.ObjectWarehouse(url, local=objectstore.cache_dir(url, kind))
        ow.pull(select=wanted)
    except Exception as exc:  # noqa: BLE001 - botocore's errors: one sentence for the operator
        Console(stderr=True).print(f"[red]Cannot read the warehouse {url}: {exc}. Check AWS_ENDPOINT_URL, "
                                   f"AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION.[/red]")
        raise typer.Exit(2) from None
    return ow.local


def run_on_object_storage(inbox: Path, url: str, as_of, full_rebuild: bool) -> None:
    """``tthc run --warehouse s3://...``: the province run of run-provinces, for one warehouse, in this process."""
    from tthc import watchdog

    watchdog.start()
    from flows.provinces import run_province

    if not Path(inbox).is_dir():
        raise typer.BadParameter(f"inbox folder {inbox} does not exist")
    r = run_province(str(inbox), url, as_of, full_rebuild, ledger_url=os.environ.get("TTHC_LEDGER_URL") or None)
    console.print(f"{url}: {r['status']}; published marts {r['generation'] or '(none)'}"
                  + ("; an interrupted publish was repaired" if r["repaired"] else "")
                  + "".join(f"; {n}" for n in r["notes"]) + f". {r['message']}")
    if r["status"] != "completed":
        sys.exit(1)


@app.command("run-provinces")
def run_provinces(
    inbox_root: Path = typer.Option(..., "--inbox-root", help="Folder of province inboxes: ROOT/<name>/ each with "
                                                               "its agencies.csv"),
    warehouse_root: str = typer.Option(..., "--warehouse-root", help="Folder or s3://bucket/prefix: the warehouse "
                                                                     "of <name> is <root>/<name>/, the roll-up "
                                                                     "<root>/national/"),
    as_of: str = typer.Option(None, "--as-of", help="Data date YYYY-MM-DD (default: yesterday, Vietnam time)"),
    dask_address: str = typer.Option(None, "--dask-address", help="An existing Dask scheduler, tcp://HOST:PORT "
                                                                  "(TTHC_DASK_ADDRESS)"),
    workers: int = typer.Option(2, "--workers", min=1, help="Without a scheduler: worker processes of a local "
                                                            "Dask cluster"),
    ledger_url: str = typer.Option(
        None, "--ledger-url", help="The provinces' ledgers on one PostgreSQL server, one database each "
        "(TTHC_LEDGER_URL): a URL holding {province}, e.g. postgresql+psycopg://etl@db:5432/tthc_{province}; "
        "{province} becomes the folder's name in lower case, accents dropped (đ -> d), every other run of "
        "characters '_' (Hà Nội -> ha_noi); a missing database is created. Keep the password out of the URL "
        "(PGPASSWORD or ~/.pgpass on every worker): Prefect records flow parameters. Without it each province "
        "keeps a SQLite ledger in its warehouse"),
) -> None:
    """Run the nightly flow of every province in parallel on Dask, then roll the KPI marts up nationally."""
    from tthc import watchdog
    from tthc.commands.pipeline import _parse_date

    watchdog.start()
    from flows import provinces

    if not inbox_root.is_dir():
        raise typer.BadParameter(f"inbox root {inbox_root} is not a folder")
    names = provinces.province_names(inbox_root)
    template = _ledger_template(ledger_url or os.environ.get("TTHC_LEDGER_URL") or None, names)
    if not names:
        raise typer.BadParameter(f"no province folder in {inbox_root}: expected {inbox_root}/<name>/agencies.csv")
    if not provinces.objectstore.is_url(warehouse_root):
        warehouse_root = str(Path(warehouse_root).expanduser().resolve())
    state = provinces.run(str(inbox_root.resolve()), warehouse_root, _parse_date(as_of), dask_address, workers,
                          ledger_url=template)
    if not state.is_completed():
        console.print(f"[red]The run of the provinces failed:[/red] {state.message}")
        sys.exit(1)
    result = state.result()
    _print_result(result, warehouse_root)
    if result["failed"]:
        console.print(f"[red]Failed:[/red] {', '.join(result['failed'])} (the roll-up counts their last good marts)")
        sys.exit(1)


def _ledger_template(template: str | None, names: list[str]) -> str | None:
    """The ledger URL template, checked (it holds ``{province}``, every province gets a distinct database name) and
    every province's database made, before the cluster starts: a server that does not answer is one sentence, not
    34 failed provinces."""
    from warehouse import ledger_server

    if not template:
        return None
    if ledger_server.PROVINCE not in template:
        raise typer.BadParameter(f"the ledger URL {ledger_server.safe_url(template)} (--ledger-url / TTHC_LEDGER_URL) "
                                 f"would mix every province's batches in one database: add {ledger_server.PROVINCE} "
                                 f"where each province's database name goes (e.g. .../tthc_{ledger_server.PROVINCE})")
    try:
        urls = ledger_server.province_urls(template, names)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        for url in urls.values():
            ledger_server.ensure_database(url)
    except ledger_server.LedgerUnavailable as exc:
        Console(stderr=True).print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    return template


def _print_result(result: dict, warehouse_root: str) -> None:
    t = Table(title=f"Provinces under {warehouse_root}")
    for col in ("province", "status", "published marts", "note"):
        t.add_column(col, overflow="fold")
    for r in result["provinces"]:
        t.add_row(r["province"], r["status"], r["generation"] or "(none)",
                  ("repaired an interrupted publish; " if r.get("repaired") else "")
                  + "".join(f"{n}; " for n in r.get("notes", [])) + (r["message"] or ""),
                  style=None if r["status"] == "completed" else "red")
    console.print(t)
    nat = result["national"]
    if "error" in nat:
        console.print(f"[red]National roll-up not built:[/red] {nat['error']}")
    else:
        console.print(f"national: generation {nat['generation']} over {', '.join(nat['provinces'])}"
                      + (f"; without published marts: {', '.join(nat['without_marts'])}" if nat["without_marts"]
                         else ""))
