"""The texts and formats of every report (HTML and XLSX): one catalogue, ``texts.yaml`` beside this module.

``t("report.title")`` -> "Báo cáo kết quả kiểm soát thủ tục hành chính" (``lang="en"`` for English; placeholders as
keyword arguments). Numbers are written the Vietnamese way: ``number(1234.5, 1)`` -> "1.234,5",
``percent(0.963)`` -> "96,3 %", ``day(date(2025, 12, 31))`` -> "31/12/2025"; ``lang="en"`` gives "1,234.5",
"96.3%", "2025-12-31". Table names are the contracts' Vietnamese descriptions (expectations/tables/*.yaml), rule
names this catalogue's ``rule.*``. ``XLSX_FORMATS`` are the matching spreadsheet number formats (a spreadsheet
shows its own locale's separators).
"""

from __future__ import annotations

from datetime import date, datetime
from functools import cache
from pathlib import Path

import yaml

CATALOGUE = Path(__file__).with_name("texts.yaml")
LANGS = ("vi", "en")
XLSX_FORMATS = {"integer": "#,##0", "decimal": "#,##0.0", "score": "0.00", "percent": "0.0%",
                "date": "dd/mm/yyyy", "datetime": "dd/mm/yyyy hh:mm"}


@cache
def catalogue() -> dict[str, dict[str, str]]:
    data = yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))
    for key, v in data.items():
        if not isinstance(v, dict) or set(v) != set(LANGS):
            raise ValueError(f"{CATALOGUE.name}: {key!r} must have exactly the texts {LANGS}")
    return data


def t(key: str, lang: str = "vi", **fields) -> str:
    """The text ``key`` in ``lang``, its ``{placeholders}`` filled from ``fields``."""
    try:
        text = catalogue()[key][lang]
    except KeyError:
        raise KeyError(f"text {key!r} ({lang}) is not in {CATALOGUE}") from None
    return text.format(**fields) if fields else text


def has(key: str) -> bool:
    return key in catalogue()


def _or_key(prefix: str, name: str, lang: str) -> str:
    key = f"{prefix}.{name}"
    return t(key, lang) if has(key) else name


def rule_name(name: str, lang: str = "vi") -> str:
    """A gate rule in words (``not_null:received_at`` -> "Thiếu giá trị bắt buộc"); unknown rules as they are."""
    return _or_key("rule", str(name).split(":")[0], lang)


def level_name(level: str | None, lang: str = "vi") -> str:
    return _or_key("level", level or "", lang) if level else ""


def source_name(source: str, lang: str = "vi") -> str:
    return _or_key("source", source, lang)


def entity_name(entity: str, lang: str = "vi") -> str:
    return _or_key("entity", entity, lang)


def table_name(table: str, lang: str = "vi") -> str:
    """A table in words: its contract's description (``stg_one_stop__dossiers`` -> "Hồ sơ ..."), else the name."""
    from transforms.contracts import contract

    try:
        c = contract(table)
    except (FileNotFoundError, OSError):
        return table
    return (c.vi if lang == "vi" else c.en) or table


def _missing(x) -> bool:
    """None, NaN, NaT or pandas' NA."""
    if x is None:
        return True
    try:
        return bool(x != x)
    except TypeError:  # pd.NA
        return True


def number(x, decimals: int = 0, lang: str = "vi", empty: str = "") -> str:
    """1234.5 -> "1.234,5" (vi) or "1,234.5" (en); None/NaN -> ``empty``."""
    if _missing(x):
        return empty
    s = f"{float(x):,.{decimals}f}"
    if s in (f"-{0:.{decimals}f}",):
        s = s[1:]
    return s.replace(",", "\0").replace(".", ",").replace("\0", ".") if lang == "vi" else s


def percent(ratio, decimals: int = 1, lang: str = "vi", empty: str = "") -> str:
    """0.963 -> "96,3 %" (vi) or "96.3%" (en); None/NaN -> ``empty``."""
    if _missing(ratio):
        return empty
    return number(100 * float(ratio), decimals, lang) + (" %" if lang == "vi" else "%")


def day(d: date | datetime | None, lang: str = "vi") -> str:
    """A date as dd/mm/yyyy (vi) or yyyy-mm-dd (en)."""
    if d is None or _missing(d):
        return ""
    if isinstance(d, str):
        d = date.fromisoformat(d[:10])
    return d.strftime("%d/%m/%Y" if lang == "vi" else "%Y-%m-%d")


def moment(d: datetime, lang: str = "vi") -> str:
    """A time as dd/mm/yyyy hh:mm (vi) or yyyy-mm-dd hh:mm (en)."""
    return d.strftime("%d/%m/%Y %H:%M" if lang == "vi" else "%Y-%m-%d %H:%M")


def kpi_value(value, unit: str, lang: str = "vi", empty: str = "") -> str:
    """A KPI value in its unit (registry ``Kpi.unit``: rate -> percent, count -> whole number)."""
    return percent(value, 1, lang, empty) if unit == "rate" else number(value, 0, lang, empty)
