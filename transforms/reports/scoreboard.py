"""The Decision 766 scoreboard laid out as the national portal shows it, from ``mart_766__agency_period``.

Per agency and period: the five groups with their maxima (``registry.GROUPS``: 18/20/22/22/18; group 3 shown as
the portal's parts, online service 12 + payment 10, ``registry.GROUP_PARTS``), each computed indicator's score
under its group, and the points the computable indicators reach **out of the points they can reach** (the sum of
the maxima of the indicators with a score for that agency and period). The pipeline does not see every indicator
of the portal, so no total out of 100 is given. Agencies are ranked among agencies of the same level by the share
of reachable points reached (ties share a rank). An indicator without a settled score (``score`` "NULL" in the
registry) or with an empty denominator shows its ratio and why it has no score.

``build(s766)`` takes the mart rows (with ``agency_name`` and ``level`` attached, as ``data.load`` gives them) and
returns one :class:`Board` per (agency, period); ``frame(boards)`` flattens them into rows for tables and sheets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from transforms.kpis import registry
from transforms.reports import texts


@dataclass
class Cell:
    code: str
    label: str
    ratio: float | None
    numerator: int | None
    denominator: int | None
    score: float | None
    max_score: float | None
    why: str = ""          # why there is no score (empty when scored)


@dataclass
class Part:
    label: str
    max_points: int
    cells: list[Cell]


@dataclass
class Group:
    code: str
    label: str
    max_points: int
    parts: list[Part]          # one part (the group itself) unless the portal shows it in parts

    @property
    def cells(self) -> list[Cell]:
        return [c for p in self.parts for c in p.cells]

    @property
    def points(self) -> float:
        return sum(c.score for c in self.cells if c.score is not None)

    @property
    def reachable(self) -> float:
        return sum(c.max_score for c in self.cells if c.score is not None and c.max_score is not None)


@dataclass
class Board:
    agency_code: str
    agency_name: str
    level: str
    period_type: str
    period: str
    groups: list[Group]
    rank: int | None = None
    rank_of: int | None = None          # agencies of the same level ranked
    extra: dict = field(default_factory=dict)

    @property
    def points(self) -> float:
        return sum(g.points for g in self.groups)

    @property
    def reachable(self) -> float:
        return sum(g.reachable for g in self.groups)

    @property
    def share(self) -> float | None:
        return self.points / self.reachable if self.reachable else None


def _num(x) -> float | None:
    if x is None or x is pd.NA:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _cell(code: str, row: dict | None, lang: str) -> Cell:
    ind = registry.INDICATOR[code]
    label = ind.vi if lang == "vi" else ind.en
    if row is None:
        return Cell(code, label, None, None, None, None, ind.max_score, texts.t("common.no_data", lang))
    score, den = _num(row.get("score")), _num(row.get("denominator"))
    why = ""
    if score is None:
        if code in registry.NO_SCORE_WHY:
            why = registry.NO_SCORE_WHY[code][0 if lang == "vi" else 1]
        elif not den:
            why = texts.t("s766.no_denominator", lang)
        else:
            why = texts.t("common.no_data", lang)
    num = _num(row.get("numerator"))
    return Cell(code, label, _num(row.get("ratio")), None if num is None else int(num),
                None if den is None else int(den), score, _num(row.get("max_score")) or ind.max_score, why)


def _groups(rows: dict[str, dict], lang: str) -> list[Group]:
    out = []
    for g, (vi, en, maximum) in registry.GROUPS.items():
        codes = [i.code for i in registry.INDICATORS if i.group == g]
        if g in registry.GROUP_PARTS:
            parts = [Part(pvi if lang == "vi" else pen, pmax, [_cell(c, rows.get(c), lang) for c in pcodes])
                     for pvi, pen, pmax, pcodes in registry.GROUP_PARTS[g]]
        else:
            parts = [Part(vi if lang == "vi" else en, maximum, [_cell(c, rows.get(c), lang) for c in codes])]
        out.append(Group(g, vi if lang == "vi" else en, maximum, parts))
    return out


def rank(boards: list[Board]) -> None:
    """Rank each board among the boards of the same level and period by share of reachable points (1 = best;
    equal shares share a rank); boards without reachable points are not ranked."""
    by: dict[tuple, list[Board]] = {}
    for b in boards:
        if b.share is not None:
            by.setdefault((b.level, b.period_type, b.period), []).append(b)
    for same in by.values():
        same.sort(key=lambda b: -round(b.share, 9))
        for i, b in enumerate(same):
            prev = same[i - 1] if i else None
            b.rank = prev.rank if prev and round(prev.share, 9) == round(b.share, 9) else i + 1
            b.rank_of = len(same)


def build(s766: pd.DataFrame, lang: str = "vi") -> list[Board]:
    """One board per (agency, period) of the mart rows, ranked within level."""
    boards = []
    if s766.empty:
        return boards
    for (agency, ptype, period), rows in s766.groupby(["agency_code", "period_type", "period"], sort=True):
        first = rows.iloc[0]
        by_code = {r["indicator_code"]: r for r in rows.to_dict("records")}
        name = first.get("agency_name")
        boards.append(Board(agency, str(name) if isinstance(name, str) else agency,
                            str(first.get("level") or ""), ptype, period, _groups(by_code, lang)))
    rank(boards)
    return boards


def frame(boards: list[Board], lang: str = "vi") -> pd.DataFrame:
    """One row per (agency, period, indicator) plus one per group and one per board (``row_kind`` indicator /
    group / total): scores, maxima, points reached and reachable, rank."""
    rows = []
    for b in boards:
        base = {"agency_code": b.agency_code, "agency_name": b.agency_name, "level": b.level,
                "period_type": b.period_type, "period": b.period}
        for g in b.groups:
            for part in g.parts:
                for c in part.cells:
                    rows.append({**base, "row_kind": "indicator", "group_code": g.code, "group": g.label,
                                 "part": part.label, "part_max": part.max_points, "indicator_code": c.code,
                                 "indicator": c.label, "numerator": c.numerator, "denominator": c.denominator,
                                 "ratio": c.ratio, "score": c.score, "max_score": c.max_score, "why": c.why})
            rows.append({**base, "row_kind": "group", "group_code": g.code, "group": g.label,
                         "group_max": g.max_points, "points": g.points, "reachable": g.reachable})
        rows.append({**base, "row_kind": "total", "points": b.points, "reachable": b.reachable,
                     "share": b.share, "rank": b.rank, "rank_of": b.rank_of})
    return pd.DataFrame(rows)
