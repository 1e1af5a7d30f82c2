"""The machine's PostgreSQL for tests: a throwaway database, created fresh and dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

PG_ADMIN_URL = os.environ.get("TTHC_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@contextmanager
def throwaway_database() -> Iterator[tuple[str | None, str | None]]:
    """``(url, None)`` of a fresh database ``tthc_test_<random>`` (dropped on exit), or ``(None, reason)`` when
    PostgreSQL cannot be reached (the caller skips, saying why)."""
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"tthc_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as c:
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        yield None, str(exc).splitlines()[0]
        return
    try:
        yield sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False), None
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def ledger_template() -> Iterator[tuple[str | None, str | None]]:
    """``(template, None)``: a run-provinces ledger template ``.../tthc_test_<random>_{province}`` on the machine's
    PostgreSQL, every database made from it dropped on exit; or ``(None, reason)`` when PostgreSQL cannot be
    reached. The braces are added after rendering (SQLAlchemy would percent-encode them), as an operator types
    the template."""
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with admin.connect():
            pass
    except sa.exc.OperationalError as exc:
        admin.dispose()
        yield None, f"PostgreSQL unreachable at {PG_ADMIN_URL}: {str(exc).splitlines()[0]}"
        return
    prefix = f"tthc_test_{uuid.uuid4().hex[:8]}_"
    try:
        yield sa.engine.make_url(PG_ADMIN_URL).set(database=prefix).render_as_string(hide_password=False) \
            + "{province}", None
    finally:
        with admin.connect() as c:
            for (name,) in c.execute(sa.text("SELECT datname FROM pg_database WHERE datname LIKE :p"),
                                     {"p": prefix + "%"}).all():
                c.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()
