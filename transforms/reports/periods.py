"""Reporting periods: ``2025-11`` (month), ``2025-Q4`` (quarter), ``2025`` (year), as the marts key them.

``parse("2025-Q4")`` gives a :class:`Period` with the marts' keys (``period_type``, ``period``: the columns of
``mart_kpi__agency_period``, ``mart_766__agency_period`` and ``mart_tt01_form06__agency_period``), its first and
last days, its form 06 cut-off dates (``cutoff_15``: from the 15th of the month before the period to the 14th of
its last month, labelled by the calendar period it ends in, docs/kpis.md S2), its Vietnamese and English labels
and the months it covers or that precede it (trends). ``latest_closed(as_of)`` gives the latest month and quarter
whose last day is on or before the data date. A label that is not a period raises :class:`PeriodError` with one
sentence saying what is expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

ROMAN = {1: "I", 2: "II", 3: "III", 4: "IV"}
_MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")
_QUARTER = re.compile(r"^(\d{4})-?[Qq]([1-4])$")
_YEAR = re.compile(r"^(\d{4})$")


class PeriodError(ValueError):
    """A period label that cannot be read; the message is a sentence for the person who typed it."""


def _month_end(y: int, m: int) -> date:
    return (date(y + (m == 12), m % 12 + 1, 1)) - timedelta(days=1)


def _add_months(y: int, m: int, n: int) -> tuple[int, int]:
    k = y * 12 + (m - 1) + n
    return k // 12, k % 12 + 1


@dataclass(frozen=True)
class Period:
    period_type: str     # month, quarter or year (the marts' period_type)
    period: str          # 2025-11, 2025-Q4, 2025 (the marts' period)
    start: date
    end: date

    @property
    def year(self) -> int:
        return self.start.year

    @property
    def cutoff_start(self) -> date:
        """First day of the form 06 cut-off period (``cutoff_15``): the 15th of the month before."""
        y, m = _add_months(self.start.year, self.start.month, -1)
        return date(y, m, 15)

    @property
    def cutoff_end(self) -> date:
        """Last day of the form 06 cut-off period: the 14th of the period's last month."""
        return date(self.end.year, self.end.month, 14)

    @property
    def label_vi(self) -> str:
        if self.period_type == "month":
            return f"Tháng {self.start.month:02d}/{self.year}"
        if self.period_type == "quarter":
            return f"Quý {ROMAN[(self.start.month - 1) // 3 + 1]}/{self.year}"
        return f"Năm {self.year}"

    @property
    def label_en(self) -> str:
        if self.period_type == "month":
            return self.start.strftime("%B %Y")
        if self.period_type == "quarter":
            return f"Q{(self.start.month - 1) // 3 + 1} {self.year}"
        return f"Year {self.year}"

    def label(self, lang: str = "vi") -> str:
        return self.label_vi if lang == "vi" else self.label_en

    def months(self) -> list[Period]:
        """The months the period covers, in order."""
        out, (y, m) = [], (self.start.year, self.start.month)
        while date(y, m, 1) <= self.end:
            out.append(month(y, m))
            y, m = _add_months(y, m, 1)
        return out

    def trend_months(self, n: int = 12) -> list[Period]:
        """The ``n`` months ending with the period's last month (the months before it, then its own), in order."""
        out = []
        for k in range(n - 1, -1, -1):
            y, m = _add_months(self.end.year, self.end.month, -k)
            out.append(month(y, m))
        return out

    def previous(self) -> Period:
        """The period of the same type just before this one."""
        return period_containing(self.period_type, self.start - timedelta(days=1))

    def is_closed(self, as_of: date) -> bool:
        """Its last day is on or before the data date (every day of it is in the data)."""
        return self.end <= as_of

    def __str__(self) -> str:
        return self.period


def month(y: int, m: int) -> Period:
    return Period("month", f"{y}-{m:02d}", date(y, m, 1), _month_end(y, m))


def quarter(y: int, q: int) -> Period:
    return Period("quarter", f"{y}-Q{q}", date(y, 3 * q - 2, 1), _month_end(y, 3 * q))


def year(y: int) -> Period:
    return Period("year", str(y), date(y, 1, 1), date(y, 12, 31))


def period_containing(period_type: str, day: date) -> Period:
    if period_type == "month":
        return month(day.year, day.month)
    if period_type == "quarter":
        return quarter(day.year, (day.month - 1) // 3 + 1)
    if period_type == "year":
        return year(day.year)
    raise PeriodError(f"Loại kỳ '{period_type}' không hợp lệ: dùng month, quarter hoặc year.")


def parse(text: str) -> Period:
    """``2025-11`` / ``2025-Q4`` (also ``2025Q4``, ``2025-q4``) / ``2025`` -> Period."""
    s = str(text).strip()
    if m := _MONTH.match(s):
        y, mo = int(m.group(1)), int(m.group(2))
        if 1 <= mo <= 12 and y >= 1900:
            return month(y, mo)
    elif m := _QUARTER.match(s):
        if int(m.group(1)) >= 1900:
            return quarter(int(m.group(1)), int(m.group(2)))
    elif m := _YEAR.match(s):
        if int(m.group(1)) >= 1900:
            return year(int(m.group(1)))
    raise PeriodError(f"Kỳ báo cáo '{s}' không hợp lệ: dùng dạng 2025-11 (tháng), 2025-Q4 (quý) hoặc 2025 (năm) "
                      f"(period '{s}' is not a month, quarter or year).")


def latest_closed(as_of: date) -> dict[str, Period]:
    """The latest closed month and quarter (last day on or before ``as_of``): ``{"month": ..., "quarter": ...}``."""
    out = {}
    for kind in ("month", "quarter"):
        p = period_containing(kind, as_of)
        out[kind] = p if p.is_closed(as_of) else p.previous()
    return out
