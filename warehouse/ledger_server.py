"""Ledgers outside the warehouse, on one PostgreSQL server: one database per province (``tthc run-provinces
--ledger-url`` with ``{province}``). Names from folder names, the database created when missing, one run at a time
per ledger (an advisory lock), a warehouse's SQLite ledger moved in once; faults in one sentence, password hidden.
"""

from __future__ import annotations

import os
import re
import socket
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from warehouse.ledger import Ledger
from warehouse.ledger_tables import batches, metadata, runs
from warehouse.lock import WarehouseBusy

# -- ledgers outside the warehouse: one database per province on one server -------------------------------------------
PROVINCE = "{province}"
PG_NAME_BYTES = 63  # PostgreSQL cuts longer identifiers (NAMEDATALEN - 1): two long names could become one


class LedgerUnavailable(RuntimeError):
    """The ledger's database cannot be reached or made; the message is one sentence, the password hidden."""


class LedgerBusy(WarehouseBusy):
    """Another run (on any machine) holds this ledger's run lock."""


def safe_url(url: str) -> str:
    """The URL as it may be shown: ``postgresql+psycopg://etl:***@db/tthc``."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def province_part(name: str) -> str:
    """A province folder's name as it goes into a database name: accents dropped (``đ`` -> ``d``), lower case, every
    run of characters other than ``a-z0-9`` one ``_``, none at either end (``Hà Nội`` -> ``ha_noi``)."""
    s = unicodedata.normalize("NFKD", name.replace("đ", "d").replace("Đ", "D"))
    s = "".join(c for c in s if not unicodedata.combining(c)).lower()
    return re.sub(r"[^a-z0-9]+", "_", s).strip("_")


def province_urls(template: str, names: list[str]) -> dict[str, str]:
    """Each province's ledger URL: ``template`` with ``{province}`` replaced by ``province_part(name)``. Raises
    ValueError (one sentence) when the template has no ``{province}`` (one ledger would mix every province's
    batches), when a name gives nothing usable or a database name longer than PostgreSQL keeps, or when two folders
    would share one ledger."""
    if PROVINCE not in template:
        raise ValueError(f"the ledger URL {safe_url(template)} has no {PROVINCE}: one database would mix every "
                         f"province's batches, so add {PROVINCE} where each province's database name goes (e.g. "
                         f"postgresql+psycopg://user@host:5432/tthc_{PROVINCE})")
    urls: dict[str, str] = {}
    for name in names:
        part = province_part(name)
        if not part:
            raise ValueError(f"the province folder {name!r} has no letter or digit to name its ledger database with")
        url = template.replace(PROVINCE, part)
        db = sa.engine.make_url(url).database or ""
        if len(db.encode()) > PG_NAME_BYTES:
            raise ValueError(f"the ledger database name of province {name!r}, {db}, is longer than PostgreSQL's "
                             f"{PG_NAME_BYTES} bytes: shorten the template's name or the folder's")
        same = [n for n, u in urls.items() if u == url]
        if same:
            raise ValueError(f"the province folders {same[0]!r} and {name!r} would share the ledger "
                             f"{safe_url(url)}: rename one of them")
        urls[name] = url
    return urls


def _why(exc: Exception) -> str:
    return (str(getattr(exc, "orig", exc)).strip().splitlines() or [""])[0][:200]


def ensure_database(url: str, timeout: int = 10) -> bool:
    """Create the PostgreSQL database ``url`` names when it does not exist, through the server's ``postgres``
    maintenance database (AUTOCOMMIT: CREATE DATABASE runs outside a transaction); True when it was created. Other
    databases (SQLite) are left to their driver. Raises ``LedgerUnavailable`` when the server cannot be reached or
    the database cannot be made."""
    u = sa.engine.make_url(url)
    if u.get_backend_name() != "postgresql":
        return False
    name = u.database
    if not name:
        raise LedgerUnavailable(f"The ledger URL {safe_url(url)} names no database: add one (e.g. /tthc_{PROVINCE}).")
    admin = sa.create_engine(u.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool,
                             connect_args={"connect_timeout": timeout})
    try:
        with admin.connect() as c:
            if c.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first():
                return False
            try:
                c.exec_driver_sql(f'CREATE DATABASE "{name.replace(chr(34), chr(34) * 2)}"')
            except sa.exc.ProgrammingError as exc:
                if getattr(exc.orig, "sqlstate", None) == "42P04":  # duplicate_database: made meanwhile elsewhere
                    return False
                raise LedgerUnavailable(f"Cannot create the ledger database {name} on {safe_url(url)}: "
                                        f"{_why(exc)}. Create it (CREATE DATABASE {name}) or give the user the "
                                        f"CREATEDB right, then run again.") from None
        return True
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        raise LedgerUnavailable(f"Cannot reach the ledger database server of {safe_url(url)}: {_why(exc)}. Check "
                                f"the ledger URL (host, port, user) and that the server is running, then run "
                                f"again.") from None
    finally:
        admin.dispose()


_RUN_LOCK = 0x74746863  # 'tthc': the run lock's key (advisory locks are per database, so one key per ledger)
HOLDER = "tthc run pid {pid} on {host}"  # the lock's connection says who holds it (application_name)


@contextmanager
def run_lock(url: str, wait_seconds: float = 1800, poll: float = 2.0) -> Iterator[None]:
    """One run at a time per ledger, whatever machine it runs on: a PostgreSQL session advisory lock held on its
    own connection while the block runs (released by the server when that connection ends, however the run
    ends). The warehouse's OS lock only guards one machine's copy; the ledger is shared, and crash recovery must
    never take another machine's live batches for crashed ones. The connection's ``application_name`` names the
    holder (``lock_holder``). Other databases: nothing to hold."""
    if sa.engine.make_url(url).get_backend_name() != "postgresql":
        yield
        return
    me = HOLDER.format(pid=os.getpid(), host=socket.gethostname())[:63]
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool,
                              connect_args={"connect_timeout": 10, "application_name": me})
    deadline = time.monotonic() + wait_seconds
    try:
        try:
            conn = engine.connect()
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise LedgerUnavailable(f"Cannot reach the ledger database {safe_url(url)}: {_why(exc)}. Check the "
                                    f"ledger URL (host, port, user) and that the server is running, then run "
                                    f"again.") from None
        with conn:
            while not conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": _RUN_LOCK}).scalar():
                if time.monotonic() >= deadline:
                    raise LedgerBusy(f"another run holds the ledger {safe_url(url)} "
                                     f"({_holder(conn) or 'holder unknown'}; waited {wait_seconds:.0f} s)")
                time.sleep(poll)
            try:
                yield
            finally:
                try:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _RUN_LOCK})
                except sa.exc.DBAPIError:  # the connection is gone: so is the lock
                    pass
    finally:
        engine.dispose()


def _holder(conn) -> str | None:
    row = conn.execute(sa.text(
        "SELECT a.application_name, a.client_addr, a.backend_start FROM pg_locks l JOIN pg_stat_activity a "
        "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted AND l.objid = :k AND l.database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())"), {"k": _RUN_LOCK}).first()
    if row is None:
        return None
    since = f" since {row.backend_start:%Y-%m-%d %H:%M:%S %Z}" if row.backend_start else ""
    return f"{row.application_name or 'a client'} from {row.client_addr or 'a local socket'}{since}"


def lock_holder(url: str) -> str | None:
    """Who holds the run lock of the ledger at ``url`` (its ``application_name``, client address, since when), or
    None when no run holds it."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 10})
    try:
        with engine.connect() as c:
            return _holder(c)
    finally:
        engine.dispose()


