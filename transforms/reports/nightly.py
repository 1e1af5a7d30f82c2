"""The reports a night keeps current, without Prefect (the nightly flow calls these).

``write_period_reports(warehouse, as_of)`` writes the reports of the latest closed month and quarter (their last
day on or before ``as_of``) to ``<warehouse>/_reports/kpi/<period>/`` (report.html, report.pdf where Chromium is
installed, form06.xlsx, kpi.xlsx), then ``<warehouse>/_reports/index.html`` listing every KPI report and every
data-quality report kept there. A period whose folder did not exist before is *newly closed*: its KPIs below
target are what ``below_target`` returns (one alert per newly closed period, ``TTHC_KPI_ALERTS``);
``alert_text`` words them for a message.

A period's reports are rewritten only when what they are made from changed: each folder keeps ``.made_from.json``
(the published marts' generation, the agency, the language, whether a PDF was asked for); a night that published
nothing new leaves them as they are (``PeriodReports.unchanged``) and only the index is written again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from transforms.reports import texts
from transforms.reports.data import ReportDataError, load
from transforms.reports.kpi_report import write_report
from transforms.reports.periods import Period, latest_closed, parse
from transforms.reports.reconcile import ReconcileError
from transforms.reports.templating import render, write_atomic
from warehouse.state import read_state, write_state
from warehouse.generations import current_generation

KPI_DIR = Path("_reports") / "kpi"
INDEX = Path("_reports") / "index.html"
MADE_FROM = ".made_from.json"
ALERT_PENDING = ".kpi_alert_pending"  # in a period's folder: its KPI alert is still to be delivered
_PERIOD_DIR = re.compile(r"^\d{4}(-\d{2}|-Q[1-4])?$")


@dataclass
class PeriodReports:
    written: dict[str, dict[str, Path]] = field(default_factory=dict)   # period -> {"html", "pdf", "form06", "kpi"}
    newly_closed: list[str] = field(default_factory=list)               # periods written for the first time
    unchanged: list[str] = field(default_factory=list)                  # periods whose marts did not change
    notes: list[str] = field(default_factory=list)                      # sentences: what could not be made
    index: Path | None = None


def write_period_reports(warehouse: Path | str, as_of: date, *, agency: str | None = None, pdf: bool = True,
                         workbooks: bool = True, lang: str = "vi", portal_scores: Path | None = None,
                         due_days: int = 5) -> PeriodReports:
    """Reports of the latest closed month and quarter, and the index of every report; never raises for a period
    without data (a note says so). ``portal_scores``: the portal's 766 export, compared in a section of each
    report."""
    wh = Path(warehouse)
    res = PeriodReports()
    gen = current_generation(wh)
    for p in latest_closed(as_of).values():
        out = wh / KPI_DIR / p.period
        first = not (out / "report.html").exists()
        made_from = {"generation": gen.name if gen else None, "agency": agency, "lang": lang, "pdf": pdf,
                     "workbooks": workbooks, "due_days": due_days, "portal_scores": _digest(portal_scores)}
        if (not first and gen is not None and _made_from(out) == made_from
                and (not pdf or (out / "report.pdf").exists())):
            res.unchanged.append(p.period)
            res.written[p.period] = _files_in(out)
            continue
        try:
            d = load(wh, p, agency, lang=lang)
        except ReportDataError as exc:
            res.notes.append(f"{p.label_vi}: {exc}")
            continue
        try:
            files = write_report(wh, p, out, agency, pdf=pdf, lang=lang, data=d, portal_scores=portal_scores,
                                 due_days=due_days)
        except ReconcileError as exc:  # a broken portal export costs its section, not the report
            res.notes.append(f"{p.label_vi}: không đối chiếu được với tệp điểm của Cổng ({exc}); báo cáo được lập "
                             f"không có phần đối chiếu.")
            files = write_report(wh, p, out, agency, pdf=pdf, lang=lang, data=d, due_days=due_days)
        got = {"html": files.html, "pdf": files.pdf}
        if files.note:
            res.notes.append(files.note)
        if workbooks:
            from transforms.reports.workbooks import write_workbooks

            got.update(write_workbooks(wh, p, agency, out, loaded=d))
        res.written[p.period] = got
        write_state(out / MADE_FROM, made_from)
        if first:
            res.newly_closed.append(p.period)
    res.index = write_index(wh, lang)
    return res


def _digest(path: Path | None) -> str | None:
    """The SHA-256 of the portal export (a new download remakes the reports); None without one."""
    if path is None or not Path(path).is_file():
        return None
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _made_from(out: Path) -> dict | None:
    try:
        return read_state(out / MADE_FROM)
    except ValueError:  # a damaged record: the reports are made again
        return None


def _files_in(out: Path) -> dict[str, Path]:
    names = {"html": "report.html", "pdf": "report.pdf", "form06": "form06.xlsx", "kpi": "kpi.xlsx"}
    return {k: out / n for k, n in names.items() if (out / n).exists()}


def _kpi_entries(wh: Path) -> list[dict]:
    root = wh / KPI_DIR
    out = []
    for d in sorted(root.iterdir() if root.is_dir() else [], key=lambda x: x.name, reverse=True):
        if not (d.is_dir() and _PERIOD_DIR.match(d.name) and (d / "report.html").exists()):
            continue
        p = parse(d.name)
        files = [(name, f"kpi/{d.name}/{name}") for name in ("report.html", "report.pdf", "form06.xlsx",
                                                              "kpi.xlsx") if (d / name).exists()]
        out.append({"period": p, "kind": p.period_type, "files": files,
                    "updated": datetime.fromtimestamp((d / "report.html").stat().st_mtime)})
    out.sort(key=lambda e: (e["period"].end, e["kind"] != "month"), reverse=True)
    return out


def _dq_entries(wh: Path) -> list[dict]:
    rep = wh / "_reports"
    pages = sorted(rep.glob("dq_*.html"), key=lambda f: f.stat().st_mtime, reverse=True)
    return [{"run": f.stem[3:], "href": f.name, "updated": datetime.fromtimestamp(f.stat().st_mtime)}
            for f in pages]


def write_index(warehouse: Path | str, lang: str = "vi") -> Path:
    """``<warehouse>/_reports/index.html``: every KPI report (newest period first) and data-quality report."""
    wh = Path(warehouse)
    docs = (wh / "_reports" / "data_docs" / "index.html").exists()
    page = render("index.html", lang, kpi=_kpi_entries(wh), dq=_dq_entries(wh), data_docs=docs,
                  now=datetime.now())
    return write_atomic(wh / INDEX, page)


def below_target(warehouse: Path | str, periods: list[str | Period], agency: str | None = None,
                 lang: str = "vi") -> list[dict]:
    """Each (agency, period, KPI) of ``periods`` whose value misses its target (``meets_target`` false in the
    published KPI mart): agency code and name, level, period and its label, KPI code and label, value and target
    as numbers and as text."""
    items = []
    for p in periods:
        try:
            d = load(warehouse, p, agency, lang=lang)
        except ReportDataError:
            continue
        miss = d.kpi[d.kpi.meets_target.fillna(True).eq(False)]
        names = dict(zip(d.agencies.agency_code, d.agencies.agency_name))
        levels = dict(zip(d.agencies.agency_code, d.agencies.level))
        for r in miss.to_dict("records"):
            items.append({"agency_code": r["agency_code"], "agency_name": names.get(r["agency_code"], ""),
                          "level": levels.get(r["agency_code"], ""), "period": d.period.period,
                          "period_label": d.period.label(lang), "kpi_code": r["kpi_code"], "kpi": r["label"],
                          "value": float(r["value"]), "target": float(r["target"]),
                          "value_text": texts.kpi_value(r["value"], r["unit"], lang),
                          "target_text": texts.kpi_value(r["target"], r["unit"], lang)})
    return items


def alert_periods(warehouse: Path | str, reports: PeriodReports) -> list[str]:
    """The periods whose KPI alert is due tonight: closed since the last night, or pending since a night whose
    message could not be delivered (``.kpi_alert_pending`` in the period's folder)."""
    pending = sorted(f.parent.name for f in (Path(warehouse) / KPI_DIR).glob(f"*/{ALERT_PENDING}"))
    return list(reports.newly_closed) + [p for p in pending if p not in reports.newly_closed]


def mark_alert(warehouse: Path | str, periods: list[str], delivered: bool) -> None:
    """Record whether the KPI alert of ``periods`` went out: pending (sent again the next night) or done."""
    for p in periods:
        marker = Path(warehouse) / KPI_DIR / p / ALERT_PENDING
        if delivered:
            marker.unlink(missing_ok=True)
        elif marker.parent.is_dir():
            marker.write_text("", encoding="utf-8")


def alert_text(items: list[dict], report_url: str | None = None, lang: str = "vi") -> str:
    """One message for the KPIs below target: per period and agency, the KPIs with value and target."""
    if not items:
        return ""
    lines = [texts.t("alert.kpi_title", lang, n=len({(i["agency_code"], i["period"]) for i in items}))]
    key = None
    for i in sorted(items, key=lambda i: (i["period"], i["agency_name"], i["kpi_code"])):
        if (i["period"], i["agency_code"]) != key:
            key = (i["period"], i["agency_code"])
            lines.append(f"- {i['period_label']}, {i['agency_name']} ({i['agency_code']}):")
        lines.append("    " + texts.t("alert.kpi_line", lang, kpi=i["kpi"], value=i["value_text"],
                                      target=i["target_text"]))
    if report_url:
        lines.append(texts.t("alert.kpi_report", lang, url=report_url))
    return "\n".join(lines)
