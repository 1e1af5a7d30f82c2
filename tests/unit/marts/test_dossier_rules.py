"""One small case per dossier rule of kpis.md and per settled detail (each asserts numbers that could differ)."""

import re
from datetime import date, datetime

import pytest


def core(st, dossier_id, col):
    return st.sql(f"SELECT {col} FROM core_dossiers WHERE dossier_id = '{dossier_id}'")[0][0]


def test_received_flag_excludes_status_1_and_3(staged):
    staged.procedure()
    staged.dossier("C1-1", status=1)
    staged.dossier("C1-2", status=3)
    staged.dossier("C1-3", status=2)
    staged.dossier("C1-4", received=None, status=4)
    staged.build()
    assert staged.kpi("C1", "2024-03", "online_rate")[1] == 1


def test_latest_version_wins_and_tie_goes_to_later_ingest(staged):
    staged.procedure()
    staged.dossier("C1-1", channel=2, updated_at="2024-03-05", batch="b1")
    staged.dossier("C1-1", channel=1, updated_at="2024-03-06", batch="b1")  # later updated_at wins
    staged.dossier("C1-2", channel=1, updated_at="2024-03-06", batch="b2", _ingested_at=datetime(2026, 1, 1))
    staged.dossier("C1-2", channel=2, updated_at="2024-03-06", batch="b3", _ingested_at=datetime(2026, 1, 2))
    staged.build()
    assert core(staged, "C1-1", "channel") == 1
    assert core(staged, "C1-2", "channel") == 2


def test_due_date_falls_back_to_working_days_of_the_catalogue_on_the_received_date(staged):
    # settled 15: version in force on the received date; settled 1: working days
    staged.procedure(updated="2023-01-05", legal_days=5)
    staged.procedure(updated="2024-06-01", legal_days=10)
    staged.dossier("C1-1", received="2024-03-04")  # Monday + 5 wd = Monday 11/3
    staged.dossier("C1-2", received="2024-07-01")  # + 10 wd = 15/7
    staged.dossier("C1-3", received="2022-12-01")  # before every version: the earliest
    staged.dossier("C1-4", received="2024-03-04", due_at="2024-03-20")
    staged.build()
    assert core(staged, "C1-1", "due_date") == date(2024, 3, 11)
    assert core(staged, "C1-2", "due_date") == date(2024, 7, 15)
    assert core(staged, "C1-3", "due_date") == date(2022, 12, 8)
    assert core(staged, "C1-4", "due_date") == date(2024, 3, 20)


def test_no_due_date_when_both_missing_counts_on_time_when_resolved(staged):
    staged.procedure(legal_days=None)
    staged.dossier("C1-1", finished_at="2024-03-28", status=10)
    staged.build()
    assert core(staged, "C1-1", "due_date") is None
    assert staged.kpi("C1", "2024-03", "on_time_rate")[:2] == (1, 1)


def test_end_date_uses_returned_at_only_for_status_7_to_10(staged):
    staged.procedure()
    staged.dossier("C1-1", status=10, returned_at="2024-03-06")
    staged.dossier("C1-2", status=4, returned_at="2024-03-06")
    staged.build()
    assert core(staged, "C1-1", "end_date") == date(2024, 3, 6)
    assert core(staged, "C1-2", "end_date") is None


def test_population_split_and_classes(staged):
    staged.procedure()
    # due 2024-03-11 (received Monday 4/3 + 5 wd)
    staged.dossier("C1-1", finished_at="2024-03-08", status=10, channel=2)  # early
    staged.dossier("C1-2", finished_at="2024-03-11", status=10)  # on time
    staged.dossier("C1-3", finished_at="2024-03-12", status=10, channel=3)  # late
    staged.dossier("C1-4", status=4)  # in progress at E=31/3, due 11/3: overdue
    staged.dossier("C1-5", received="2024-03-28", status=4)  # due in April: within time
    staged.dossier("C1-6", received="2024-02-26", status=4, finished_at="2024-02-29")  # ended before P
    staged.dossier("C1-7", received="2024-02-26", status=10, finished_at="2024-03-01")  # carried over, due 4/3: early
    staged.build()
    row = staged.f06("C1", "2024-03", field=None)
    assert len(row) == 1
    c = row[0][8:]
    assert c == (6, 1, 4, 1, 4, 2, 1, 1, 2, 1, 1)
    assert staged.kpi("C1", "2024-03", "on_time_rate")[:2] == (4, 6)  # early 2 + on time 1 + within 1


