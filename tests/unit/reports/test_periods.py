from datetime import date

import pytest

from transforms.reports.periods import PeriodError, latest_closed, parse


@pytest.mark.parametrize("text, ptype, key, start, end, vi", [
    ("2025-Q4", "quarter", "2025-Q4", date(2025, 10, 1), date(2025, 12, 31), "Quý IV/2025"),
    ("2025q1", "quarter", "2025-Q1", date(2025, 1, 1), date(2025, 3, 31), "Quý I/2025"),
    ("2025-11", "month", "2025-11", date(2025, 11, 1), date(2025, 11, 30), "Tháng 11/2025"),
    ("2024-2", "month", "2024-02", date(2024, 2, 1), date(2024, 2, 29), "Tháng 02/2024"),
    (" 2025 ", "year", "2025", date(2025, 1, 1), date(2025, 12, 31), "Năm 2025"),
])
def test_parse_gives_the_marts_keys_dates_and_label(text, ptype, key, start, end, vi):
    p = parse(text)
    assert (p.period_type, p.period, p.start, p.end, p.label_vi) == (ptype, key, start, end, vi)


def test_cutoff_dates_follow_form06_basis():  # docs/kpis.md S2: 2024-Q1 is 15/12/2023 to 14/3/2024
    assert (parse("2024-Q1").cutoff_start, parse("2024-Q1").cutoff_end) == (date(2023, 12, 15), date(2024, 3, 14))
    assert (parse("2024").cutoff_start, parse("2024").cutoff_end) == (date(2023, 12, 15), date(2024, 12, 14))
    assert (parse("2024-01").cutoff_start, parse("2024-01").cutoff_end) == (date(2023, 12, 15), date(2024, 1, 14))


def test_months_and_trend_months():
    assert [m.period for m in parse("2025-Q4").months()] == ["2025-10", "2025-11", "2025-12"]
    assert len(parse("2025").months()) == 12
    trend = [m.period for m in parse("2025-Q1").trend_months(6)]
    assert trend == ["2024-10", "2024-11", "2024-12", "2025-01", "2025-02", "2025-03"]
    assert parse("2025-01").previous().period == "2024-12" and parse("2025-Q1").previous().period == "2024-Q4"


@pytest.mark.parametrize("as_of, month, quarter", [
    (date(2025, 12, 31), "2025-12", "2025-Q4"),
    (date(2025, 12, 30), "2025-11", "2025-Q3"),
    (date(2026, 1, 1), "2025-12", "2025-Q4"),
    (date(2025, 4, 30), "2025-04", "2025-Q1"),
])
def test_latest_closed_month_and_quarter(as_of, month, quarter):
    got = latest_closed(as_of)
    assert (got["month"].period, got["quarter"].period) == (month, quarter)
    assert got["month"].end <= as_of and got["quarter"].end <= as_of


@pytest.mark.parametrize("bad", ["2025-13", "2025-Q5", "Q4-2025", "25", "2025-00", "", "quý 4"])
def test_bad_period_is_a_sentence(bad):
    with pytest.raises(PeriodError) as e:
        parse(bad)
    assert "2025-Q4" in str(e.value) and "Traceback" not in str(e.value)
