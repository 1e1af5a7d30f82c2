"""``write_workbooks``: form06.xlsx and kpi.xlsx of one period for an agency (default: the top of the hierarchy)
and its units, from the published marts (``transforms.reports.data.load``)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd

from transforms.reports import data as report_data
from transforms.reports import scoreboard
from transforms.reports.form06_xlsx import Form06Sheet, write_form06
from transforms.reports.kpi_xlsx import sort_kpi, write_kpi_workbook
from transforms.reports.periods import Period, parse, period_containing, quarter

FORM06_BASIS = "cutoff_15"   # the circular's reporting period: the 15th of the month before to the 14th


def write_workbooks(warehouse: Path, period: Period | str, agency: str | None, out_dir: Path, *,
                    made_on: date | None = None, place: str = "", basis: str = FORM06_BASIS,
                    loaded: report_data.ReportData | None = None) -> dict[str, Path]:
    """Write ``out_dir/form06.xlsx`` and ``out_dir/kpi.xlsx``; returns {"form06": path, "kpi": path}.

    ``loaded``: the period's ``data.load`` result when the caller has it (the HTML report), else it is loaded.
    ``basis``: form 06's period (``cutoff_15``, the circular's, or ``calendar``). Raises
    ``data.ReportDataError`` (one sentence) when the warehouse has nothing for the period or agency."""
    p = parse(period) if isinstance(period, str) else period
    d = loaded or report_data.load(warehouse, p, agency)
    out_dir = Path(out_dir)
    made_on = made_on or date.today()
    order = list(d.agencies.agency_code)
    labels = dict(zip(d.agencies.agency_code, d.agencies.agency_name))
    paths = {"form06": out_dir / "form06.xlsx", "kpi": out_dir / "kpi.xlsx"}
    write_form06(paths["form06"], form06_sheets(d, basis), made_on=made_on, place=place)
    by_type = {}
    for ptype, periods in _sheet_periods(p).items():
        frames = []
        for q in periods:
            got = d if q == p else _load_or_none(warehouse, q, agency)
            if got is not None and not got.kpi.empty:
                frames.append(got.kpi)
        by_type[ptype] = sort_kpi(pd.concat(frames, ignore_index=True), order) if frames else pd.DataFrame()
    board = scoreboard.frame(scoreboard.build(d.s766))
    title = f"{', '.join(labels.get(r, r) for r in d.roots)} — {p.label_vi}"
    write_kpi_workbook(paths["kpi"], by_type, board, labels, title)
    return paths


def form06_sheets(d: report_data.ReportData, basis: str = FORM06_BASIS) -> list[Form06Sheet]:
    """One sheet per agency in scope with form 06 rows of the basis, in the scope's order (roots, then units)."""
    p = d.period
    start, end = (p.cutoff_start, p.cutoff_end) if basis == "cutoff_15" else (p.start, p.end)
    f = d.form06[d.form06.period_basis == basis] if not d.form06.empty else d.form06
    names = dict(zip(d.agencies.agency_code, d.agencies.agency_name))
    parents = dict(zip(d.agencies.agency_code, d.agencies.parent_code))
    sheets = []
    for code in d.agencies.agency_code:
        rows = f[f.agency_code == code].to_dict("records") if not f.empty else []
        if not rows:
            continue
        parent = parents.get(code)
        above = names.get(parent) if isinstance(parent, str) else None
        sheets.append(Form06Sheet(code, names.get(code) or code, p.label_vi, start, end, rows, above))
    return sheets


def _sheet_periods(p: Period) -> dict[str, list[Period]]:
    """The months, quarters and year the KPI sheets show for ``p``: those of each type overlapping it."""
    quarters = ([quarter(p.year, q) for q in range(1, 5)] if p.period_type == "year"
                else [period_containing("quarter", p.start)])
    return {"month": p.months(), "quarter": quarters, "year": [period_containing("year", p.start)]}


def _load_or_none(warehouse: Path, p: Period, agency: str | None) -> report_data.ReportData | None:
    try:
        return report_data.load(warehouse, p, agency, trend_months=1)
    except report_data.ReportDataError:  # a period of the sheet without data (not reached yet): left out
        return None