def test_status_7_and_8_with_end_date_are_resolved_and_classed(staged):  # settled 4
    staged.procedure()
    staged.dossier("C1-1", status=7, finished_at="2024-03-15")  # late against due 11/3
    staged.dossier("C1-2", status=8, finished_at="2024-03-05")  # early
    staged.build()
    c = staged.f06("C1", "2024-03")[0][8:]
    assert (c[4], c[5], c[7]) == (2, 1, 1)


def test_latest_version_used_in_every_period_only_dates_compared(staged):  # settled 3
    staged.procedure()
    staged.dossier("C1-1", status=10, finished_at="2024-04-02", channel=2)
    staged.build()
    # in March the dossier is in progress (end after E) and overdue (due 11/3 < 31/3)
    c = staged.f06("C1", "2024-03")[0][8:]
    assert (c[4], c[7 + 1], c[10]) == (0, 1, 1)
    # channel is the latest version's everywhere
    assert staged.kpi("C1", "2024-03", "online_rate")[:2] == (1, 1)


def test_current_period_uses_as_of(staged):  # settled 2
    staged.procedure()
    staged.dossier("C1-1", received="2025-06-02", status=4)  # due 9/6
    staged.build(as_of=date(2025, 6, 5))
    assert staged.kpi("C1", "2025-06", "on_time_rate")[:2] == (1, 1)  # E = 5/6: within time
    assert staged.kpi("C1", "2025-07", "on_time_rate") is None  # not started by as_of


def test_flat_supplement_count_minus_one_when_request_after_e(staged):  # rule + settled 5
    staged.procedure()
    staged.dossier("C1-1", status=5, supplement_count=2, supplement_requested_at="2024-03-05",
                   due_at="2024-12-31")
    staged.dossier("C1-2", status=5, supplement_count=2, supplement_requested_at="2024-04-05",
                   due_at="2024-12-31")
    staged.build()
    assert staged.kpi("C1", "2024-03", "on_time_rate")[:2] == (1, 2)  # C1-1 forced overdue, C1-2 not
    assert staged.kpi("C1", "2024-04", "on_time_rate")[:2] == (0, 2)


def test_json_list_latest_request_by_date_wherever_it_stands(staged):  # settled 1 and 5
    staged.procedure()
    reqs = [{"requested_at": datetime(2024, 3, 20), "received_at": None},
            {"requested_at": datetime(2024, 3, 5), "received_at": datetime(2024, 3, 6)}]
    # paused since 20/3 (after due 11/3) -> overdue; if the first list item were taken it would be unpaused
    staged.dossier("C1-1", fmt="national_sync", supplement_requests=[reqs[0]], supplement_count=1)
    staged.dossier("C1-2", fmt="national_sync", supplement_requests=[
        {"requested_at": datetime(2024, 3, 8), "received_at": None}], due_at="2024-03-11")
    # two requests but only one dated <= E in March: not forced
    staged.dossier("C1-3", fmt="national_sync", due_at="2024-12-31", supplement_requests=[
        {"requested_at": datetime(2024, 4, 2), "received_at": None},
        {"requested_at": datetime(2024, 3, 5), "received_at": datetime(2024, 3, 6)}])
    # flat fields on a JSON version are ignored: the list rules
    staged.dossier("C1-4", fmt="national_sync", due_at="2024-12-31", supplement_count=3,
                   supplement_requested_at="2024-03-05", supplement_requests=[])
    staged.build()
    rows = {r[0]: r[1] for r in staged.sql(
        "SELECT dossier_id, supplement_rule FROM core_dossiers")}
    assert set(rows.values()) == {"list"}
    # C1-1 paused on 20/3 > due 11/3: overdue; C1-2 paused 8/3 <= due 11/3: within; C1-3, C1-4 within
    assert staged.kpi("C1", "2024-03", "on_time_rate")[:2] == (3, 4)
    assert staged.kpi("C1", "2024-04", "on_time_rate")[:2] == (2, 4)  # April: C1-3 has 2 requests -> overdue


