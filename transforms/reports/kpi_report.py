"""The KPI report of a period: one self-contained Vietnamese HTML page (``report.html``) and its PDF.

``write_report(warehouse, "2025-Q4", out_dir)`` reads the published marts (``data.load``), renders
``templates/kpi_report.html`` (Jinja2, autoescaped; texts from ``texts.yaml``; charts inline SVG from
``charts``) and prints it to ``report.pdf`` with headless Chromium when it is installed. The page asks for nothing
outside itself: styles inline, charts as SVG with their text as paths, no script, no link out.

Sections: data date and coverage; each plan KPI against its target (met / not met); the trend of the months before
(six KPIs); agencies ranked within their level; the Decision 766 scoreboard (``scoreboard``); form 06 with a total
row; the data-quality summary of the period per unit; how each number is computed (from the KPI registry).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from transforms.kpis import registry
from transforms.reports import charts, scoreboard, texts
from transforms.reports.data import TREND_KPIS, ReportData, load
from transforms.reports.dq_summary import dq_by_agency
from transforms.reports.kpi_words import in_words, score_words
from transforms.reports.templating import render, write_atomic

LEVEL_ORDER = {"province": 0, "department": 1, "district": 2, "commune": 3}
RANK_KPIS = ("on_time_rate", "online_rate", "digitization_rate", "e_result_rate", "satisfaction_rate")


@dataclass
class ReportFiles:
    html: Path
    pdf: Path | None
    note: str = ""        # one sentence when no PDF was made


def _v(x):
    """A pandas cell as a plain value (None for NA/NaN)."""
    return None if texts._missing(x) else (x.item() if hasattr(x, "item") else x)


def _kpi_rows(d: ReportData, code: str) -> list[dict]:
    rows = d.kpi[d.kpi.agency_code == code].sort_values("order")
    return [{"code": r["kpi_code"], "label": r["label"], "unit": r["unit"], "value": _v(r["value"]),
             "target": _v(r["target"]), "met": _v(r["meets_target"]), "numerator": _v(r["numerator"]),
             "denominator": _v(r["denominator"])} for r in rows.to_dict("records")]


def _trends(d: ReportData, code: str, lang: str) -> list[dict]:
    months = d.period.trend_months(12)
    t = d.trend[d.trend.agency_code == code]
    out = []
    for k in TREND_KPIS:
        kt = t[t.kpi_code == k].set_index("period")
        if kt.empty:
            continue
        ms = [m for m in months if m.period >= min(kt.index)]
        labels = [m.start.strftime("%m/%Y") for m in ms]
        vals = [_v(kt.value.get(m.period)) for m in ms]
        tgs = [_v(kt.target.get(m.period)) for m in ms]
        kpi = registry.KPI[k]
        label = kpi.vi if lang == "vi" else kpi.en
        out.append({"code": k, "label": label, "caption": texts.t("report.trend_caption", lang, kpi=label),
                    "svg": charts.trend_svg(f"{code}-{k}", label, labels, vals, tgs, unit=kpi.unit, lang=lang)})
    return out


def _form06(d: ReportData, code: str) -> dict:
    f = d.form06[(d.form06.agency_code == code) & (d.form06.period_basis == "calendar")]
    cols = [c.code for c in registry.FORM06]
    rows = [{"field": r["field_name"] or r["field_code"], "values": [int(r[c]) for c in cols]}
            for r in f.sort_values("field_name").to_dict("records")]
    total = [sum(r["values"][i] for r in rows) for i in range(len(cols))]
    return {"rows": rows, "total": total}


def _ranking(d: ReportData, boards: dict[str, scoreboard.Board], lang: str) -> list[dict]:
    """Per level: the agencies (roots excluded) ordered by on-time rate, with the main KPIs and the 766 rank."""
    units = d.agencies[~d.agencies.agency_code.isin(d.roots)]
    out = []
    for level, grp in sorted(units.groupby("level"), key=lambda x: LEVEL_ORDER.get(x[0], 9)):
        rows = []
        for code, name in zip(grp.agency_code, grp.agency_name):
            k = {r["code"]: r for r in _kpi_rows(d, code)}
            b = boards.get(code)
            rows.append({"code": code, "name": name, "kpis": [k.get(c) for c in RANK_KPIS],
                         "share": b.share if b else None, "rank766": b.rank if b else None,
                         "rank766_of": b.rank_of if b else None, "key": (k.get("on_time_rate") or {}).get("value")})
        rows.sort(key=lambda r: (r["key"] is None, -(r["key"] or 0), r["name"]))
        prev, rank = None, 0
        for i, r in enumerate(rows):
            if r["key"] is not None and r["key"] != prev:
                rank = i + 1
            r["rank"] = rank if r["key"] is not None else None
            prev = r["key"]
        target = next((x["target"] for r in rows for x in r["kpis"][:1] if x and x["target"] is not None), None)
        svg = charts.bars_svg(f"rank-{level}", f"{registry.KPI['on_time_rate'].vi if lang == 'vi' else 'On time'}"
                              f" — {texts.level_name(level, lang)}", [r["name"] for r in rows],
                              [r["key"] for r in rows], target, lang=lang) if len(rows) > 1 else None
        out.append({"level": level, "rows": rows, "svg": svg})
    return out


def _s766_columns(lang: str) -> list[dict]:
    """The scoreboard's header: the five groups, each with its indicator columns (group 3 in the portal's parts)."""
    cols = []
    for g, (vi, en, maximum) in registry.GROUPS.items():
        parts = registry.GROUP_PARTS.get(g)
        inds = []
        for i in registry.INDICATORS:
            if i.group != g:
                continue
            part = next(((pvi if lang == "vi" else pen, pmax) for pvi, pen, pmax, codes in parts or ()
                         if i.code in codes), None)
            inds.append({"code": i.code, "label": i.vi if lang == "vi" else i.en, "max": i.max_score,
                         "part": part})
        cols.append({"code": g, "label": vi if lang == "vi" else en, "max": maximum, "indicators": inds})
    return cols


def due_section(d: ReportData, days: int = 5):
    """The open dossiers due soon or overdue per agency when the period holds the data date (the period can still
    change), else None (``due.due_lists``)."""
    if d.as_of is None or d.is_closed or d.as_of < d.period.start:
        return None
    from transforms.reports.due import due_lists

    return due_lists(d.warehouse, agency=d.agency, days=days, as_of=d.as_of, period_type=d.period.period_type)


def portal_section(d: ReportData, portal_scores: Path):
    """The portal's 766 scores of the period against the mart (``reconcile.reconcile``) for the report's agencies."""
    from transforms.reports.reconcile import reconcile

    return reconcile(d.warehouse, Path(portal_scores), period=d.period.period, agencies=set(d.agencies.agency_code))


def context(d: ReportData, lang: str = "vi", now: datetime | None = None, *, due_days: int = 5,
            portal_scores: Path | None = None) -> dict:
    boards = scoreboard.build(d.s766, lang)
    by_code = {b.agency_code: b for b in boards}
    boards.sort(key=lambda b: (LEVEL_ORDER.get(b.level, 9), b.rank or 10**6, b.agency_name))
    roots = []
    for code in d.roots:
        kpis = _kpi_rows(d, code)
        judged = [k for k in kpis if k["met"] is not None]
        roots.append({"code": code, "name": d.name(code), "kpis": kpis, "met": sum(1 for k in judged if k["met"]),
                      "judged": len(judged), "trends": _trends(d, code, lang), "form06": _form06(d, code),
                      "board": by_code.get(code)})
    levels = d.agencies.level.value_counts()
    pop = d.kpi[(d.kpi.kpi_code == "on_time_rate") & d.kpi.agency_code.isin(d.roots)].denominator.sum()
    why = {i.code: (registry.NO_SCORE_WHY[i.code][0 if lang == "vi" else 1]) for i in registry.INDICATORS
           if i.code in registry.NO_SCORE_WHY}
    ctx = {
        "period": d.period, "period_label": d.period.label(lang), "as_of": d.as_of, "closed": d.is_closed,
        "now": now or datetime.now(), "roots": roots,
        "agency_label": ", ".join(r["name"] for r in roots),
        "n_agencies": len(d.agencies), "dossiers": int(pop) if pop == pop else 0,
        "levels": ", ".join(f"{texts.level_name(lv, lang).lower()} {n}"
                            for lv, n in sorted(levels.items(), key=lambda x: LEVEL_ORDER.get(x[0], 9))),
        "ranking": _ranking(d, by_code, lang),
        "ranking_kpis": [registry.KPI[k].vi if lang == "vi" else registry.KPI[k].en for k in RANK_KPIS],
        "boards": boards, "s766_columns": _s766_columns(lang),
        "no_score_why": why, "form06_columns": [(i + 3, c) for i, c in enumerate(registry.FORM06)],
        "dq": dq_by_agency(d), "method": method(lang),
        "due": due_section(d, due_days), "due_days": due_days,
        "portal": portal_section(d, portal_scores) if portal_scores else None,
        "portal_file": Path(portal_scores).name if portal_scores else "",
    }
    sections = ["kpi", "trend", "ranking", "766", "form06", "dq", "due"] + (["portal"] if portal_scores else []) \
        + ["method"]
    from transforms.reports.due import days_text

    ctx.update(sections=sections, num_of=lambda k: sections.index(k) + 1, days_text=days_text)
    return ctx


def method(lang: str = "vi") -> dict:
    """How each number is computed, from the registry (numerator, denominator, target, rules)."""
    kpis = [{"code": k.code, "label": k.vi if lang == "vi" else k.en, "numerator": in_words(k.numerator, lang),
             "denominator": in_words(k.denominator, lang) if k.denominator else texts.t("report.method_count", lang),
             "target": texts.t("report.method_target_file" if k.target == "file" else "report.method_target_prev",
                               lang), "rules": ", ".join(k.rules)} for k in registry.KPIS]
    inds = [{"code": i.code, "label": i.vi if lang == "vi" else i.en,
             "score": score_words(i.code, lang),
             "max": i.max_score, "same_as": i.same_as} for i in registry.INDICATORS]
    return {"kpis": kpis, "indicators": inds}


def render_report(d: ReportData, lang: str = "vi", now: datetime | None = None, **extra) -> str:
    """The page; ``extra``: ``due_days``, ``portal_scores`` (a portal export: the reconciliation section)."""
    return render("kpi_report.html", lang, **context(d, lang, now, **extra))


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def chromium_flags(profile: Path) -> list[str]:
    """Headless, offline-minded flags (no first-run, no background networking, no sandbox: runs as root too)."""
    return ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-extensions", f"--user-data-dir={profile}"]


def print_pdf(page: Path, pdf: Path, *, timeout: int = 120) -> tuple[Path | None, str]:
    """``page`` printed to ``pdf`` by headless Chromium; (None, sentence) when it is not installed or fails."""
    exe = find_chromium()
    if exe is None:
        return None, texts.t("report.pdf_missing")
    profile = pdf.parent / ".chromium-profile"
    tmp = pdf.with_name(f".{pdf.name}.tmp")
    try:
        subprocess.run([exe, *chromium_flags(profile), "--no-pdf-header-footer", f"--print-to-pdf={tmp}",
                        page.resolve().as_uri()], capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"Chromium không in được bản PDF ({e.__class__.__name__})."
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    if not tmp.exists() or tmp.stat().st_size == 0:
        return None, "Chromium không in được bản PDF (không có tệp kết quả)."
    tmp.replace(pdf)
    return pdf, ""


def write_report(warehouse: Path | str, period, out_dir: Path | str, agency: str | None = None, *,
                 pdf: bool = True, lang: str = "vi", data: ReportData | None = None,
                 portal_scores: Path | None = None, due_days: int = 5) -> ReportFiles:
    """``out_dir/report.html`` (and ``report.pdf`` where Chromium is installed) for ``period``."""
    d = data or load(warehouse, period, agency, lang=lang)
    out = Path(out_dir)
    page = write_atomic(out / "report.html", render_report(d, lang, portal_scores=portal_scores, due_days=due_days))
    if not pdf:
        return ReportFiles(page, None)
    made, note = print_pdf(page, out / "report.pdf")
    return ReportFiles(page, made, note)

