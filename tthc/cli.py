"""The one way to run everything: ``tthc <command>``.

Each area registers its commands from ``tthc/commands/<area>.py`` on the shared ``app``; heavy imports
(Prefect, Great Expectations, pandas) happen inside the commands so ``tthc --help`` stays fast.
"""

from __future__ import annotations

import importlib
import os
import pkgutil

import typer

from tthc.settings import quiet_analytics

quiet_analytics()
# the CLI shows progress bars and a summary; Prefect's per-task INFO lines drowned them (PREFECT_LOGGING_LEVEL=INFO
# brings them back; a deployment's worker is not started from here and logs as configured)
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

app = typer.Typer(
    help="tthc-pipeline: nightly KPIs for administrative procedures (thủ tục hành chính).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _register_commands() -> None:
    import tthc.commands as pkg

    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        importlib.import_module(f"tthc.commands.{mod.name}")


_register_commands()

if __name__ == "__main__":  # pragma: no cover
    # run as a script this file is module __main__; the commands registered on the importable tthc.cli.app
    from tthc.cli import app as _app

    _app()
