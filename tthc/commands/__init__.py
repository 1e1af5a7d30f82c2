"""CLI commands, one module per area; each module adds its commands to ``tthc.cli.app``."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType


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


DEVKIT_MISSING = ("`tthc {command}` is a development tool (the devkit package), not part of the installed "
                  "product: install the dev extra from a clone of the repository (`pip install -e '.[dev]'`, or "
                  "`make install`).")


def devkit_module(name: str, command: str) -> ModuleType:
    """Import ``devkit.<name>`` for a development command (``tthc sample``, ``tthc fake-portal``); when devkit is not
    installed, stop with one sentence saying how to get it (exit 2) instead of a traceback."""
    import typer
    from rich.console import Console

    try:
        return importlib.import_module(f"devkit.{name}")
    except ModuleNotFoundError as exc:
        if not f"devkit.{name}.".startswith(f"{exc.name}."):  # devkit itself (or that part of it) is absent
            raise
        Console(stderr=True).print(DEVKIT_MISSING.format(command=command), style="red", markup=False)
        raise typer.Exit(2) from None
