"""What a report reads: the published marts of one period for one agency and its units, with names attached.

``load(warehouse, "2025-Q4")`` reads the published generation (``warehouse.views.connect`` resolves
``_marts/current`` once, so the three KPI marts come from one build) and returns a :class:`ReportData`: the agencies
in scope (default: every agency at the top of the hierarchy, i.e. without a parent, and all their units; with
``agency``: that agency and its units) with names and levels from ``core_agencies``; the rows of
``mart_kpi__agency_period``, ``mart_766__agency_period`` and ``mart_tt01_form06__agency_period`` (both bases) of
the period for them; the monthly KPI rows of the months up to the period's end (trends); the data-quality rows of
the period's months (``mart_dq__agency_source_period``) and the rows of batches held out of core (``_held/``).
Labels, units and targets of the measures come from ``transforms.kpis.registry`` (``kpi_meta``); no formula is
restated here. Problems (nothing published, unknown agency, a period without data) raise :class:`ReportDataError`
with one sentence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd

from transforms.kpis import registry
from transforms.reports import texts
from transforms.reports.periods import Period, parse

KPI_MART = "mart_kpi__agency_period"
S766_MART = "mart_766__agency_period"
FORM06_MART = "mart_tt01_form06__agency_period"
DQ_MART = "mart_dq__agency_source_period"
HELD_DIR = "_held"
# the plan KPIs whose monthly trend the report draws (issue 14: on-time, online filing, digitisation,
# e-results, feedback on time, satisfaction)
TREND_KPIS = ("on_time_rate", "online_rate", "digitization_rate", "e_result_rate", "feedback_on_time_rate",
              "satisfaction_rate")


class ReportDataError(ValueError):
    """The report cannot be made from this warehouse; the message says why and what to do."""


@dataclass
class ReportData:
    warehouse: Path
    period: Period
    as_of: date | None                   # the data date of the published marts
    roots: list[str]                     # the agencies the report is about (their units follow)
    agencies: pd.DataFrame               # agency_code, agency_name, level, parent_code, depth, root_code
    kpi: pd.DataFrame                    # KPI mart rows of the period, with label/unit
    s766: pd.DataFrame                   # 766 mart rows of the period, with agency_name/level
    form06: pd.DataFrame                 # form 06 rows of the period (both bases), with agency_name
    trend: pd.DataFrame                  # monthly KPI rows of the trend months
    dq: pd.DataFrame                     # data-quality rows of the period's months
    held: pd.DataFrame                   # rows of held batches per table and agency (updated in the period)
    manifest: dict = field(default_factory=dict)
    agency: str | None = None            # the agency asked for (None: the top of the hierarchy)
    all_agencies: pd.DataFrame | None = None  # every agency of core_agencies (names of any code)

    def name(self, code: str) -> str:
        a = self.agencies if self.all_agencies is None else self.all_agencies
        m = a.loc[a.agency_code == code, "agency_name"]
        return str(m.iloc[0]) if len(m) else code

    @property
    def is_closed(self) -> bool:
        return self.as_of is not None and self.period.is_closed(self.as_of)


def kpi_meta(lang: str = "vi") -> pd.DataFrame:
    """One row per plan KPI of the registry: kpi_code, label, unit, target kind, numerator and denominator in words,
    rules (the registry's order)."""
    return pd.DataFrame([{
        "kpi_code": k.code, "label": k.vi if lang == "vi" else k.en, "label_en": k.en, "unit": k.unit,
        "target_kind": k.target, "numerator_words": registry.in_words(k.numerator),
        "denominator_words": registry.in_words(k.denominator) if k.denominator else "", "note": k.note,
        "rules": ", ".join(k.rules), "order": i} for i, k in enumerate(registry.KPIS)])


def _df(con, sql: str, params: list | None = None) -> pd.DataFrame:
    return con.execute(sql, params or []).df()


def _tables(con) -> set[str]:
    return {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}


def scope(agencies: pd.DataFrame, agency: str | None) -> tuple[list[str], pd.DataFrame]:
    """The roots (``agency``, or every agency without a parent) and every agency under them, with its depth under
    its root and the root's code."""
    codes = set(agencies.agency_code)
    if agency is not None and agency not in codes:
        near = ", ".join(sorted(c for c in codes if c.startswith(agency.split(".")[0]))[:8])
        raise ReportDataError(f"Không có đơn vị mã '{agency}' trong danh mục đơn vị (core_agencies)"
                              + (f"; các mã gần giống: {near}." if near else "."))
    parent = dict(zip(agencies.agency_code, agencies.parent_code.where(agencies.parent_code.notna(), None)))
    roots = [agency] if agency else sorted(c for c, p in parent.items() if not p or p not in codes)
    children: dict[str, list[str]] = {}
    for c, p in parent.items():
        if p:
            children.setdefault(p, []).append(c)
    rows, stack = [], [(r, 0, r) for r in reversed(roots)]
    while stack:
        code, depth, root = stack.pop()
        rows.append({"agency_code": code, "depth": depth, "root_code": root})
        stack.extend((c, depth + 1, root) for c in sorted(children.get(code, []), reverse=True))
    out = pd.DataFrame(rows).merge(agencies, on="agency_code", how="left")
    return roots, out


def _held(warehouse: Path, period: Period) -> pd.DataFrame:
    files = sorted((warehouse / HELD_DIR).glob("stg_*/*.parquet"))
    cols = ["table", "agency_code", "rows"]
    if not files:
        return pd.DataFrame(columns=cols)
    import duckdb

    con = duckdb.connect()
    try:
        parts = []
        for f in files:
            names = {r[0] for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(f)]).fetchall()}
            agency = "agency_code" if "agency_code" in names else "NULL"
            when = ("updated_at::DATE BETWEEN ? AND ?" if "updated_at" in names else "true")
            args = [str(f)] + ([period.start, period.end] if "updated_at" in names else [])
            parts.append(con.execute(
                f"SELECT ? AS \"table\", coalesce({agency}::VARCHAR, ?) AS agency_code, count(*) AS rows "
                f"FROM read_parquet(?) WHERE {when} GROUP BY 2",
                [f.parent.name, texts.t("common.unknown_agency"), *args]).df())
        out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
        return out[out.rows > 0].groupby(["table", "agency_code"], as_index=False).rows.sum()
    finally:
        con.close()