def test_paused_without_due_date_is_within_time(staged):  # settled 5
    staged.procedure(legal_days=None)
    staged.dossier("C1-1", supplement_count=1, supplement_requested_at="2024-03-05")
    staged.build()
    assert staged.kpi("C1", "2024-03", "on_time_rate")[:2] == (1, 1)


def test_old_code_after_merger_and_open_dossier_move_to_successor(staged):  # rule 9, settled 9
    staged.procedure()
    staged.dossier("C1-1", received="2025-07-03", due_at="2025-12-31")  # old code used after the merger
    staged.dossier("C2-1", received="2025-06-20", due_at="2025-12-31")  # open across the merger
    staged.build()
    assert staged.kpi("C9", "2025-07", "on_time_rate")[:2] == (2, 2)
    assert staged.kpi("C2", "2025-06", "on_time_rate")[:2] == (1, 1)
    assert staged.kpi("C1", "2025-07", "on_time_rate") is None  # C1 has no rows after it ended
    assert staged.kpi("C2", "2025", "on_time_rate")[:2] == (1, 1)  # C2 valid some day of 2025
    assert staged.kpi("C9", "2025", "on_time_rate")[:2] == (1, 1)  # C1-1 is C9's; C2-1 is C2's in 2025


def test_chain_ending_in_invalid_agency_counts_for_nobody(staged):  # settled 16
    staged.procedure(levels="district")
    staged.dossier("D1-1", received="2025-06-20", due_at="2025-12-31")  # district ends 30/6, no successor
    staged.build()
    assert staged.kpi("D1", "2025-06", "on_time_rate")[:2] == (1, 1)
    assert staged.kpi("P", "2025-07", "on_time_rate")[:2] == (0, 0)
    assert staged.kpi("P", "2025-06", "on_time_rate")[:2] == (1, 1)


def test_every_valid_agency_has_rows_and_rollups_add_numerators(staged):  # rule + settled 10
    staged.procedure()
    staged.dossier("C1-1", finished_at="2024-03-05", status=10)
    staged.dossier("C2-1", status=4)
    staged.dossier("S1-1", finished_at="2024-03-05", status=10)
    staged.build()
    assert staged.kpi("C2", "2024-04", "online_rate")[:3] == (0, 0, None)  # zero activity: value null
    assert staged.kpi("D1", "2024-03", "on_time_rate")[:2] == (1, 2)
    assert staged.kpi("P", "2024-03", "on_time_rate")[:2] == (2, 3)
    assert staged.kpi("D1", "2025-07", "on_time_rate") is None  # district roll-ups stop at 30/6/2025
    assert staged.i766("P", "2024-03", "2.1")[:2] == (2, 3)
    assert staged.f06("D1", "2024-03")[0][8] == 2


