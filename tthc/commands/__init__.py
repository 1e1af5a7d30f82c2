"""CLI commands, one module per area; each module adds its commands to ``tthc.cli.app``."""

from __future__ import annotations

from pathlib import Path


def require_warehouse(s, *, ledger: bool = True, folder: bool = False) -> Path:
    """For the commands that read a warehouse (status, dq, release): stop with a clear message (exit 2) when it is
    not there, or (``ledger``) when no run has written its ledger yet, instead of a traceback or an empty ledger
    created in the wrong folder. A ledger elsewhere (TTHC_LEDGER_URL) is taken as given; the folder itself is then
    required only when the command reads it (``folder``: release reads ``_held/``)."""
    import typer
    from rich.console import Console

    wh = Path(s.warehouse)
    msg = None
    if (folder or s.ledger_url is None) and not wh.is_dir():
        msg = (f"No warehouse at {wh}: the folder does not exist (run `tthc run --warehouse {wh}` first, or pass the "
               f"right --warehouse / TTHC_WAREHOUSE / TTHC_LEDGER_URL).")
    elif ledger and s.ledger_url is None and not (wh / "_ledger.sqlite").exists():
        msg = f"No ledger in {wh}: no run has written to this warehouse yet (run `tthc run --warehouse {wh}`)."
    if msg:
        Console(stderr=True).print(f"[red]{msg}[/red]")
        raise typer.Exit(2)
    return wh
