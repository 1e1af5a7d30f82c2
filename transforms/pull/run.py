"""One pull as one batch: window from the ledger's watermark -> records -> raw -> staging (-> gate) -> watermark.

Prefect-free; ``flows/pull.py`` wraps ``pull_to_warehouse`` in tasks. Pulled records take exactly the file path:
``transforms.readers.records_to_raw_batch`` then ``transforms.ingest.ingest_raw`` (raw, staging, quarantine).

Commit protocol (at-least-once): the batch is recorded ``running`` in the ledger before any file is written; the
watermark (max ``updated_at`` seen) is committed only after the batch is staged and, when a gate is given, passed
it. A crash anywhere before that leaves the batch ``running`` (``ingest.recover`` deletes its files next run) and
the watermark where it was, so the next run pulls the same window again. Versions pulled twice (the overlap, a
re-pull) are the same (id, updated_at) and collapse in core (latest ``updated_at`` wins, then the later batch).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from transforms.pull.http import PullError, PullStats, RetryPolicy, pull_entity
from transforms.pull.window import (RECORD_KEYS, SQL_RECORD_KEYS, PullTracker, Window, format_param,
                                    plan_window, pull_batch_id, track)

DVC_PORTAL_ENTITIES = ("procedures", "payments", "ratings", "feedback", "e_certifications")


@dataclass(frozen=True)
class PullSpec:
    """One configured pull: a source/entity reached through the export API (``api``) or the replica (``sql``)."""

    source: str
    entity: str
    kind: str  # api | sql
    base_url: str | None = None
    token: str | None = field(default=None, repr=False)
    db_url: str | None = field(default=None, repr=False)
    sql_config: Any = field(default=None, repr=False)  # sql: a transforms.pull.sql.OneStopSqlSettings

    @property
    def fmt(self) -> str:
        return "onestop_sql" if self.kind == "sql" else "national_sync"

    @property
    def name(self) -> str:
        return f"{self.source}/{self.entity} ({self.kind})"


def configured_pulls(settings: Any) -> list[PullSpec]:
    """Every pull the settings enable. The one-stop dossiers come from the replica when its URL is set,
    otherwise from the one-stop export API (both would share one watermark, so only one of them runs). ``settings``
    is the caller's settings object (the flow's or the CLI's); the replica's table and columns are taken from it
    here, so the pull itself never reads settings."""
    specs: list[PullSpec] = []

    def secret(v):
        return v.get_secret_value() if v is not None and hasattr(v, "get_secret_value") else v

    if settings.dvc_portal_url:
        for e in DVC_PORTAL_ENTITIES:
            specs.append(PullSpec("dvc_portal", e, "api", settings.dvc_portal_url, secret(settings.dvc_portal_token)))
    if settings.one_stop_db_url:
        from transforms.pull.sql import OneStopSqlSettings

        specs.append(PullSpec("one_stop", "dossiers", "sql", db_url=settings.one_stop_db_url,
                              sql_config=OneStopSqlSettings.from_settings(settings)))
    elif settings.one_stop_url:
        specs.append(PullSpec("one_stop", "dossiers", "api", settings.one_stop_url, secret(settings.one_stop_token)))
    return specs


@dataclass
class PullOutcome:
    source: str
    entity: str
    kind: str
    status: str  # staged | passed | gate_failed | empty | failed
    window_from: datetime | None = None
    window_to: datetime | None = None
    batch_id: str | None = None
    records: int = 0
    rows_staged: int = 0
    rows_quarantined: int = 0
    watermark_before: datetime | None = None
    watermark_after: datetime | None = None
    committed: bool = False
    error: str | None = None
    seconds: float = 0.0
    details: dict = field(default_factory=dict)
    gate_result: Any = field(default=None, repr=False, compare=False)  # the GateResult, when gated

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("gate_result", None)
        return d


def _sql_config(spec: PullSpec, sql_config=None):
    """The replica's table and columns: the one given, else the spec's, else the reference schema."""
    from transforms.pull.sql import OneStopSqlSettings

    return sql_config or spec.sql_config or OneStopSqlSettings()


def describe_source(spec: PullSpec, window: Window, sql_config=None) -> str:
    """The ``_source_file`` lineage of a pulled batch: where and which window, never a password or token."""
    if spec.kind == "sql":
        import sqlalchemy as sa

        url = sa.engine.make_url(spec.db_url).render_as_string(hide_password=True) if spec.db_url else "?"
        cfg = _sql_config(spec, sql_config)
        table = f"{cfg.db_schema}.{cfg.table}" if cfg.db_schema else cfg.table
        return (f"sql:{url}#{table}?updated_from={format_param(window.window_from)}"
                f"&updated_to={format_param(window.window_to)}")
    return (f"api:{(spec.base_url or '').rstrip('/')}/api/v1/export/{spec.entity}"
            f"?updated_from={format_param(window.window_from)}&updated_to={format_param(window.window_to)}")


def iter_records(spec: PullSpec, window: Window, *, page_size: int, policy: RetryPolicy | None = None,
                 stats: PullStats | None = None, sql_config=None) -> Iterator[list[dict]]:
    if spec.kind == "sql":
        from transforms.pull.sql import pull_sql_dossiers

        return pull_sql_dossiers(spec.db_url, window.window_from, window.window_to,
                                 config=_sql_config(spec, sql_config))
    if not spec.base_url:
        raise PullError(f"{spec.source}: no export API URL configured", source=spec.source, entity=spec.entity)
    if not spec.token:
        raise PullError(f"{spec.source}: no token for the export API at {spec.base_url}; set "
                        f"TTHC_{spec.source.upper()}_TOKEN (or its Prefect Secret block)",
                        source=spec.source, entity=spec.entity)
    return pull_entity(spec.base_url, spec.token, spec.entity, window.window_from, window.window_to, page_size,
                       source=spec.source, policy=policy, stats=stats)


def pull_to_warehouse(spec: PullSpec, *, warehouse, ledger, run_id: str, agency_codes, pseudonym_key: bytes,
                      overlap_minutes: int = 60, page_size: int = 500, window: Window | None = None,
                      now: datetime | None = None, commit: bool = True,
                      gate: Callable[[Any], bool] | None = None, policy: RetryPolicy | None = None,
                      sql_config=None) -> PullOutcome:
    """Pull one window of one source/entity into the warehouse as one batch; never raises for source trouble
    (the outcome says ``failed`` and why), so one source failing does not stop the others.

    ``window``: an explicit window (backfill); otherwise ``[watermark - overlap, now)``.
    ``gate``: called with the ``StageResult``; True = passed. The watermark moves only when ``commit`` and the
    batch is staged and passed (or no gate is given). It never moves backwards.
    """
    t0 = time.perf_counter()
    before = ledger.get_watermark(spec.source, spec.entity)
    window = window or plan_window(before, overlap_minutes=overlap_minutes, now=now)
    out = PullOutcome(spec.source, spec.entity, spec.kind, "failed", window.window_from, window.window_to,
                      watermark_before=before, watermark_after=before)
    ts_field = SQL_RECORD_KEYS[1] if spec.kind == "sql" else RECORD_KEYS[spec.entity][1]
    tracker = PullTracker()
    stats = PullStats()
    try:
        pages = track(iter_records(spec, window, page_size=page_size, policy=policy, stats=stats,
                                   sql_config=sql_config), tracker, ts_field)
        first = next(pages, None)  # nothing is written before the source has answered
        if first is None:
            out.status = "empty"
            return out
        out.batch_id = pull_batch_id(spec.source, spec.entity, window)
        source_file = describe_source(spec, window, sql_config)
        ledger.begin_batch(out.batch_id, run_id, path=source_file, source=spec.source, entity=spec.entity,
                           file_kind=spec.kind, format=spec.fmt)
        stage = _stage(spec, _chain(first, pages), warehouse=warehouse, source_file=source_file,
                       batch_id=out.batch_id, agency_codes=agency_codes, pseudonym_key=pseudonym_key)
    except Exception as exc:
        _failed(out, spec, exc, warehouse, ledger)
        return _timed(out, stats, tracker, t0)
    passed = _staged(out, spec, stage, ledger, gate)
    if commit and passed and tracker.max_updated_at is not None:
        new = tracker.max_updated_at if before is None else max(before, tracker.max_updated_at)
        ledger.set_watermark(spec.source, spec.entity, new, out.batch_id)
        out.watermark_after, out.committed = new, True
    return _timed(out, stats, tracker, t0)


def _stage(spec: PullSpec, pages: Iterator[list[dict]], *, warehouse, source_file: str, batch_id: str,
           agency_codes, pseudonym_key: bytes):
    """The pages as raw batches through the file path's ingest (raw, staging, quarantine): its StageResult."""
    from transforms import ingest
    from transforms.readers import records_to_raw_batch

    def raw_batches():
        row = 1
        for page in pages:
            yield records_to_raw_batch(page, spec.source, spec.entity, fmt=spec.fmt, start_row=row)
            row += len(page)

    return ingest.ingest_raw(raw_batches(), warehouse=warehouse, source=spec.source, entity=spec.entity,
                             fmt=spec.fmt, source_file=source_file, batch_id=batch_id,
                             agencies=agency_codes, pseudonym_key=pseudonym_key,
                             ingested_at=datetime.now(UTC).replace(tzinfo=None))


