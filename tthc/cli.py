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


def main(argv: list[str] | None = None) -> None:
    """The ``tthc`` command: the app, with machine faults told as one sentence (exit 1) and their traceback kept
    in the log file; ``tthc --debug ...`` prints the traceback too (tthc/faults.py)."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("TTHC_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    if debug:
        os.environ["TTHC_DEBUG"] = "1"
    from warehouse.store import use_warehouse_umask

    use_warehouse_umask()  # what tthc writes gets explicit modes, whatever the umask it was started with
    try:
        app(args=args, prog_name="tthc", standalone_mode=True)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted; the next run rolls back what this one had not finished.\n")
        raise SystemExit(130) from None
    except Exception as exc:
        from tthc import faults

        log = faults.write_log(exc)
        if debug:
            import traceback

            traceback.print_exception(exc)
        sys.stderr.write(f"Error: {faults.sentence(exc)}\n")
        if log and not debug:
            sys.stderr.write(f"(details in {log}; `tthc --debug ...` prints them)\n")
        raise SystemExit(1) from None


if __name__ == "__main__":  # pragma: no cover
    # run as a script this file is module __main__; the commands registered on the importable tthc.cli
    from tthc.cli import main as _main

    _main()
