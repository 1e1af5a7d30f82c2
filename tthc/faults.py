"""Faults of the machine, told as sentences: what went wrong, where, and what to do.

An operator who finds a failed night reads one line (disk full, a read-only warehouse, a ledger that cannot be
reached, the lock held by another run) instead of stacked tracebacks. The traceback is kept in a log file
(``TTHC_LOG_DIR``, default ``~/.local/state/tthc``) and printed only with ``tthc --debug ...``.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
import traceback
from datetime import datetime
from pathlib import Path

_PASSWORD = re.compile(r"(://[^:/@]+:)[^@]*@")


def hide_password(url: str) -> str:
    """``postgresql://etl:secret@db/tthc`` -> ``postgresql://etl:***@db/tthc``."""
    return _PASSWORD.sub(r"\1***@", str(url))


def _where(exc: OSError) -> str:
    name = exc.filename or getattr(exc, "filename2", None)
    return f" ({name})" if name else ""


def known(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it came from) is a fault this module can tell as a sentence."""
    return not sentence(exc).startswith("Unexpected error")


def sentence(exc: BaseException) -> str:
    """One line for the operator: what, where, and what to do next."""
    chain = [exc]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        nxt = chain[-1].__cause__ or chain[-1].__context__
        if nxt in chain or len(chain) > 10:
            break
        chain.append(nxt)
    for e in chain:
        s = _known(e)
        if s:
            return s
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"Unexpected error {type(exc).__name__}: {first}. Nothing half-written is published; see the log file " \
           f"for details and run again (report it if it repeats)."


def _known(e: BaseException) -> str | None:
    from warehouse.ledger_server import LedgerConflict, LedgerUnavailable
    from warehouse.lock import WarehouseBusy

    if isinstance(e, LedgerUnavailable):
        return str(e)
    if isinstance(e, LedgerConflict):
        return f"The warehouse and its ledger disagree: {e}."
    if isinstance(e, WarehouseBusy):
        return f"{e}. Another run (nightly, pull or release) is using this warehouse: wait for it to finish."
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"The disk is full{_where(e)}: free some space on it (or move the warehouse to a larger disk) and "
                f"run again; what this run had not finished is rolled back by the next run.")
    if isinstance(e, OSError) and e.errno == errno.EROFS:
        return (f"The warehouse is on a read-only file system{_where(e)}: mount it read-write (or point "
                f"--warehouse / TTHC_WAREHOUSE at a writable folder) and run again.")
    if isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EPERM):
        return (f"Permission denied{_where(e)}: the user running tthc ({_user()}) cannot write there; fix the "
                f"folder's owner or permissions and run again.")
    if isinstance(e, MemoryError):
        return ("The machine ran out of memory: close other work or lower TTHC_BATCH_ROWS, then run again; "
                "nothing half-written is published.")
    try:
        import sqlalchemy.exc as sa_exc
    except ImportError:  # pragma: no cover - sqlalchemy is a dependency
        sa_exc = None
    if sa_exc is not None and isinstance(e, sa_exc.OperationalError | sa_exc.InterfaceError):
        url = hide_password(_ledger_url())
        url = f" {url}" if url else ""
        why = (str(getattr(e, "orig", e)).strip().splitlines() or [""])[0][:200]
        if "disk is full" in why or "No space left" in why:
            return (f"The disk holding the ledger{url} is full: free some space on it and run again; what this "
                    f"run had not finished is rolled back by the next run.")
        if "readonly" in why.replace(" ", "").lower() or "read-only" in why.lower():
            return (f"The ledger{url} is read-only ({why}): make it writable (or point TTHC_LEDGER_URL at a "
                    f"writable database) and run again.")
        return (f"Cannot reach the ledger database{url}: {why}. Check TTHC_LEDGER_URL (host, port, user) and "
                f"that the database server is running, then run again.")
    if sa_exc is not None and isinstance(e, sa_exc.ArgumentError) and "URL" in str(e):
        return f"TTHC_LEDGER_URL is not a database URL ({e}): use e.g. postgresql+psycopg://user@host/db."
    try:
        import duckdb
    except ImportError:  # pragma: no cover
        return None
    if isinstance(e, duckdb.OutOfMemoryException):
        return ("DuckDB ran out of memory: close other work or raise TTHC_DQ_MEMORY_LIMIT / the machine's memory, "
                "then run again; nothing half-written is published.")
    if isinstance(e, duckdb.IOException):
        text = str(e)
        if "No space left" in text:
            return "The disk is full (DuckDB could not write): free some space and run again."
        if "Read-only file system" in text:
            return "The warehouse is on a read-only file system (DuckDB could not write): mount it read-write."
        first = (text.strip().splitlines() or [""])[0][:300]
        return f"A warehouse file could not be read or written: {first}. Check the disk and run again."
    return None


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except Exception:  # noqa: BLE001 - only for the message
        return str(os.geteuid())


def _ledger_url() -> str:
    return os.environ.get("TTHC_LEDGER_URL", "")


def log_dir() -> Path:
    d = os.environ.get("TTHC_LOG_DIR")
    if d:
        return Path(d)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "tthc"


def write_log(exc: BaseException) -> Path | None:
    """Append the traceback to ``<log dir>/errors.log`` (or the temp folder when that is not writable)."""
    text = (f"--- {datetime.now():%Y-%m-%d %H:%M:%S} pid {os.getpid()}\n"
            + "".join(traceback.format_exception(exc)))
    for d in (log_dir(), Path(tempfile.gettempdir()) / "tthc"):
        try:
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
            p = d / "errors.log"
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(text)
            return p
        except OSError:
            continue
    return None


class _TracebackToLog:
    """A logging filter for the console's handlers: a record's traceback goes to the log file, the console keeps
    its one-line message (``tthc --debug`` keeps tracebacks on the console)."""

    def filter(self, record) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            path = write_log(record.exc_info[1])
            record.exc_info, record.exc_text = None, None
            if path is not None and "(details in" not in str(record.msg):
                record.msg = f"{record.msg} (details in {path})"
        return True


def quiet_tracebacks() -> None:
    """Keep tracebacks that Prefect (or any library) logs out of the operator's console, unless TTHC_DEBUG=1."""
    import logging

    if os.environ.get("TTHC_DEBUG") == "1":
        return
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs"):
        for h in logging.getLogger(name).handlers:
            if not any(isinstance(f, _TracebackToLog) for f in h.filters):
                h.addFilter(_TracebackToLog())