class LedgerConflict(RuntimeError):
    """A warehouse's own SQLite ledger and the ledger outside it hold different histories."""


def adopt_sqlite(sqlite_file: Path, url: str) -> int:
    """Move a warehouse's own SQLite ledger (``_ledger.sqlite``) into the ledger at ``url`` and set the file aside
    (``.ledger.sqlite.moved``, dot-named: never published, never read as the ledger again). Every row is copied when
    ``url`` holds no run and no batch yet; nothing is when it already holds every run and batch of the file (a
    move done before, whose file came back with an unpublished working copy). Returns the batches copied. Raises
    ``LedgerConflict`` when both hold runs or batches the other lacks: two histories of one warehouse."""
    src = Ledger(f"sqlite:///{sqlite_file}")
    dst = Ledger(url)
    try:
        with src.engine.connect() as s, dst.engine.connect() as d:
            ids = {t: ({r[0] for r in s.execute(sa.select(t.c[k]))}, {r[0] for r in d.execute(sa.select(t.c[k]))})
                   for t, k in ((runs, "run_id"), (batches, "batch_id"))}
        have_all = all(mine <= theirs for mine, theirs in ids.values())
        empty = not any(theirs for _, theirs in ids.values())
        copied = 0
        if not have_all:
            if not empty:
                raise LedgerConflict(
                    f"the warehouse's own ledger {sqlite_file} ({len(ids[batches][0])} batches) and "
                    f"{safe_url(url)} ({len(ids[batches][1])} batches) hold different histories of it: keep the "
                    f"right one (run without the ledger URL, or move {sqlite_file.name} out of the warehouse)")
            copied = _copy_rows(src, dst)
        with src.engine.connect() as s:
            s.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        src.dispose()
        dst.dispose()
    os.replace(sqlite_file, sqlite_file.with_name(".ledger.sqlite.moved"))
    for side in ("-wal", "-shm", "-journal"):
        sqlite_file.with_name(sqlite_file.name + side).unlink(missing_ok=True)
    return copied


def _copy_rows(src: Ledger, dst: Ledger, chunk: int = 5000) -> int:
    with src.engine.connect() as s, dst.engine.begin() as d:
        for table in metadata.sorted_tables:
            result = s.execute(sa.select(table)).mappings()
            while rows := result.fetchmany(chunk):
                d.execute(table.insert(), [dict(r) for r in rows])
        if dst.engine.dialect.name == "postgresql":  # ids were copied: the sequence continues after them
            d.exec_driver_sql("SELECT setval(pg_get_serial_sequence('dq_results', 'id'), "
                              "COALESCE((SELECT max(id) FROM dq_results), 0) + 1, false)")
        return d.execute(sa.select(sa.func.count()).select_from(batches)).scalar_one()
