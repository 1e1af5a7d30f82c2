"""The ledger: every run, file, batch, watermark and data-quality result, through SQLAlchemy.

SQLite file in the warehouse by default (``sqlite:///<warehouse>/_ledger.sqlite``); any SQLAlchemy URL works
(PostgreSQL in production: ``postgresql+psycopg://user@host/db``). Tables are created on first use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from warehouse.ledger_tables import (
    batches,
    dq_results,
    files,
    metadata,
    runs,
    watermarks,
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
