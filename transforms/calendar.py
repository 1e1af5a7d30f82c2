"""Working days (ngày làm việc) and reporting periods (kỳ báo cáo).

Rules (docs/kpis.md, "Time" and settled details 1 and 2):
- A working day is Monday..Friday, minus every day of ``holidays.Vietnam()`` (observed and substitute days
  included), minus the dates of the project's extra-days-off file. Saturdays declared make-up working days are
  *not* working days (the official method counts Mon-Fri only).
- ``add_working_days(d, n)`` is the n-th working day after d; d itself is never counted, and
  ``add_working_days(d, 0) == d``.
- Periods: calendar month ``2023-01``, quarter ``2023-Q1``, year ``2023``; cut-off periods (``cutoff_15``) run from
  the 15th of the month before to the 14th of the last month and carry the label of the calendar period they end
  in (``2024-Q1`` = 2023-12-15..2024-03-14).

Everything is vectorised with numpy's business-day functions and a holiday array, and the same calendar is
exposed to DuckDB as a table (``working_day_table``) so SQL can add working days with a join.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

# Vietnam's time (UTC+7, no daylight saving): the exports' local times, the data date, "today" and "yesterday"
TIME_ZONE = "Asia/Ho_Chi_Minh"
LOCAL_TZ = ZoneInfo(TIME_ZONE)
WEEKMASK = "1111100"  # Mon..Fri
FIRST_YEAR = 2000
LAST_YEAR = 2045


def _read_extra_days_off(path: Path | None) -> tuple[date, ...]:
    if path is None or not Path(path).exists():
        return ()
    out = []
    with open(path, encoding="utf-8-sig", newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh), start=2):
            raw = (row.get("date") or "").strip()
            if not raw:
                continue
            try:
                out.append(date.fromisoformat(raw))
            except ValueError as exc:
                raise ValueError(f"{path}, line {i}, column 'date': expected YYYY-MM-DD, got {raw!r}") from exc
    return tuple(sorted(set(out)))


@lru_cache(maxsize=8)
def _holiday_array(extra: tuple[date, ...]) -> np.ndarray:
    import holidays  # imported lazily: building the lunar calendar takes a moment

    days = set(holidays.Vietnam(years=range(FIRST_YEAR, LAST_YEAR + 1)).keys()) | set(extra)
    return np.array(sorted(days), dtype="datetime64[D]")


class WorkingCalendar:
    """Vietnamese working-day calendar, optionally extended by an extra-days-off file (date,reason)."""

    def __init__(self, extra_days_off: Path | Iterable[date] | None = None):
        if extra_days_off is None or isinstance(extra_days_off, (str, Path)):
            extra = _read_extra_days_off(Path(extra_days_off) if extra_days_off else None)
        else:
            extra = tuple(sorted(set(extra_days_off)))
        self.extra_days_off = extra
        self.holidays = _holiday_array(extra)
        self.busdaycal = np.busdaycalendar(weekmask=WEEKMASK, holidays=self.holidays)

    def is_working_day(self, d) -> np.ndarray | bool:
        arr = np.asarray(d, dtype="datetime64[D]")
        out = np.is_busday(arr, busdaycal=self.busdaycal)
        return bool(out) if np.ndim(out) == 0 else out

    def add_working_days(self, d, n):
        """n-th working day after d (d never counted; n == 0 gives d). Scalars or arrays (broadcast)."""
        scalar = np.ndim(d) == 0 and np.ndim(n) == 0
        arr = np.asarray(d, dtype="datetime64[D]")
        nn = np.asarray(n, dtype=np.int64)
        if np.any(nn < 0):
            raise ValueError("add_working_days: n must be >= 0")
        # roll='backward' moves a non-working d to the previous working day w; the n-th working day after w is
        # then the n-th working day after d, because no working day lies between w and d.
        moved = np.busday_offset(arr, nn, roll="backward", busdaycal=self.busdaycal)
        out = np.where(nn == 0, arr, moved)
        if scalar:
            return out.item() if isinstance(out, np.ndarray) else out.astype(date)
        return out

    def working_day_table(self, start: date, end: date):
        """pyarrow table (day DATE, wd_index BIGINT, is_working BOOLEAN) for start..end.

        ``wd_index`` = number of working days on or before ``day``; so the n-th working day after d (n >= 1) is the
        working day whose index is ``wd_index(d) + n``.
        """
        import pyarrow as pa

        days = np.arange(np.datetime64(start, "D"), np.datetime64(end, "D") + 1, dtype="datetime64[D]")
        work = np.is_busday(days, busdaycal=self.busdaycal)
        idx = np.cumsum(work.astype(np.int64))
        # columns made from the numpy buffers: pa.array and pa.table import pandas (~0.4 s in each process that
        # builds core, and the night's build is a process of its own)
        n = len(days)
        day = pa.Array.from_buffers(pa.date32(), n, [None, pa.py_buffer(days.astype(np.int32))])
        wd_index = pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(np.ascontiguousarray(idx))])
        is_working = pa.Array.from_buffers(pa.bool_(), n, [None, pa.py_buffer(np.packbits(work, bitorder="little"))])
        return pa.Table.from_arrays([day, wd_index, is_working], names=["day", "wd_index", "is_working"])


@lru_cache(maxsize=8)
def _cached(extra: tuple[date, ...]) -> WorkingCalendar:
    return WorkingCalendar(list(extra))


def get_calendar(extra_days_off: Path | None = None) -> WorkingCalendar:
    return _cached(_read_extra_days_off(extra_days_off))


def add_working_days(d, n, extra_days_off: Path | None = None):
    """Module-level convenience: ``add_working_days(date(2024, 1, 5), 3)``."""
    return get_calendar(extra_days_off).add_working_days(d, n)


def is_working_day(d, extra_days_off: Path | None = None):
    return get_calendar(extra_days_off).is_working_day(d)


# ---------------------------------------------------------------------------------------------------------------
# Periods
# ---------------------------------------------------------------------------------------------------------------
PERIOD_TYPES = ("month", "quarter", "year")
PERIOD_BASES = ("calendar", "cutoff_15")
_MONTHS_PER = {"month": 1, "quarter": 3, "year": 12}


@dataclass(frozen=True)
class Period:
    basis: str  # calendar | cutoff_15
    period_type: str  # month | quarter | year
    index: int  # month index (year*12+m-1) // months per period
    label: str
    start: date
    end: date

    def eval_date(self, as_of: date) -> date:
        return min(self.end, as_of)


def _month_start(month_index: int) -> date:
    return date(month_index // 12, month_index % 12 + 1, 1)


def month_index(d: date, basis: str = "calendar") -> int:
    """Index (year*12 + month-1) of the month period containing d; for cutoff_15 the month it ends in."""
    if basis == "calendar":
        return d.year * 12 + d.month - 1
    shifted = d - timedelta(days=14)  # day >= 15 stays in its month, earlier days fall into the month before
    return shifted.year * 12 + shifted.month - 1 + 1


def make_period(basis: str, period_type: str, index: int) -> Period:
    k = _MONTHS_PER[period_type]
    first_m, last_m = index * k, index * k + k - 1
    if period_type == "month":
        label = f"{first_m // 12:04d}-{first_m % 12 + 1:02d}"
    elif period_type == "quarter":
        label = f"{first_m // 12:04d}-Q{(first_m % 12) // 3 + 1}"
    else:
        label = f"{first_m // 12:04d}"
    if basis == "calendar":
        start = _month_start(first_m)
        end = _month_start(last_m + 1) - timedelta(days=1)
    else:
        start = _month_start(first_m - 1).replace(day=15)
        end = _month_start(last_m).replace(day=14)
    return Period(basis, period_type, index, label, start, end)


def period_index(d: date, basis: str, period_type: str) -> int:
    return month_index(d, basis) // _MONTHS_PER[period_type]


def periods_between(first_day: date, as_of: date, bases: Iterable[str] = PERIOD_BASES,
                    types: Iterable[str] = PERIOD_TYPES) -> list[Period]:
    """Every period from the one containing ``first_day`` to the one containing ``as_of`` (settled detail 2)."""
    out: list[Period] = []
    for basis in bases:
        for ptype in types:
            lo, hi = period_index(first_day, basis, ptype), period_index(as_of, basis, ptype)
            out.extend(make_period(basis, ptype, i) for i in range(lo, hi + 1))
    return out


def year_earlier_label(label: str) -> str:
    """``2024-03`` -> ``2023-03``, ``2024-Q1`` -> ``2023-Q1``, ``2024`` -> ``2023``."""
    return f"{int(label[:4]) - 1:04d}{label[4:]}"


def local_now() -> datetime:
    """Now in Vietnam, timezone-aware."""
    return datetime.now(LOCAL_TZ)


def yesterday() -> date:
    """Yesterday in Vietnam: a run's data date when none is given."""
    return local_now().date() - timedelta(days=1)
