"""What every workbook of the reports shares: written aside and renamed, text never run as a formula, one set of
cell formats, data sheets with a frozen header, a filter and widths that fit, Vietnamese column headers.

The writer is xlsxwriter: it writes merged cells, cell formats, number formats, conditional formatting, print
settings (paper, orientation, rows repeated on every page, fit to width) and formulas with their cached values,
which is what a form laid out as the circular's needs; it writes only, so tests read the files back with openpyxl.
The plain data export of ``tthc query/explain --out x.xlsx`` is ``warehouse.exports.write_xlsx`` (lower layer);
this module reuses its text neutralisation and width rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path

from transforms.reports.texts import XLSX_FORMATS
from warehouse.exports import XLSX_OPTIONS, column_width, neutral_text

PCT, INT = XLSX_FORMATS["percent"], XLSX_FORMATS["integer"]
SCORE, DATE = XLSX_FORMATS["score"], XLSX_FORMATS["date"]


@contextmanager
def atomic_workbook(path: Path):
    """An xlsxwriter workbook written to ``.<name>.tmp`` beside ``path`` and renamed over it when the block ends
    without an error (a reader never sees half a workbook)."""
    import xlsxwriter

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    wb = xlsxwriter.Workbook(str(tmp), XLSX_OPTIONS)
    try:
        yield wb
        wb.close()
        tmp.replace(path)
    except BaseException:
        try:
            wb.close()
        except Exception:  # noqa: BLE001 - the first error is the one to report
            pass
        tmp.unlink(missing_ok=True)
        raise


def formats(wb) -> dict:
    """The named cell formats of a workbook (made once per workbook)."""
    base = {"font_name": "Times New Roman", "font_size": 11}
    box = {**base, "border": 1, "valign": "vcenter"}

    def f(**kw):
        return wb.add_format({**base, **kw})

    return {
        "text": f(), "bold": f(bold=True), "italic": f(italic=True),
        "center_bold": f(bold=True, align="center"), "center": f(align="center"),
        "center_italic": f(italic=True, align="center"),
        "motto": f(bold=True, underline=True, align="center"),
        "title": f(bold=True, font_size=13, align="center", valign="vcenter", text_wrap=True),
        "right_italic": f(italic=True, align="right"),
        "head": wb.add_format({**box, "bold": True, "align": "center", "text_wrap": True, "bg_color": "#DDEBF7"}),
        "colno": wb.add_format({**box, "italic": True, "align": "center"}),
        "cell": wb.add_format({**box, "text_wrap": True}),
        "cell_center": wb.add_format({**box, "align": "center"}),
        "int": wb.add_format({**box, "num_format": INT}),
        "pct": wb.add_format({**box, "num_format": PCT}),
        "score": wb.add_format({**box, "num_format": SCORE}),
        "date": wb.add_format({**box, "num_format": DATE, "align": "center"}),
        "total_label": wb.add_format({**box, "bold": True, "align": "center"}),
        "total_int": wb.add_format({**box, "bold": True, "num_format": INT}),
        "good": wb.add_format({"bg_color": "#C6EFCE", "font_color": "#006100"}),
        "bad": wb.add_format({"bg_color": "#FFC7CE", "font_color": "#9C0006"}),
    }


def cell_text(v) -> str:
    """Text as it goes into a cell: formula-like values neutralised (the rule of warehouse/exports.py)."""
    return neutral_text(str(v))


def sheet_name(text: str, taken: set[str]) -> str:
    """A valid, unique sheet name (31 characters, none of ``[]:*?/\\``) from ``text``."""
    clean = "".join("-" if ch in "[]:*?/\\" else ch for ch in text).strip("'")[:31] or "Sheet"
    name, n = clean, 2
    while name.casefold() in {t.casefold() for t in taken}:
        suffix = f" ({n})"
        name, n = clean[:31 - len(suffix)] + suffix, n + 1
    taken.add(name)
    return name


def data_sheet(wb, fmts: dict, name: str, headers: Sequence[str], kinds: Sequence[str],
               rows: Iterable[Sequence], *, title: str | None = None, landscape: bool = True):
    """A sheet of rows under one header row: ``kinds`` per column (text, int, pct, score, date, center); the
    header (and the title above it) frozen, a filter on the header, widths that fit, printed landscape A4 fit to
    width with the header on every page. Returns (worksheet, first data row index, number of rows)."""
    ws = wb.add_worksheet(name)
    top = 0
    if title:
        ws.merge_range(0, 0, 0, max(len(headers) - 1, 0), title, fmts["title"])
        ws.set_row(0, 30)
        top = 2
    rows = list(rows)
    for j, h in enumerate(headers):
        ws.write_string(top, j, h, fmts["head"])
        shown = (_shown(r[j], kinds[j]) for r in rows[:500])
        ws.set_column(j, j, column_width(h, shown, hi=50 if kinds[j] == "text" else 24))
    ws.set_row(top, 45)
    for i, r in enumerate(rows, start=top + 1):
        for j, v in enumerate(r):
            write_value(ws, i, j, v, kinds[j], fmts)
    ws.freeze_panes(top + 1, 0)
    ws.autofilter(top, 0, top + max(len(rows), 1), len(headers) - 1)
    print_setup(ws, repeat=(top, top), landscape=landscape)
    return ws, top + 1, len(rows)


def _shown(v, kind: str) -> str:
    """How wide a value looks in its cell."""
    if kind == "auto":
        v, kind = v
    if v is None:
        return ""
    return {"date": "00/00/0000", "pct": "100,0%", "score": "00,00"}.get(kind) or (
        f"{v:,.0f}" if isinstance(v, (int, float)) else str(v))


def write_value(ws, r: int, c: int, v, kind: str, fmts: dict) -> None:
    """One cell: numbers as numbers in their format, dates as dates, text neutralised; None leaves a bordered
    empty cell."""
    if kind == "auto":  # the value carries its kind: (value, kind)
        v, kind = v
    fmt = fmts["cell_center" if kind == "center" else kind if kind in fmts else "cell"]
    if v is None:
        ws.write_blank(r, c, None, fmt)
    elif kind in ("int", "pct", "score") and isinstance(v, (int, float)):
        ws.write_number(r, c, v, fmt)
    elif kind == "date":
        ws.write_datetime(r, c, v, fmt)
    else:
        ws.write_string(r, c, cell_text(v), fmt)


def print_setup(ws, *, repeat: tuple[int, int] | None, landscape: bool = True) -> None:
    """A4, landscape (or portrait), fit to the page width, ``repeat`` rows on every page, page x/y in the footer."""
    ws.set_paper(9)  # A4
    if landscape:
        ws.set_landscape()
    else:
        ws.set_portrait()
    ws.fit_to_pages(1, 0)
    ws.set_margins(left=0.5, right=0.4, top=0.6, bottom=0.6)
    ws.center_horizontally()
    if repeat:
        ws.repeat_rows(*repeat)
    ws.set_footer("&CTrang &P/&N")


# ---------------------------------------------------------------------------------------------------------------
# Vietnamese column headers for analysts' exports (tthc query / explain --vi-headers)
# ---------------------------------------------------------------------------------------------------------------
# explain's columns that no table contract describes (the others take the contracts' ``vi`` labels)
EXPLAIN_HEADERS = {
    "counted_for": "Tính cho đơn vị", "owner_on_received": "Đơn vị sở hữu khi tiếp nhận",
    "channel": "Kênh thực hiện", "evaluation_date": "Ngày đánh giá (E)", "received_in_period": "Tiếp nhận trong kỳ",
    "resolved_in_period": "Giải quyết trong kỳ", "class": "Phân loại (trước hạn, đúng hạn, quá hạn...)",
    "supplement_requests_by_e": "Số lần yêu cầu bổ sung đến ngày E", "paused_since": "Tạm dừng từ ngày",
    "in_numerator": "Thuộc tử số", "answered_date": "Ngày trả lời", "deadline_date": "Hạn xử lý PAKN",
    "likes": "Lượt hài lòng", "dislikes": "Lượt không hài lòng", "is_re_complaint": "Phản ánh lại",
    "feedback_id": "Mã PAKN", "due_date": "Hạn xử lý", "end_date": "Ngày kết thúc",
    "received_date": "Ngày tiếp nhận", "status": "Trạng thái hồ sơ",
}


def vi_headers(columns: Iterable[str]) -> dict[str, str]:
    """column -> Vietnamese header for the columns a contract (marts first, then core, then staging) or explain
    names; a column named by none keeps its name. Two columns never get the same header."""
    from transforms.contracts import all_contracts

    known: dict[str, str] = dict(EXPLAIN_HEADERS)
    order = {"mart": 0, "core": 1, "stg": 2}
    for c in sorted(all_contracts(), key=lambda c: order.get(c.table.split("_")[0], 3)):
        for col in c.columns:
            if col.vi and col.name not in known:
                known[col.name] = col.vi
    out, used = {}, set()
    for col in columns:
        label = known.get(col, col)
        if label in used:
            label = f"{label} ({col})"
        used.add(label)
        out[col] = label
    return out
