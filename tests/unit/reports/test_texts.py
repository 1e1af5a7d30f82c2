from datetime import date, datetime

import pandas as pd
import pytest

from transforms.reports import texts


@pytest.mark.parametrize("x, d, vi, en", [
    (1234.5, 1, "1.234,5", "1,234.5"), (1234567, 0, "1.234.567", "1,234,567"), (0.25, 2, "0,25", "0.25"),
    (-0.04, 1, "0,0", "0.0"), (None, 0, "", ""), (float("nan"), 1, "", ""), (pd.NA, 1, "", ""),
])
def test_numbers_vietnamese_and_english(x, d, vi, en):
    assert texts.number(x, d) == vi and texts.number(x, d, lang="en") == en


def test_percent_and_dates():
    assert texts.percent(0.963) == "96,3 %" and texts.percent(0.963, lang="en") == "96.3%"
    assert texts.percent(1) == "100,0 %" and texts.percent(None, empty="—") == "—"
    assert texts.day(date(2025, 3, 7)) == "07/03/2025" and texts.day("2025-12-31") == "31/12/2025"
    assert texts.moment(datetime(2025, 1, 2, 3, 4)) == "02/01/2025 03:04"
    assert texts.kpi_value(0.5, "rate") == "50,0 %" and texts.kpi_value(1500, "count") == "1.500"


def test_catalogue_has_both_languages_and_fills_placeholders():
    cat = texts.catalogue()
    assert all(v["vi"] and v["en"] for v in cat.values())
    assert texts.t("report.data_date", date="31/12/2025") == "Số liệu đến ngày 31/12/2025"
    with pytest.raises(KeyError, match="no.such.key"):
        texts.t("no.such.key")


def test_rule_table_and_level_names_in_words():
    assert texts.rule_name("not_null:received_at") == "Thiếu giá trị bắt buộc"
    assert texts.rule_name("something_new") == "something_new"
    assert texts.level_name("commune") == "Cấp xã"
    assert "Hồ sơ" in texts.table_name("stg_one_stop__dossiers") or "hồ sơ" in texts.table_name(
        "stg_one_stop__dossiers")
    assert texts.table_name("no_such_table") == "no_such_table"


def test_every_row_and_gate_rule_has_vietnamese_words():
    """Each rule staging sets aside rows by, and each gate rule of RULE_VI's successor, is in the catalogue."""
    import re
    from pathlib import Path

    src = "\n".join(p.read_text(encoding="utf-8") for p in sorted(Path("transforms/staging").glob("*.py")))
    named = set(re.findall(r'(?:append\(\(|\[\()"([a-z_]+)"', src))
    named |= set(re.findall(r'^\s+\("([a-z_]+)", (?:hdr|header)', src, re.M))
    assert {"required", "invalid_date", "unknown_agency", "unknown_code"} <= named
    missing = sorted(n for n in named if not texts.has(f"rule.{n}"))
    assert not missing, f"rules without words in texts.yaml: {missing}"