def _failed(out: PullOutcome, spec: PullSpec, exc: Exception, warehouse, ledger) -> None:
    """A pull or stage that failed: a begun batch's files removed and the batch recorded failed; the error."""
    from warehouse import store

    if out.batch_id is not None:
        store.remove_batch_files(warehouse, [out.batch_id])
        ledger.finish_batch(out.batch_id, "failed", error=f"{type(exc).__name__}: {exc}")
    out.error = str(exc) if isinstance(exc, PullError) else f"{spec.name}: {type(exc).__name__}: {exc}"


def _staged(out: PullOutcome, spec: PullSpec, stage, ledger, gate: Callable[[Any], bool] | None) -> bool:
    """The staged batch recorded in the ledger, then through the gate when one is given: whether it passed."""
    batch_id = out.batch_id
    out.records, out.rows_staged, out.rows_quarantined = stage.rows_raw, stage.rows_staged, stage.rows_quarantined
    ledger.finish_batch(batch_id, "staged", rows_raw=stage.rows_raw, rows_staged=stage.rows_staged,
                        rows_quarantined=stage.rows_quarantined, stage_seconds=stage.seconds,
                        min_updated_at=stage.min_updated_at, max_updated_at=stage.max_updated_at)
    out.status = "staged"
    if gate is None:
        return True
    passed = bool(gate(stage))
    out.status = "passed" if passed else "gate_failed"
    ledger.finish_batch(batch_id, out.status)
    if not passed:
        out.error = (f"{spec.name}: batch {batch_id} failed the quality gate; watermark kept at "
                     f"{out.watermark_before}, the window is pulled again next run")
    return passed


