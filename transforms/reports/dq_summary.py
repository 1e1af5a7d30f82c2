"""The data-quality summary of a period per unit, from ``mart_dq__agency_source_period`` (rows received and
quarantined per agency, source, entity and month of the record's update; the share of rows breaking each rule;
completeness of the flags the KPIs need) and the batches held out of core (``_held/``), as ``data.load`` reads
them. One row per agency with its name (rows the exports gave no agency for, or the whole-table checks, under
their own label)."""

from __future__ import annotations

from transforms.reports import texts
from transforms.reports.data import ReportData

WHOLE_TABLE, UNKNOWN = "(toàn bảng)", "(không rõ)"  # mart_dq's agency labels for rows without an agency
FLAGS = ("digitization_completeness", "e_result_completeness", "channel_completeness")


def _label(code: str, d: ReportData, names: dict[str, str], lang: str) -> str:
    if code == WHOLE_TABLE:
        return "Toàn bảng (không theo đơn vị)" if lang == "vi" else "Whole table (no agency)"
    if code in (UNKNOWN, texts.t("common.unknown_agency", lang)):
        return texts.t("common.unknown_agency", lang)
    return names.get(code) or (f"{code} (không có trong danh mục đơn vị)" if lang == "vi"
                               else f"{code} (not in the agency list)")


def dq_by_agency(d: ReportData, lang: str = "vi", top_rules: int = 3) -> dict:
    """``{"rows": [...], "total": {...}, "held": n}``: per agency the rows received and quarantined in the
    period's months, the share quarantined, the rules broken most (in words, with their share), the completeness
    of the digitisation / e-result / channel flags, and the rows of held batches."""
    every = d.agencies if d.all_agencies is None else d.all_agencies
    names = dict(zip(every.agency_code, every.agency_name))
    scope = set(d.agencies.agency_code)
    dq = d.dq
    if d.agency and not dq.empty:  # an agency chosen: its units only; by default every row (unknown ones too)
        dq = dq[dq.agency_code.isin(scope)]
    rows = []
    held = d.held.groupby("agency_code").rows.sum().to_dict() if not d.held.empty else {}
    for code, g in (dq.groupby("agency_code") if not dq.empty else []):
        recv, quar = int(g.rows_received.sum()), int(g.rows_quarantined.sum())
        broken: dict[str, float] = {}
        for shares, n in zip(g.rule_shares, g.rows_received):
            for rule, share in (dict(shares) if shares is not None else {}).items():
                broken[rule] = broken.get(rule, 0) + share * n
        top = sorted(broken.items(), key=lambda x: -x[1])[:top_rules]
        comp = []
        for f in FLAGS:
            v = g[[f, "rows_staged"]].dropna()
            comp.append((v[f] * v.rows_staged).sum() / v.rows_staged.sum() if v.rows_staged.sum() else None)
        rows.append({"code": code, "name": _label(code, d, names, lang), "received": recv, "quarantined": quar,
                     "rate": quar / recv if recv else None, "held": int(held.pop(code, 0)),
                     "rules": [(texts.rule_name(r, lang), r, n / recv if recv else None) for r, n in top],
                     "completeness": comp})
    for code, n in held.items():
        if d.agency and code not in scope:
            continue
        rows.append({"code": code, "name": _label(code, d, names, lang), "received": 0, "quarantined": 0,
                     "rate": None, "held": int(n), "rules": [], "completeness": [None] * len(FLAGS)})
    rows.sort(key=lambda r: (r["code"].startswith("("), -(r["quarantined"] + r["held"]), r["name"]))
    recv = sum(r["received"] for r in rows)
    quar = sum(r["quarantined"] for r in rows)
    total = {"received": recv, "quarantined": quar, "rate": quar / recv if recv else None,
             "held": sum(r["held"] for r in rows)}
    return {"rows": rows, "total": total, "held_batches": int(len(d.held))}