def test_rates_and_flags_per_kpi(staged):
    staged.procedure(code="1.000001", is_paper_result=None)  # unknown paper flag counts as paper (settled 12)
    staged.procedure(code="1.000002", is_paper_result=False)
    staged.dossier("C1-1", channel=2, has_digitized_components=True, reused_digitized_data=True,
                   status=10, finished_at="2024-03-05", has_e_result=True, fee_vnd=50000)
    staged.dossier("C1-2", status=9, finished_at="2024-03-05", has_digitized_components=True, fee_vnd=20000)
    staged.dossier("C1-3", procedure_code="1.000002", status=10, finished_at="2024-03-05", channel=2)
    staged.add("payments", payment_id="P1", dossier_id="C1-1", amount_vnd=50000, paid_at="2024-03-04",
               status="success")
    staged.add("payments", payment_id="P2", dossier_id="C1-2", amount_vnd=20000, paid_at="2024-04-04",
               status="success")  # paid after E of March
    staged.build()
    assert staged.kpi("C1", "2024-03", "online_rate")[:2] == (2, 3)
    assert staged.kpi("C1", "2024-03", "digitization_rate")[:2] == (2, 3)
    assert staged.kpi("C1", "2024-03", "reuse_rate")[:2] == (1, 3)
    assert staged.kpi("C1", "2024-03", "e_result_rate")[:2] == (1, 2)  # C1-3 not paper: excluded
    assert staged.kpi("C1", "2024-03", "online_payment_rate")[:2] == (1, 2)
    assert staged.i766("C1", "2024-03", "3.3")[:2] == (2, 3)  # C1-3 not paper: online suffices
    assert staged.i766("C1", "2024-03", "4.2")[:2] == (1, 3)  # C1-2 resolved 9/10 paper without e-result


def test_satisfaction_rating_latest_by_date_then_time_then_id_and_linked_feedback(staged):  # settled 6, 17
    staged.procedure()
    for i in range(1, 5):
        staged.dossier(f"C1-{i}", status=10, finished_at="2024-03-05")
    staged.add("ratings", rating_id="R1", dossier_id="C1-1", rating=1, rated_at="2024-03-10 09:00:00")
    staged.add("ratings", rating_id="R2", dossier_id="C1-1", rating=4, rated_at="2024-03-10 10:00:00")
    staged.add("ratings", rating_id="R4", dossier_id="C1-2", rating=4, rated_at="2024-03-10 09:00:00")
    staged.add("ratings", rating_id="R3", dossier_id="C1-2", rating=1, rated_at="2024-03-10 09:00:00")
    staged.add("ratings", rating_id="R5", dossier_id="C1-3", rating=1, rated_at="2024-04-10 09:00:00")
    staged.add("feedback", feedback_id="F1", agency_code="S1", received_at="2024-03-20", dossier_id="C1-4")
    staged.build()
    # C1-1: later timestamp (4) wins; C1-2: same timestamp, greater id R4 (4) wins; C1-3 rated after E;
    # C1-4: linked feedback of another agency, received by E -> dissatisfied
    assert staged.kpi("C1", "2024-03", "satisfaction_rate")[:2] == (3, 4)
    assert staged.kpi("C1", "2024-04", "satisfaction_rate") == (0, 0, None, 0.93, None)
    assert staged.kpi("C1", "2024", "satisfaction_rate")[:2] == (2, 4)


def test_e_certified_copies_target_is_last_year_value(staged):  # settled 11
    staged.add("e_certifications", transaction_id="E1", agency_code="S1", certified_at="2023-03-05", copies=3)
    staged.add("e_certifications", transaction_id="E2", agency_code="S1", certified_at="2024-03-05", copies=3)
    staged.add("e_certifications", transaction_id="E3", agency_code="C1", certified_at="2024-03-05", copies=2)
    staged.build()
    assert staged.kpi("S1", "2024-03", "e_certified_copies") == (3, None, 3.0, 3.0, False)
    assert staged.kpi("S1", "2023-03", "e_certified_copies") == (3, None, 3.0, None, None)
    assert staged.kpi("C1", "2024-03", "e_certified_copies") == (2, None, 2.0, 0.0, True)
    assert staged.kpi("C9", "2025-07", "e_certified_copies") == (0, None, 0.0, None, None)
    assert staged.kpi("P", "2024-03", "e_certified_copies")[:3] == (5, None, 5.0)


