"""The KPI workbook (kpi.xlsx): one sheet per period type (Tháng, Quý, Năm) with every plan KPI of every agency in
scope against its target, and one sheet for the Decision 766 scoreboard laid out as the portal's (indicators under
their group, group points, points reached out of points computable, rank among agencies of the same level).

Labels come from the KPI registry and the text catalogue (``transforms.reports.texts``); rates are written as
ratios in a percent format, counts as whole numbers; met / not met is coloured by conditional formatting; header
rows frozen, a filter on the header, widths that fit, printed landscape A4 fit to width.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from transforms.reports import texts
from transforms.reports.xlsx_common import atomic_workbook, data_sheet, formats

KPI_HEADERS = ("Mã đơn vị", "Tên đơn vị", "Cấp", "Kỳ", "Từ ngày", "Đến ngày", "Chỉ tiêu", "Tử số", "Mẫu số",
               "Kết quả", "Chỉ tiêu kế hoạch", "Đánh giá")
KPI_KINDS = ("text", "text", "text", "center", "date", "date", "text", "int", "int", "auto", "auto", "center")
S766_HEADERS = ("Mã đơn vị", "Tên đơn vị", "Cấp", "Kỳ", "Nhóm chỉ số", "Chỉ số", "Tên chỉ số", "Tử số", "Mẫu số",
                "Tỷ lệ", "Điểm", "Điểm tối đa", "Điểm đạt được", "Điểm có thể tính", "Xếp hạng", "Ghi chú")
S766_KINDS = ("text", "text", "text", "center", "text", "center", "text", "int", "int", "pct", "score", "score",
              "score", "score", "center", "text")
SHEETS = {"month": "Tháng", "quarter": "Quý", "year": "Năm"}
SHEET_766 = "Bộ chỉ số 766"


def _v(x):
    """None for pandas' missing values, else the plain Python value."""
    if x is None or (not isinstance(x, str) and pd.isna(x)):
        return None
    return x.item() if hasattr(x, "item") else x


def assessment(meets, value, target) -> str:
    if _v(value) is None:
        return texts.t("common.no_data")
    if _v(target) is None or _v(meets) is None:
        return texts.t("common.no_target")
    return texts.t("common.met") if bool(meets) else texts.t("common.not_met")


def kpi_rows(kpi: pd.DataFrame, labels: dict[str, str]) -> list[tuple]:
    """Sheet rows of KPI mart rows (with ``label`` and ``unit`` from ``data.kpi_meta``, names merged)."""
    from transforms.reports.periods import parse

    out = []
    for r in kpi.to_dict("records"):
        unit = "pct" if r.get("unit") == "rate" else "int"
        out.append((r["agency_code"], labels.get(r["agency_code"], r.get("agency_name") or r["agency_code"]),
                    texts.level_name(_v(r.get("agency_level"))), parse(r["period"]).label_vi,
                    _v(r.get("period_start")), _v(r.get("period_end")), r.get("label") or r["kpi_code"],
                    _v(r.get("numerator")), _v(r.get("denominator")), (_v(r.get("value")), unit),
                    (_v(r.get("target")), unit), assessment(r.get("meets_target"), r.get("value"), r.get("target"))))
    return out


def s766_rows(frame: pd.DataFrame) -> list[tuple]:
    """Sheet rows of ``scoreboard.frame``: indicators, then their group's sum, then the agency's total."""
    from transforms.reports.periods import parse

    out = []
    for r in frame.to_dict("records"):
        kind = r["row_kind"]
        head = (r["agency_code"], r["agency_name"], texts.level_name(_v(r.get("level"))),
                parse(r["period"]).label_vi)
        if kind == "indicator":
            why = _v(r.get("why")) or ""
            out.append(head + (f"{r['group_code']}. {r['group']}", r["indicator_code"], r["indicator"],
                               _v(r["numerator"]), _v(r["denominator"]), _v(r["ratio"]), _v(r["score"]),
                               _v(r["max_score"]), None, None, None,
                               texts.t("s766.no_score", why=why) if why else ""))
        elif kind == "group":
            out.append(head + (f"{r['group_code']}. {r['group']}", "", f"Cộng nhóm {r['group_code']}", None, None,
                               None, None, _v(r["group_max"]), _v(r["points"]), _v(r["reachable"]), None,
                               "" if _v(r["reachable"]) else texts.t("s766.not_computed")))
        else:
            rank = f"{int(r['rank'])}/{int(r['rank_of'])}" if _v(r.get("rank")) is not None else ""
            out.append(head + ("", "", texts.t("s766.points"), None, None, _v(r.get("share")), None, None,
                               _v(r["points"]), _v(r["reachable"]), rank, texts.t("s766.points_note")))
    return out


def write_kpi_workbook(path: Path, kpi_by_type: dict[str, pd.DataFrame], s766: pd.DataFrame,
                       labels: dict[str, str], title: str) -> None:
    """``kpi_by_type``: period type -> KPI rows (any order); ``s766``: ``scoreboard.frame`` rows; ``labels``:
    agency code -> name. Written whole or not at all."""
    with atomic_workbook(path) as wb:
        fm = formats(wb)
        for ptype, sheet in SHEETS.items():
            df = kpi_by_type.get(ptype, pd.DataFrame())
            rows = kpi_rows(df, labels) if not df.empty else []
            ws, first, n = data_sheet(wb, fm, sheet, KPI_HEADERS, KPI_KINDS, rows,
                                      title=f"{title} — chỉ tiêu theo {sheet.lower()}")
            _met_colours(ws, fm, first, n)
        rows = s766_rows(s766) if not s766.empty else []
        data_sheet(wb, fm, SHEET_766, S766_HEADERS, S766_KINDS, rows,
                   title=f"{title} — Bộ chỉ số Quyết định 766/QĐ-TTg")


def _met_colours(ws, fm: dict, first: int, n: int) -> None:
    """Đạt green, Không đạt red: on the assessment cell and, by formula, on the value cell of the row."""
    if not n:
        return
    last = first + n - 1
    col_val, col_eval = KPI_HEADERS.index("Kết quả"), KPI_HEADERS.index("Đánh giá")
    ev = _col(col_eval)
    for word, f in ((texts.t("common.met"), fm["good"]), (texts.t("common.not_met"), fm["bad"])):
        ws.conditional_format(first, col_eval, last, col_eval,
                              {"type": "cell", "criteria": "==", "value": f'"{word}"', "format": f})
        ws.conditional_format(first, col_val, last, col_val,
                              {"type": "formula", "criteria": f'=${ev}{first + 1}="{word}"', "format": f})


def _col(j: int) -> str:
    return chr(ord("A") + j)


def sort_kpi(df: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """Rows in the scope's agency order, then period, then the registry's KPI order."""
    pos = {c: i for i, c in enumerate(order)}
    return df.assign(_a=df.agency_code.map(pos).fillna(len(pos))).sort_values(
        ["_a", "period", "order"]).drop(columns="_a")
