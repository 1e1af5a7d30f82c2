"""The ledger: every run, file, batch, watermark and data-quality result, through SQLAlchemy.

SQLite file in the warehouse by default (``sqlite:///<warehouse>/_ledger.sqlite``); any SQLAlchemy URL works
(PostgreSQL in production: ``postgresql+psycopg://user@host/db``). Tables are created on first use.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from warehouse.lock import WarehouseBusy

metadata = sa.MetaData()

runs = sa.Table(
    "runs", metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("flow_run_id", sa.String(64)),
    sa.Column("started_at", sa.DateTime),
    sa.Column("finished_at", sa.DateTime),
    sa.Column("status", sa.String(16)),  # running | completed | failed
    sa.Column("as_of", sa.Date),
    sa.Column("inbox", sa.Text),
    sa.Column("summary_json", sa.Text),
)

files = sa.Table(
    "files", metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("size_bytes", sa.BigInteger),
    sa.Column("first_path", sa.Text),
    sa.Column("source", sa.String(32)),
    sa.Column("entity", sa.String(32)),
    sa.Column("file_kind", sa.String(8)),
    sa.Column("first_seen_at", sa.DateTime),
)

batches = sa.Table(
    "batches", metadata,
    sa.Column("batch_id", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(64), index=True),
    sa.Column("sha256", sa.String(64), index=True),
    sa.Column("path", sa.Text),
    sa.Column("size_bytes", sa.BigInteger),
    sa.Column("mtime_ns", sa.BigInteger),  # with path and size: a file seen before is not hashed again
    sa.Column("source", sa.String(32)),
    sa.Column("entity", sa.String(32)),
    sa.Column("format", sa.String(32)),
    sa.Column("file_kind", sa.String(8)),
    sa.Column("encoding", sa.String(40)),
    sa.Column("rows_raw", sa.BigInteger),
    sa.Column("rows_staged", sa.BigInteger),
    sa.Column("rows_quarantined", sa.BigInteger),
    sa.Column("unknown_columns", sa.Text),
    sa.Column("notes", sa.Text),  # what the reader saw and did not take as data (footer, blank rows, other sheets)
    # running -> staged -> (gate) passed | gate_failed ; rejected (file unreadable) ; failed (crash or error) ;
    # duplicate (its content turned out, once hashed, to be a batch's already taken; its files removed) ;
    # skipped (an inbox entry only listed, not read: hidden, temporary, not data; the reason in error)
    sa.Column("status", sa.String(16), index=True),
    sa.Column("error", sa.Text),
    sa.Column("started_at", sa.DateTime),
    sa.Column("finished_at", sa.DateTime),
    sa.Column("read_seconds", sa.Float),
    sa.Column("stage_seconds", sa.Float),
    sa.Column("min_updated_at", sa.DateTime),
    sa.Column("max_updated_at", sa.DateTime),
)

watermarks = sa.Table(
    "watermarks", metadata,
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("entity", sa.String(32), primary_key=True),
    sa.Column("watermark_at", sa.DateTime),
    sa.Column("committed_at", sa.DateTime),
    sa.Column("batch_id", sa.String(64)),
)

dq_results = sa.Table(
    "dq_results", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), index=True),
    sa.Column("batch_id", sa.String(64), index=True),
    sa.Column("table_name", sa.String(80)),
    sa.Column("source", sa.String(32)),
    sa.Column("entity", sa.String(32)),
    sa.Column("agency_code", sa.String(40)),
    sa.Column("check_name", sa.String(120)),
    sa.Column("expectation_type", sa.String(120)),
    sa.Column("severity", sa.String(16)),
    sa.Column("success", sa.Boolean),
    sa.Column("element_count", sa.BigInteger),
    sa.Column("unexpected_count", sa.BigInteger),
    sa.Column("unexpected_percent", sa.Float),
    sa.Column("examples_json", sa.Text),
    sa.Column("observed_json", sa.Text),
    sa.Column("checked_at", sa.DateTime),
)

DONE_STATUSES = ("staged", "passed", "gate_failed")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class LedgerMismatch(AssertionError):
    """raw rows != staged + quarantined for some batch: data was lost or invented."""


@dataclass
class BatchRow:
    batch_id: str
    status: str
    rows_raw: int | None
    rows_staged: int | None
    rows_quarantined: int | None


def _read_only_engine(url: str, kwargs: dict[str, Any]):
    """An engine that never writes: SQLite opened with ``mode=ro`` (and ``immutable=1`` when even the WAL index
    cannot be made, as on a read-only mount); other databases as they are (the commands only SELECT)."""
    if not url.startswith("sqlite:///"):
        return sa.create_engine(url, **kwargs)
    from urllib.parse import quote

    path = Path(url.removeprefix("sqlite:///")).resolve()
    for extra in ("", "&immutable=1"):
        engine = sa.create_engine(f"sqlite:///file:{quote(str(path))}?mode=ro{extra}&uri=true", **kwargs)
        try:
            with engine.connect() as c:
                c.exec_driver_sql("SELECT count(*) FROM sqlite_master").fetchall()
            return engine
        except sa.exc.OperationalError:
            engine.dispose()
            if extra:
                raise
    raise AssertionError("unreachable")


class Ledger:
    def __init__(self, url: str, *, read_only: bool = False):
        """``read_only``: for commands that only look (status, dq): nothing is created or altered, and a SQLite
        ledger on a read-only disk or folder is opened read-only instead of failing."""
        self.url = url
        kwargs: dict[str, Any] = {"future": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30}
        if read_only:
            self.engine = _read_only_engine(url, kwargs)
            return
        self.engine = sa.create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            @event.listens_for(self.engine, "connect")
            def _pragma(dbapi_conn, _rec):  # WAL: readers (tthc status) never block the nightly writer
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()
        metadata.create_all(self.engine)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """Ledgers made by an earlier version gain the columns added since (nullable, so old rows stay valid)."""
        insp = sa.inspect(self.engine)
        for table in metadata.sorted_tables:
            have = {c["name"] for c in insp.get_columns(table.name)}
            for col in table.columns:
                if col.name not in have:
                    ddl = col.type.compile(dialect=self.engine.dialect)
                    with self.engine.begin() as c:
                        c.exec_driver_sql(f'ALTER TABLE {table.name} ADD COLUMN {col.name} {ddl}')

    def dispose(self) -> None:
        self.engine.dispose()

    # runs -------------------------------------------------------------------------------------------------
    def start_run(self, run_id: str, as_of: date | None, inbox: str | None, flow_run_id: str | None = None) -> None:
        with self.engine.begin() as c:
            c.execute(runs.insert().values(run_id=run_id, flow_run_id=flow_run_id, started_at=utcnow(),
                                           status="running", as_of=as_of, inbox=inbox))

    def finish_run(self, run_id: str, status: str, summary: dict | None = None) -> None:
        with self.engine.begin() as c:
            c.execute(runs.update().where(runs.c.run_id == run_id).values(
                finished_at=utcnow(), status=status,
                summary_json=json.dumps(summary, default=str, ensure_ascii=False) if summary else None))

    # files and batches ----------------------------------------------------------------------------------
    def ingested_batch_for(self, sha256: str) -> str | None:
        """The batch that already ingested this content (any name), or None."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(batches.c.batch_id).where(
                batches.c.sha256 == sha256, batches.c.status.in_(DONE_STATUSES)
            ).limit(1)).first()
        return row[0] if row else None

    def known_file(self, path: str, size: int, mtime_ns: int) -> tuple[str, str] | None:
        """(batch_id, sha256) of a batch that already took this very file (same path, size and mtime), if any:
        the nightly rescan of an inbox of old exports then costs a stat per file, not a hash of every byte."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(batches.c.batch_id, batches.c.sha256).where(
                batches.c.path == path, batches.c.size_bytes == size, batches.c.mtime_ns == mtime_ns,
                batches.c.sha256.is_not(None), batches.c.status.in_(DONE_STATUSES)
            ).limit(1)).first()
        return (row[0], row[1]) if row else None

    def rejection_for(self, *, sha256: str | None = None, where: tuple[str | None, str | None, str | None] = (
                      None, None, None), path: str | None = None, size: int | None = None,
                      mtime_ns: int | None = None) -> dict | None:
        """The latest rejected batch of this content (``sha256``) in the same place (``where``: source, entity,
        file kind; the same bytes moved to the right folder are another matter), or of this very file (``path``,
        ``size``, ``mtime_ns``): batch_id, sha256, error, finished_at; None when it was never rejected there."""
        if sha256 is not None:
            cond = [batches.c.sha256 == sha256] + [col.is_(None) if v is None else col == v for col, v in zip(
                (batches.c.source, batches.c.entity, batches.c.file_kind), where, strict=True)]
        else:
            cond = [batches.c.path == path, batches.c.size_bytes == size, batches.c.mtime_ns == mtime_ns]
        with self.engine.connect() as c:
            row = c.execute(sa.select(batches.c.batch_id, batches.c.sha256, batches.c.error, batches.c.finished_at)
                            .where(batches.c.status == "rejected", batches.c.sha256.is_not(None), *cond)
                            .order_by(batches.c.finished_at.desc().nulls_last()).limit(1)).first()
        return dict(row._mapping) if row else None

    def size_seen(self, size: int) -> bool:
        """Whether a file of exactly this size was taken before (a copy of it would have this size). Every file the
        ledger records has a batch row with its size; its hash is there once known."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(batches.c.batch_id).where(
                batches.c.size_bytes == size, batches.c.sha256.is_not(None)).limit(1)).first()
        return row is not None

    def record_file(self, sha256: str, size: int, path: str, source: str, entity: str, kind: str) -> None:
        with self.engine.begin() as c:
            exists = c.execute(sa.select(files.c.sha256).where(files.c.sha256 == sha256)).first()
            if not exists:
                c.execute(files.insert().values(sha256=sha256, size_bytes=size, first_path=path, source=source,
                                                entity=entity, file_kind=kind, first_seen_at=utcnow()))

    def begin_batch(self, batch_id: str, run_id: str, **values: Any) -> None:
        with self.engine.begin() as c:
            c.execute(batches.insert().values(batch_id=batch_id, run_id=run_id, status="running",
                                              started_at=utcnow(), **values))

    def record_batch(self, batch_id: str, run_id: str, status: str, **values: Any) -> None:
        """A batch row written finished in one go: an inbox entry listed without being read (``skipped``, or
        ``rejected``/``failed`` before any of its bytes were read), with its reason in ``error``."""
        now = utcnow()
        with self.engine.begin() as c:
            c.execute(batches.insert().values(batch_id=batch_id, run_id=run_id, status=status, started_at=now,
                                              finished_at=now, **values))

    def batch_path(self, batch_id: str) -> str | None:
        """The inbox path (or pull label) a batch was read from."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(batches.c.path).where(batches.c.batch_id == batch_id)).first()
        return row[0] if row else None

    def copy_listed(self, path: str, size: int, mtime_ns: int) -> str | None:
        """The batch id of an earlier ``duplicate`` row of this very file (a copy of content already taken, listed
        once), or None."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(batches.c.batch_id).where(
                batches.c.status == "duplicate", batches.c.path == path, batches.c.size_bytes == size,
                batches.c.mtime_ns == mtime_ns).limit(1)).first()
        return row[0] if row else None

    def skipped_before(self, path: str, size: int | None, mtime_ns: int | None) -> str | None:
        """The batch id of an earlier ``skipped`` row of this very entry (same path, size and mtime), or None."""
        cond = [batches.c.status == "skipped", batches.c.path == path]
        for col, v in ((batches.c.size_bytes, size), (batches.c.mtime_ns, mtime_ns)):
            cond.append(col.is_(None) if v is None else col == v)
        with self.engine.connect() as c:
            row = c.execute(sa.select(batches.c.batch_id).where(*cond).limit(1)).first()
        return row[0] if row else None

    def update_batch(self, batch_id: str, **values: Any) -> None:
        if "notes" in values and isinstance(values["notes"], list | tuple):
            values["notes"] = "; ".join(values["notes"]) or None
        if "unknown_columns" in values and isinstance(values["unknown_columns"], list | tuple):
            values["unknown_columns"] = json.dumps(list(values["unknown_columns"]), ensure_ascii=False)
        with self.engine.begin() as c:
            c.execute(batches.update().where(batches.c.batch_id == batch_id).values(**values))

    def finish_batch(self, batch_id: str, status: str, **values: Any) -> None:
        self.update_batch(batch_id, status=status, finished_at=utcnow(), **values)

    def crashed_batches(self) -> list[str]:
        """Batches left 'running' by a run that died: their files must be removed and their input redone."""
        with self.engine.connect() as c:
            return [r[0] for r in c.execute(sa.select(batches.c.batch_id).where(batches.c.status == "running"))]

    def mark_crashed(self, batch_ids: list[str]) -> None:
        if not batch_ids:
            return
        with self.engine.begin() as c:
            c.execute(batches.update().where(batches.c.batch_id.in_(batch_ids)).values(
                status="failed", error="interrupted (process ended during the batch); files removed, input redone",
                finished_at=utcnow()))

    def mark_unpublished(self, batch_ids: list[str]) -> None:
        """Batches a run took but never published (on object storage its working copy went with it): marked failed,
        so their input is taken again, and a pull's watermark one of them moved goes back to the earliest version
        they held (that window is read again; versions read twice are the same versions), or is dropped when
        that is not known (everything is read again)."""
        if not batch_ids:
            return
        with self.engine.begin() as c:
            firsts: dict[tuple[str, str], list[datetime]] = {}
            for r in c.execute(sa.select(batches.c.source, batches.c.entity, batches.c.min_updated_at)
                               .where(batches.c.batch_id.in_(batch_ids))):
                firsts.setdefault((r.source, r.entity), []).append(r.min_updated_at)
            c.execute(batches.update().where(batches.c.batch_id.in_(batch_ids)).values(
                status="failed", finished_at=utcnow(),
                error="not published: the run that took it ended before publishing the warehouse; input taken again"))
            for w in c.execute(sa.select(watermarks).where(watermarks.c.batch_id.in_(batch_ids))).all():
                seen = firsts.get((w.source, w.entity), [])
                where = (watermarks.c.source == w.source) & (watermarks.c.entity == w.entity)
                if seen and None not in seen:
                    c.execute(watermarks.update().where(where).values(
                        watermark_at=min([w.watermark_at, *seen]), committed_at=utcnow(), batch_id=None))
                else:
                    c.execute(watermarks.delete().where(where))

    def close_interrupted_runs(self, current_run_id: str) -> list[str]:
        """Runs still 'running' other than this one died with their process: mark them failed."""
        with self.engine.begin() as c:
            ids = [r[0] for r in c.execute(sa.select(runs.c.run_id).where(
                runs.c.status == "running", runs.c.run_id != current_run_id))]
            if ids:
                c.execute(runs.update().where(runs.c.run_id.in_(ids)).values(
                    status="failed", finished_at=utcnow(),
                    summary_json=json.dumps({"error": "interrupted: the process ended during the run; "
                                                      f"recovered by run {current_run_id}"})))
        return ids

    def ungated_batches(self, exclude_run: str | None = None) -> list[dict]:
        """Batches staged by an earlier run that never reached the quality gate (that run was interrupted)."""
        q = sa.select(batches).where(batches.c.status == "staged")
        if exclude_run is not None:
            q = q.where(batches.c.run_id != exclude_run)
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(q.order_by(batches.c.started_at)).mappings()]

    def batches_of_run(self, run_id: str) -> list[dict]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(batches).where(batches.c.run_id == run_id)
                             .order_by(batches.c.started_at)).mappings().all()
        return [dict(r) for r in rows]

    def recent_batches(self, limit: int = 30) -> list[dict]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(batches).order_by(batches.c.started_at.desc(), batches.c.batch_id.desc())
                             .limit(limit)).mappings().all()
        return [dict(r) for r in rows]

    def recent_runs(self, limit: int = 10) -> list[dict]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(runs).order_by(runs.c.started_at.desc()).limit(limit)).mappings().all()
        return [dict(r) for r in rows]

    def batch_ids(self) -> set[str]:
        with self.engine.connect() as c:
            return {r[0] for r in c.execute(sa.select(batches.c.batch_id))}

    def batches_with_status(self, statuses: tuple[str, ...]) -> list[dict]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(batches).where(batches.c.status.in_(statuses))).mappings().all()
        return [dict(r) for r in rows]

    def check_balance(self, run_id: str | None = None) -> None:
        """Per batch: raw rows = staged + quarantined. Raises LedgerMismatch naming every batch that breaks it."""
        q = sa.select(batches).where(batches.c.status.in_(DONE_STATUSES))
        if run_id is not None:
            q = q.where(batches.c.run_id == run_id)
        bad = []
        with self.engine.connect() as c:
            for r in c.execute(q).mappings():
                if (r["rows_raw"] or 0) != (r["rows_staged"] or 0) + (r["rows_quarantined"] or 0):
                    bad.append(f"{r['batch_id']} ({r['path']}): raw {r['rows_raw']} != staged "
                               f"{r['rows_staged']} + quarantined {r['rows_quarantined']}")
        if bad:
            raise LedgerMismatch("row balance broken: " + "; ".join(bad))

    # watermarks -----------------------------------------------------------------------------------------
    def get_watermark(self, source: str, entity: str) -> datetime | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(watermarks.c.watermark_at).where(
                watermarks.c.source == source, watermarks.c.entity == entity)).first()
        return row[0] if row else None

    def set_watermark(self, source: str, entity: str, watermark_at: datetime, batch_id: str | None) -> None:
        with self.engine.begin() as c:
            updated = c.execute(watermarks.update().where(
                watermarks.c.source == source, watermarks.c.entity == entity).values(
                watermark_at=watermark_at, committed_at=utcnow(), batch_id=batch_id)).rowcount
            if not updated:
                c.execute(watermarks.insert().values(source=source, entity=entity, watermark_at=watermark_at,
                                                     committed_at=utcnow(), batch_id=batch_id))

    # data quality ---------------------------------------------------------------------------------------
    def record_dq(self, rows: list[dict]) -> None:
        if not rows:
            return
        now = utcnow()
        clean = []
        cols = [c.name for c in dq_results.columns if c.name != "id"]
        for r in rows:
            r = {k: r.get(k) for k in cols}  # one shape for every row: missing optional values are NULL
            r["checked_at"] = r["checked_at"] or now
            for k in ("examples_json", "observed_json"):
                if k in r and not isinstance(r[k], str | None):
                    r[k] = json.dumps(r[k], default=str, ensure_ascii=False)
            clean.append(r)
        with self.engine.begin() as c:
            c.execute(dq_results.insert(), clean)

    def dq_history(self, source: str | None = None, entity: str | None = None, agency_code: str | None = None,
                   run_id: str | None = None, limit: int = 1000) -> list[dict]:
        q = sa.select(dq_results)
        for col, val in (("source", source), ("entity", entity), ("agency_code", agency_code), ("run_id", run_id)):
            if val is not None:
                q = q.where(dq_results.c[col] == val)
        q = q.order_by(dq_results.c.id.desc()).limit(limit)
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(q).mappings()]


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
