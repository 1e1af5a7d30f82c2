"""Pull windows, record keys and timestamps shared by the HTTP and SQL pulls (no network, no Prefect).

A pull reads one *window* of one entity: the records whose ``NgayCapNhat`` (updated at, naive local time,
Asia/Ho_Chi_Minh) lies in ``[window_from, window_to)``. The window starts at the last committed watermark minus a
safety overlap and ends at the moment the pull started, frozen for the whole read (see docs/pulling.md).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from transforms.calendar import LOCAL_TZ

# the first pull of an entity (no watermark yet) reads everything since this moment
DEFAULT_START = datetime(2000, 1, 1)

# id field and version field of one record, per entity, in the JSON shape the export API answers with
RECORD_KEYS: dict[str, tuple[str, str]] = {
    "dossiers": ("MaHoSo", "NgayCapNhat"),
    "procedures": ("procedure_code", "updated_at"),
    "payments": ("payment_id", "updated_at"),
    "ratings": ("rating_id", "rated_at"),  # ratings are never updated: the rating time is the version
    "feedback": ("feedback_id", "updated_at"),
    "e_certifications": ("transaction_id", "updated_at"),
}
# the same for rows of the one-stop SQL replica (keys are the column names of mappings/onestop_sql.yaml)
SQL_RECORD_KEYS = ("MaHoSo", "NgayCapNhat")


def local_now() -> datetime:
    """Now as naive local time (the sources' clock)."""
    return datetime.now(LOCAL_TZ).replace(tzinfo=None, microsecond=0)


_COMPACT = re.compile(r"^\d{14}$")
_DMY = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?)?$")


def parse_timestamp(value: object) -> datetime | None:
    """A source timestamp as naive local time, or None when empty or unreadable.

    Accepts ``yyyyMMddHHmmss``, ISO 8601 (``T`` or space; an offset is converted to local time),
    ``dd/mm/yyyy[ HH:MM[:SS]]`` and datetime objects.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        dt = value
    else:
        text = str(value).strip()
        if not text:
            return None
        try:
            if _COMPACT.match(text):
                dt = datetime.strptime(text, "%Y%m%d%H%M%S")
            elif (m := _DMY.match(text)) is not None:
                d, mo, y, hh, mm, ss = m.groups()
                dt = datetime(int(y), int(mo), int(d), int(hh or 0), int(mm or 0), int(ss or 0))
            else:
                dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    if dt.tzinfo is not None:
        dt = dt.astimezone(LOCAL_TZ).replace(tzinfo=None)
    return dt


def format_param(dt: datetime) -> str:
    """How window bounds travel in the export API's query string: ISO 8601 local time, seconds precision."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S")


@dataclass(frozen=True)
class Window:
    """Records with ``window_from <= updated_at < window_to`` (naive local time)."""

    window_from: datetime
    window_to: datetime

    def __post_init__(self) -> None:
        if self.window_to <= self.window_from:
            raise ValueError(f"empty pull window: from {self.window_from} to {self.window_to}")

    def contains(self, ts: datetime | None) -> bool:
        return ts is not None and self.window_from <= ts < self.window_to

    def __str__(self) -> str:
        return f"[{format_param(self.window_from)}, {format_param(self.window_to)})"


def plan_window(watermark: datetime | None, *, overlap_minutes: int, now: datetime | None = None,
                start: datetime = DEFAULT_START) -> Window:
    """The next window: ``[watermark - overlap, now)``; everything since ``start`` when nothing was committed."""
    now = now or local_now()
    if watermark is None:
        window_from = start
    else:
        window_from = watermark - timedelta(minutes=overlap_minutes)
    if window_from >= now:  # clock skew: the source says a record was updated in our future
        window_from = now - timedelta(minutes=overlap_minutes or 1)
    return Window(window_from, now)


def pull_batch_id(source: str, entity: str, window: Window, started_at: datetime | None = None) -> str:
    """``b<yyyymmddThhmmss>-<10 hex>``: the design's batch id, hashed over what identifies the pull."""
    started_at = started_at or datetime.now(LOCAL_TZ).replace(tzinfo=None)
    digest = hashlib.sha256(f"pull|{source}|{entity}|{window}|{started_at.isoformat()}".encode()).hexdigest()
    return f"b{started_at:%Y%m%dT%H%M%S}-{digest[:10]}"


def record_key(record: dict, entity: str) -> tuple[str, str]:
    """(id, normalised updated_at) of a record in the export API's JSON shape: the dedup key."""
    id_field, ts_field = RECORD_KEYS[entity]
    return _key(record, id_field, ts_field)


def _key(record: dict, id_field: str, ts_field: str) -> tuple[str, str]:
    rid = record.get(id_field)
    raw_ts = record.get(ts_field)
    ts = parse_timestamp(raw_ts)
    return (str(rid) if rid is not None else "", ts.isoformat() if ts else str(raw_ts or ""))


@dataclass
class PullTracker:
    """Counts what a pull yields and remembers the latest version time seen (the next watermark)."""

    records: int = 0
    pages: int = 0
    max_updated_at: datetime | None = None
    duplicates_dropped: int = 0
    passes: int = 0
    notes: list[str] = field(default_factory=list)

    def see(self, ts: datetime | None) -> None:
        if ts is not None and (self.max_updated_at is None or ts > self.max_updated_at):
            self.max_updated_at = ts


def track(pages: Iterable[list[dict]], tracker: PullTracker, ts_field: str) -> Iterator[list[dict]]:
    """Pass pages through while counting records and the latest ``ts_field`` seen."""
    for page in pages:
        tracker.pages += 1
        tracker.records += len(page)
        for rec in page:
            tracker.see(parse_timestamp(rec.get(ts_field)))
        yield page