def _timed(out: PullOutcome, stats: PullStats, tracker: PullTracker, t0: float) -> PullOutcome:
    out.details = _details(stats, tracker)
    out.seconds = time.perf_counter() - t0
    return out


def _chain(first, rest):
    yield first
    yield from rest


def _details(stats: PullStats, tracker: PullTracker) -> dict:
    return {"pages": tracker.pages, "passes": stats.passes, "retries": stats.retries,
            "retry_seconds": round(stats.retry_seconds, 2), "retry_reasons": stats.retry_reasons,
            "repeats_dropped": stats.repeats_dropped, "outside_window_dropped": stats.outside_window_dropped}


def backfill_window(specs: list[PullSpec], date_from: date, date_to: date, **kwargs) -> list[PullOutcome]:
    """Re-pull ``[date_from 00:00, date_to + 1 day 00:00)`` (local time) of each source, one batch each, without
    touching watermarks. Idempotent for the marts: the versions re-pulled are the same (id, updated_at) as
    before and core keeps one row per record (latest ``updated_at``, then the later batch), so running it twice
    rebuilds identical marts. ``kwargs`` go to ``pull_to_warehouse`` (warehouse, ledger, run_id, ...)."""
    if date_to < date_from:
        raise ValueError(f"backfill: --to {date_to} is before --from {date_from}")
    window = Window(datetime.combine(date_from, datetime.min.time()),
                    datetime.combine(date_to + timedelta(days=1), datetime.min.time()))
    kwargs = {**kwargs, "window": window, "commit": False}
    return [pull_to_warehouse(spec, **kwargs) for spec in specs]
