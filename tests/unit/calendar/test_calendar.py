from datetime import date

import numpy as np

from transforms.calendar import WorkingCalendar, get_calendar, make_period, periods_between, year_earlier_label


def test_add_working_days_never_counts_d_and_zero_is_d():
    cal = get_calendar()
    assert cal.add_working_days(date(2024, 1, 8), 1) == date(2024, 1, 9)  # Monday -> Tuesday
    assert cal.add_working_days(date(2024, 1, 8), 0) == date(2024, 1, 8)
    assert cal.add_working_days(date(2024, 1, 6), 0) == date(2024, 1, 6)  # Saturday, n=0: d itself
    assert cal.add_working_days(date(2024, 1, 6), 1) == date(2024, 1, 8)  # Saturday -> Monday
    assert cal.add_working_days(date(2024, 1, 5), 1) == date(2024, 1, 8)  # Friday -> Monday


def test_holidays_with_substitute_days_and_saturdays_are_not_working_days():
    cal = get_calendar()
    # 2024-04-29 is the substitute day off (for the make-up Saturday 2024-05-04); 30/4 and 1/5 are holidays
    assert not cal.is_working_day(date(2024, 4, 29))
    assert cal.add_working_days(date(2024, 4, 26), 1) == date(2024, 5, 2)
    # make-up Saturday 2024-05-04 is not a working day
    assert not cal.is_working_day(date(2024, 5, 4))
    # Tết 2025: 27/1 .. 31/1 off
    assert cal.add_working_days(date(2025, 1, 24), 1) == date(2025, 2, 3)


def test_extra_days_off_file(tmp_path):
    f = tmp_path / "extra.csv"
    f.write_text("date,reason\n2024-01-09,test day off\n", encoding="utf-8")
    cal = WorkingCalendar(f)
    assert cal.add_working_days(date(2024, 1, 8), 1) == date(2024, 1, 10)
    assert get_calendar().add_working_days(date(2024, 1, 8), 1) == date(2024, 1, 9)


def test_vectorised_matches_scalar():
    cal = get_calendar()
    days = np.arange(np.datetime64("2024-01-01"), np.datetime64("2024-03-01"))
    ns = np.arange(len(days)) % 7
    vec = cal.add_working_days(days, ns)
    for d, n, v in zip(days, ns, vec, strict=True):
        assert cal.add_working_days(d.astype(object), int(n)) == v.astype(object)


def test_cutoff_periods_are_labelled_by_the_calendar_period_they_end_in():
    q = make_period("cutoff_15", "quarter", 2024 * 4)
    assert (q.label, q.start, q.end) == ("2024-Q1", date(2023, 12, 15), date(2024, 3, 14))
    y = make_period("cutoff_15", "year", 2024)
    assert (y.label, y.start, y.end) == ("2024", date(2023, 12, 15), date(2024, 12, 14))
    m = make_period("cutoff_15", "month", 2024 * 12 + 2)
    assert (m.label, m.start, m.end) == ("2024-03", date(2024, 2, 15), date(2024, 3, 14))
    assert year_earlier_label("2024-Q1") == "2023-Q1" and year_earlier_label("2024") == "2023"


def test_periods_run_from_first_validity_to_the_period_containing_as_of():
    ps = periods_between(date(2023, 1, 1), date(2025, 12, 31))
    cut_months = [p for p in ps if p.basis == "cutoff_15" and p.period_type == "month"]
    assert cut_months[0].start == date(2022, 12, 15)
    assert cut_months[-1].label == "2026-01"  # 2025-12-15 .. 2026-01-14 contains as_of
    assert ps[0].eval_date(date(2025, 12, 31)) == ps[0].end
    last_year = [p for p in ps if p.basis == "cutoff_15" and p.period_type == "year"][-1]
    assert last_year.eval_date(date(2025, 12, 31)) == date(2025, 12, 31)  # E = as_of


def test_working_day_table_is_the_calendar_as_sql_reads_it():
    # the table SQL joins to add working days: wd_index(d) + n is the index of the n-th working day after d
    cal = get_calendar()
    t = cal.working_day_table(date(2024, 12, 25), date(2025, 3, 31)).to_pydict()
    assert t["day"][0] == date(2024, 12, 25) and t["day"][-1] == date(2025, 3, 31) and len(t["day"]) == 97
    assert t["is_working"] == [bool(cal.is_working_day(d)) for d in t["day"]]
    assert t["wd_index"] == list(np.cumsum(t["is_working"]))
    working = {i: d for d, i, w in zip(t["day"], t["wd_index"], t["is_working"]) if w}
    for d, i in zip(t["day"][:40], t["wd_index"][:40]):  # Tết 2025 (27/1..31/1) and weekends on the way
        for n in (1, 3, 10):
            assert working[i + n] == cal.add_working_days(d, n)
