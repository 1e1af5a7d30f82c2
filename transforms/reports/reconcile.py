"""Reconcile the national portal's Decision 766 scores with ``mart_766__agency_period``.

Offices download each agency's scores from the portal as a spreadsheet (CSV or XLSX). ``read_portal_scores`` reads
one: the header row is found among the first rows by its headers (aliases in ``portal_scores.yaml``, matched as the
inbox mappings match theirs), agencies by code or name (``core_agencies``), periods written as the marts write them
(2025-11, 2025-Q4, 2025) or as people do (Tháng 11/2025, 11/2025, Quý IV/2025, Quý 4 năm 2025, Q4/2025, Năm
2025), indicators by number (2.1, "Chỉ số 2.1") or by their Vietnamese name, scores with a decimal comma or point.
``reconcile`` matches every row to the mart and lists each difference above the tolerance with the counts behind
the project's score and the ``tthc explain`` command that lists the dossiers. What cannot be matched (an unknown
agency, indicator or period, an unreadable cell) is a sentence naming the file and row; an indicator the pipeline
does not compute (1.x, 3.1...) or does not score (3.3, 3.6: ratio only) is a note, not a difference.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

from transforms.contracts import norm_label
from transforms.kpis.registry import INDICATOR, INDICATORS

ALIASES = Path(__file__).with_name("portal_scores.yaml")
HEADER_SCAN_ROWS = 15
RESULT_COLUMNS = ("agency_code", "agency_name", "period", "indicator_code", "indicator_name", "portal_score",
                  "project_score", "difference", "portal_max", "project_max", "numerator", "denominator", "ratio",
                  "source_row", "explain")
RESULT_HEADERS_VI = {
    "agency_code": "Mã đơn vị", "agency_name": "Tên đơn vị", "period": "Kỳ", "indicator_code": "Chỉ số",
    "indicator_name": "Tên chỉ số", "portal_score": "Điểm trên Cổng", "project_score": "Điểm hệ thống tính",
    "difference": "Chênh lệch (Cổng - hệ thống)", "portal_max": "Điểm tối đa (Cổng)",
    "project_max": "Điểm tối đa (hệ thống)", "numerator": "Tử số", "denominator": "Mẫu số", "ratio": "Tỷ lệ",
    "source_row": "Dòng trong tệp", "explain": "Lệnh xem danh sách hồ sơ",
}


class ReconcileError(ValueError):
    """The portal file cannot be used at all; the message is one sentence naming the file."""


@dataclass
class PortalRow:
    line: int                   # the row a person sees in the sheet / the line of the CSV
    agency: str | None
    agency_name: str | None
    period: str | None
    indicator: str | None
    score: float | None
    max_score: float | None


@dataclass
class Reconciliation:
    differences: list[dict] = field(default_factory=list)   # RESULT_COLUMNS
    problems: list[str] = field(default_factory=list)       # rows that could not be matched, one sentence each
    notes: list[str] = field(default_factory=list)          # rows not compared, and why
    compared: int = 0                                       # rows compared with the mart
    tolerance: float = 0.01


# ----------------------------------------------------------------------------------------------------- reading
@cache
def _lookup() -> dict[str, str]:
    spec = yaml.safe_load(ALIASES.read_text(encoding="utf-8"))
    out: dict[str, str] = {}
    for canon, heads in spec.items():
        for h in [canon, *heads]:
            out.setdefault(norm_label(h).rstrip("(*) ").strip(), canon)
    return out


def _table_rows(path: Path) -> list[tuple[int, list]]:
    """(row number a person sees, cells) of the file's first sheet / the CSV's records."""
    label = path.name
    if not path.is_file():
        raise ReconcileError(f"The portal score file {path} does not exist or is not a file.")
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        from python_calamine import CalamineWorkbook

        try:
            wb = CalamineWorkbook.from_path(str(path))
            sheet = wb.get_sheet_by_index(0)
            rows = sheet.to_python(skip_empty_area=False)
        except Exception as e:  # noqa: BLE001 - any parse failure means the workbook is unreadable
            raise ReconcileError(f"The portal score file {label} is not a readable XLSX workbook ({e}).") from None
        return [(i + 1, list(r)) for i, r in enumerate(rows)]
    if suffix != ".csv":
        raise ReconcileError(f"The portal score file {label} must be .csv or .xlsx (the portal's export), "
                             f"not {suffix or 'a file without extension'}.")
    from transforms.readers._text import DecodeProblem, decode_sample

    try:
        _, text = decode_sample(path.read_bytes(), complete=True)
    except DecodeProblem as e:
        raise ReconcileError(f"The portal score file {label} cannot be read as text: {e}.") from None
    first = text.split("\n", 1)[0]
    delim = max((";", ",", "\t"), key=first.count)
    return [(i + 1, r) for i, r in enumerate(csv.reader(io.StringIO(text), delimiter=delim))]


def read_portal_scores(path: Path) -> list[PortalRow]:
    """The rows of a portal score export (see the module's text). Raises ReconcileError when the file cannot be
    read or has no header row naming the needed columns."""
    path = Path(path)
    rows = _table_rows(path)
    look = _lookup()
    best = None
    for idx, (_, cells) in enumerate(rows[:HEADER_SCAN_ROWS]):
        cols = {}
        for j, c in enumerate(cells):
            key = norm_label(c).rstrip("(*) ").strip() if c not in (None, "") else ""
            if key in look and look[key] not in cols:
                cols[look[key]] = j
        if best is None or len(cols) > len(best[1]):
            best = (idx, cols)
    cols = best[1] if best else {}
    need = [c for c in ("period", "indicator", "score") if c not in cols]
    if need or not ({"agency_code", "agency_name"} & set(cols)):
        missing = need + ([] if {"agency_code", "agency_name"} & set(cols) else ["agency_code or agency_name"])
        raise ReconcileError(f"The portal score file {path.name} has no header row with the columns "
                             f"{', '.join(missing)} (e.g. Mã đơn vị / Tên đơn vị, Kỳ, Chỉ số, Điểm, Điểm tối đa; "
                             f"other spellings go in {ALIASES.name}).")
    out = []
    for line, cells in rows[best[0] + 1:]:
        def get(name, cells=cells):
            j = cols.get(name)
            v = cells[j] if j is not None and j < len(cells) else None
            return None if v is None or (isinstance(v, str) and not v.strip()) else v
        if all(get(c) is None for c in cols):
            continue
        out.append(PortalRow(line, _text(get("agency_code")), _text(get("agency_name")), _text(get("period")),
                             _text(get("indicator")), get("score"), get("max_score")))
    return out


def _text(v) -> str | None:
    if v is None:
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return " ".join(str(v).split())


_ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4}


def period_label(text: str) -> str | None:
    """The marts' label of a period as people write it (None when it is none)."""
    s = norm_label(text)
    if m := re.fullmatch(r"(\d{4})(?:-(0[1-9]|1[0-2])|-q([1-4]))?", s):
        return text.strip().upper() if m.group(3) else s
    if m := re.fullmatch(r"(?:tháng\s*)?(\d{1,2})\s*[/.-]\s*(\d{4})", s) or \
            re.fullmatch(r"tháng\s*(\d{1,2})\s*(?:năm|/)\s*(\d{4})", s):
        mo, y = int(m.group(1)), m.group(2)
        return f"{y}-{mo:02d}" if 1 <= mo <= 12 else None
    if m := re.fullmatch(r"(?:quý|q)\s*(iv|iii|ii|i|[1-4])\s*(?:[/.-]|năm)?\s*(\d{4})", s):
        q = _ROMAN.get(m.group(1)) or int(m.group(1))
        return f"{m.group(2)}-Q{q}"
    if m := re.fullmatch(r"năm\s*(\d{4})", s):
        return m.group(1)
    return None


def indicator_code(text: str) -> str | None:
    """``2.1``, ``Chỉ số 2.1``, ``2.1. Giải quyết đúng hạn`` or an indicator's Vietnamese name -> ``2.1``."""
    s = norm_label(text)
    if m := re.match(r"(?:chỉ số\s*)?(\d)\s*[.,]\s*(\d{1,2})\b", s):
        return f"{m.group(1)}.{int(m.group(2))}"
    by_name = {norm_label(i.vi): i.code for i in INDICATORS}
    return by_name.get(s)


# group rows and totals of a portal export: named, not compared (the pipeline does not sum to 100)
GROUP_WORDS = {norm_label(w) for w in ("CKMB", "TDGQ", "TTTT", "MDSH", "MDHL", "DVCTT", "Tổng", "Tổng điểm",
                                       "Tổng cộng", "Tổng số", "Điểm tổng")}


def is_group_row(text: str) -> bool:
    """A group (by name, number 1..5 or the portal's code) or total row rather than an indicator."""
    from transforms.kpis.registry import GROUPS

    s = norm_label(text)
    names = {norm_label(vi) for vi, _, _ in GROUPS.values()}
    return s in GROUP_WORDS or s in names or s in GROUPS or bool(re.fullmatch(r"(nhóm\s*)?[1-5]\.?", s))


def score_value(v) -> float | None:
    """A score cell: a number, or text with a decimal comma or point ("18,62", "18.62"); None when it is none."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    s = str(v).strip().replace("\u00a0", "").replace(" ", "")
    if re.fullmatch(r"-?\d+([.,]\d+)?", s):
        return float(s.replace(",", "."))
    return None


# ------------------------------------------------------------------------------------------------- reconciling
def reconcile(warehouse: Path, portal_file: Path, *, tolerance: float = 0.01, period: str | None = None,
              agencies: set[str] | None = None, warehouse_arg: str | None = None) -> Reconciliation:
    """Compare the file's scores with the published ``mart_766__agency_period`` (optionally only ``period`` and
    ``agencies``: the report's section). ``warehouse_arg`` is how the warehouse is written in the explain commands
    (default: its path)."""
    wh = Path(warehouse)
    rows = read_portal_scores(portal_file)
    ctx = _Published(wh, warehouse_arg or str(wh))
    res = Reconciliation(tolerance=tolerance)
    fname = Path(portal_file).name
    for r in rows:
        where = f"{fname}, row {r.line}"
        key = _row_key(r, where, ctx, res, period, agencies)
        if key is not None:
            _compare(r, where, key, ctx, res)
    res.differences.sort(key=lambda d: (d["agency_code"], d["period"], d["indicator_code"]))
    return res


class _Published:
    """What the portal's rows are matched against: the agency list (codes, names) and the published 766 mart."""

    def __init__(self, wh: Path, wh_arg: str):
        import duckdb

        con = duckdb.connect()
        try:
            self.names = {c: n for c, n in con.execute("SELECT agency_code, agency_name FROM read_parquet(?)",
                                                       [str(wh / "core_agencies" / "data.parquet")]).fetchall()}
            self.mart = {(a, p, i): (num, den, ratio, score, mx) for a, p, i, num, den, ratio, score, mx in
                         con.execute("SELECT agency_code, period, indicator_code, numerator, denominator, ratio, "
                                     "score, max_score FROM read_parquet(?)",
                                     [str(wh / "mart_766__agency_period" / "data.parquet")]).fetchall()}
        finally:
            con.close()
        self.by_name: dict[str, list[str]] = {}
        for c, n in self.names.items():
            self.by_name.setdefault(norm_label(n or ""), []).append(c)
        self.by_code = {norm_label(c): c for c in self.names}
        self.periods = {p for _, p, _ in self.mart}
        self.wh_arg = wh_arg

    def agency(self, r, where: str, res: Reconciliation) -> str | None:
        """The agency code a row names (by code, else by a name that names exactly one agency)."""
        code = self.by_code.get(norm_label(r.agency)) if r.agency else None
        if code is None and r.agency_name:
            found = self.by_name.get(norm_label(r.agency_name), [])
            if len(found) > 1:
                res.problems.append(f"{where}: the agency name '{r.agency_name}' names {len(found)} agencies "
                                    f"({', '.join(found)}); give the agency code.")
                return None
            code = found[0] if found else None
        if code is None:
            res.problems.append(f"{where}: agency '{r.agency or r.agency_name}' is not in the agency list "
                                f"(agencies.csv).")
        return code


def _row_key(r, where: str, ctx: _Published, res: Reconciliation, period: str | None,
             agencies: set[str] | None) -> tuple[str, str, str, float] | None:
    """(agency code, period, indicator, score) of a portal row, or None: a problem or note said, or a row of another
    period or agency than asked for (passed over in silence)."""
    code = ctx.agency(r, where, res)
    if code is None:
        return None
    p = period_label(r.period) if r.period else None
    if p is None:
        res.problems.append(f"{where}: period '{r.period or ''}' is not a month, quarter or year "
                            f"(e.g. 2025-Q4, Quý IV/2025, Tháng 11/2025, 2025).")
        return None
    if period and p != period or agencies is not None and code not in agencies:
        return None
    ind = indicator_code(r.indicator) if r.indicator else None
    if ind is None and r.indicator and is_group_row(r.indicator):
        res.notes.append(f"{where}: '{r.indicator}' is a group or total row (not compared: the pipeline "
                         f"compares indicator by indicator).")
        return None
    if ind is None:
        res.problems.append(f"{where}: indicator '{r.indicator or ''}' is not a Decision 766 indicator number "
                            f"(e.g. 2.1) or name.")
        return None
    score = score_value(r.score)
    if score is None:
        res.problems.append(f"{where}: score '{r.score if r.score is not None else ''}' is not a number.")
        return None
    return code, p, ind, score


def _compare(r, where: str, key: tuple[str, str, str, float], ctx: _Published, res: Reconciliation) -> None:
    """One portal score against the project's: a difference above the tolerance is listed with its counts and
    the explain command; what cannot be compared is a note or a problem."""
    code, p, ind, score = key
    if ind not in INDICATOR:
        res.notes.append(f"{where}: indicator {ind} is not computed by the pipeline (not compared).")
        return
    if p not in ctx.periods:
        span = f"{min(ctx.periods)} to {max(ctx.periods)}" if ctx.periods else "- to -"
        res.problems.append(f"{where}: period {p} is not in the published marts (they hold {span}).")
        return
    m = ctx.mart.get((code, p, ind))
    if m is None:
        res.notes.append(f"{where}: {code} has no dossier counted for indicator {ind} in {p} (not compared).")
        return
    num, den, ratio, proj, mx = m
    if proj is None:
        res.notes.append(f"{where}: indicator {ind} has no settled score in the pipeline (ratio "
                         f"{'-' if ratio is None else f'{ratio:.4f}'}); the portal gives {score:g}.")
        return
    res.compared += 1
    pmax = score_value(r.max_score) if r.max_score is not None else None
    if pmax is not None and mx is not None and abs(pmax - mx) > 1e-9:
        res.notes.append(f"{where}: the portal's maximum for {ind} is {pmax:g}, the pipeline's {mx:g}.")
    diff = score - proj
    if abs(diff) > res.tolerance:
        res.differences.append({
            "agency_code": code, "agency_name": ctx.names.get(code), "period": p, "indicator_code": ind,
            "indicator_name": INDICATOR[ind].vi, "portal_score": score, "project_score": round(proj, 4),
            "difference": round(diff, 4), "portal_max": pmax, "project_max": mx, "numerator": num, "denominator": den,
            "ratio": None if ratio is None else round(ratio, 6), "source_row": r.line,
            "explain": f"tthc explain --warehouse {_shell(ctx.wh_arg)} --kpi {ind} --agency {code} --period {p}"})


def _shell(s: str) -> str:
    import shlex

    return shlex.quote(s)


def write_differences(res: Reconciliation, out: Path) -> None:
    """The differences as CSV (UTF-8 with a BOM) or XLSX, Vietnamese headers, text neutralised."""
    import pyarrow as pa

    from warehouse.exports import write_table

    cols = {c: [d[c] for d in res.differences] for c in RESULT_COLUMNS}
    types = {"portal_score": pa.float64(), "project_score": pa.float64(), "difference": pa.float64(),
             "portal_max": pa.float64(), "project_max": pa.float64(), "numerator": pa.int64(),
             "denominator": pa.int64(), "ratio": pa.float64(), "source_row": pa.int64()}
    table = pa.table({c: pa.array(v, type=types.get(c, pa.string())) for c, v in cols.items()})
    write_table(table, out, RESULT_HEADERS_VI)