def test_targets_file_overrides_by_year_and_agency(staged, tmp_path):  # settled 18
    t = tmp_path / "targets.csv"
    t.write_text("year,agency_code,kpi_code,target\n2023,,online_rate,0.2\n2024,C1,online_rate,0.5\n",
                 encoding="utf-8")
    staged.procedure()
    staged.dossier("C1-1", channel=2)
    staged.dossier("C1-2")
    staged.build(targets_csv=t)
    assert staged.kpi("C1", "2024-03", "online_rate") == (1, 2, 0.5, 0.5, True)
    assert staged.kpi("C2", "2024-03", "online_rate")[3] == 0.2
    assert staged.kpi("C1", "2025-03", "online_rate")[3] == 0.2
    assert staged.kpi("C1", "2024-03", "reuse_rate")[3] is None  # not in this file


def test_form06_field_falls_back_to_procedure_code_and_name(staged):  # settled 14, 19
    staged.procedure(field_code="F01", field_name="Hộ tịch")
    staged.dossier("C1-1")
    staged.dossier("C1-2", field_code="F02", field_name="Chứng thực")
    staged.dossier("C1-3", field_name="Tên riêng")
    staged.build()
    rows = {(r[6], r[7]): r[8] for r in staged.f06("C1", "2024-03")}
    assert rows == {("F01", "Hộ tịch"): 1, ("F02", "Chứng thực"): 1, ("F01", "Tên riêng"): 1}
    assert staged.f06("C1", "2024-04", basis="cutoff_15")  # cut-off basis rows exist too
    assert not staged.f06("C2", "2024-03")  # a row only where c03 > 0


def test_core_has_no_personal_data(staged):
    staged.procedure()
    staged.dossier("C1-1", applicant_pseudonym="ab12")
    staged.build()
    cols = {r[0] for r in staged.sql("DESCRIBE core_dossiers")}
    assert "applicant_pseudonym" in cols
    assert not cols & {"applicant_name", "applicant_id_number", "applicant_phone", "applicant_address"}
    fcols = {r[0] for r in staged.sql("DESCRIBE core_feedback")}
    assert not fcols & {"sender_name", "content"}


@pytest.mark.parametrize("kpi", ["on_time_rate", "feedback_on_time_rate", "5.4"])
def test_explain_matches_the_mart(staged, kpi):
    from transforms.marts import explain

    staged.procedure()
    staged.dossier("C1-1", finished_at="2024-03-05", status=10)
    staged.dossier("C2-1", status=4)
    staged.add("feedback", feedback_id="F1", agency_code="C1", received_at="2024-03-05")
    staged.build()
    t = explain(staged.wh, kpi, "P", "2024-Q1")
    num = sum(bool(v) for v in t.column("in_numerator").to_pylist())
    if kpi == "5.4":
        assert (num, t.num_rows) == staged.i766("P", "2024-Q1", "5.4")[:2]
    else:
        assert (num, t.num_rows) == staged.kpi("P", "2024-Q1", kpi)[:2]


def test_explain_refuses_what_it_cannot_answer(staged):
    """A wrong agency, period or basis is named, not answered with 'numerator 0, denominator 0'."""
    from transforms.marts import explain

    staged.procedure()
    staged.dossier("C1-1", status=4)
    staged.build()
    for kw, says in [({"agency": "c1"}, "agency 'c1' is not in core_agencies (agencies.csv); nearest: C1"),
                     ({"period": "2024Q1"}, "period must look like"), ({"period": "2024-13"}, "period must look like"),
                     ({"period": "2030-Q1"}, "not among the periods of the marts built as of 2025-12-31"),
                     ({"basis": "monthly"}, "basis must be one of calendar, cutoff_15")]:
        args = {"agency": "C1", "period": "2024-Q1", **kw}
        with pytest.raises(ValueError, match=re.escape(says)):
            explain(staged.wh, "on_time_rate", args.pop("agency"), args.pop("period"), **args)
    assert explain(staged.wh, "on_time_rate", "C1", "2024-Q1").num_rows == 1