def load(warehouse: Path | str, period: Period | str, agency: str | None = None, *,
         trend_months: int = 12, lang: str = "vi") -> ReportData:
    """The report's data of ``period`` (a Period or a label such as ``2025-Q4``) for ``agency`` (default: the top
    of the hierarchy) and its units."""
    from warehouse.generations import published_manifest
    from warehouse.views import connect

    wh = Path(warehouse)
    p = parse(period) if isinstance(period, str) else period
    if not wh.is_dir():
        raise ReportDataError(f"Không thấy kho dữ liệu '{wh}': kiểm tra đường dẫn --warehouse.")
    con = connect(wh)
    try:
        have = _tables(con)
        missing = [t for t in ("core_agencies", KPI_MART, S766_MART, FORM06_MART) if t not in have]
        if missing:
            raise ReportDataError(f"Kho dữ liệu '{wh}' chưa có {', '.join(missing)}: chạy `tthc run` (lần chạy "
                                  "hằng đêm) trước khi lập báo cáo.")
        agencies = _df(con, "SELECT agency_code, agency_name, level, parent_code, valid_from, valid_to "
                            "FROM core_agencies")
        roots, scoped = scope(agencies, agency)
        codes = list(scoped.agency_code)
        key = [p.period_type, p.period]
        kpi = _df(con, f"SELECT * FROM {KPI_MART} WHERE period_type = ? AND period = ? "
                       "AND list_contains(?, agency_code)", key + [codes])
        if kpi.empty:
            span = con.execute(f"SELECT min(period), max(period) FROM {KPI_MART} WHERE period_type = ?",
                               [p.period_type]).fetchone()
            known = f"có từ {span[0]} đến {span[1]}" if span and span[0] else "chưa có kỳ nào loại này"
            raise ReportDataError(f"Kỳ {p.period} ({p.label_vi}) chưa có số liệu cho đơn vị đã chọn trong kho "
                                  f"'{wh}' ({known}).")
        meta = kpi_meta(lang)
        kpi = kpi.merge(meta, on="kpi_code", how="left").sort_values(["agency_code", "order"])
        names = scoped[["agency_code", "agency_name", "level", "depth", "root_code"]]
        s766 = _df(con, f"SELECT * FROM {S766_MART} WHERE period_type = ? AND period = ? "
                        "AND list_contains(?, agency_code)", key + [codes]).merge(names, on="agency_code",
                                                                                    how="left")
        form06 = _df(con, f"SELECT * FROM {FORM06_MART} WHERE period_type = ? AND period = ? "
                          "AND list_contains(?, agency_code) ORDER BY agency_code, period_basis, field_code",
                     key + [codes]).merge(names, on="agency_code", how="left")
        months = [m.period for m in p.trend_months(trend_months)]
        trend = _df(con, f"SELECT agency_code, period, period_start, kpi_code, value, target, meets_target "
                         f"FROM {KPI_MART} WHERE period_type = 'month' AND list_contains(?, period) "
                         "AND list_contains(?, agency_code) ORDER BY period", [months, codes])
        dq = pd.DataFrame()
        if DQ_MART in have:
            dq = _df(con, f"SELECT * FROM {DQ_MART} WHERE list_contains(?, period)",
                     [[m.period for m in p.months()]])
    finally:
        con.close()
    manifest = published_manifest(wh)
    as_of = manifest.get("built_from", {}).get("as_of")
    present = set(kpi.agency_code) | set(s766.agency_code)
    scoped = scoped[scoped.agency_code.isin(present)].reset_index(drop=True)
    return ReportData(wh, p, date.fromisoformat(as_of) if as_of else None, roots, scoped, kpi, s766, form06,
                      trend, dq, _held(wh, p), manifest, agency, agencies)
