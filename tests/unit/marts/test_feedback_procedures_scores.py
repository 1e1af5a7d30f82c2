from datetime import date

import pyarrow as pa
import pytest

from transforms.marts import FormIdentityError, changed_periods, check_form06


def test_feedback_deadline_on_time_and_unsatisfied(staged):
    # received Monday 4/3/2024: deadline = 15 working days = 25/3
    staged.add("feedback", feedback_id="F1", agency_code="C1", received_at="2024-03-04", answered_at="2024-03-25")
    staged.add("feedback", feedback_id="F2", agency_code="C1", received_at="2024-03-04", answered_at="2024-03-26")
    staged.add("feedback", feedback_id="F3", agency_code="C1", received_at="2024-03-20")  # open, deadline 10/4
    staged.add("feedback", feedback_id="F4", agency_code="C1", received_at="2024-03-04", answered_at="2024-03-05",
               likes=1, dislikes=2)
    staged.add("feedback", feedback_id="F5", agency_code="C1", received_at="2024-02-01", answered_at="2024-02-05")
    staged.build()
    assert staged.sql("SELECT deadline_date FROM core_feedback WHERE feedback_id='F1'")[0][0] == date(2024, 3, 25)
    assert staged.kpi("C1", "2024-03", "feedback_on_time_rate")[:2] == (3, 4)  # F5 answered before P
    assert staged.kpi("C1", "2024-03", "feedback_satisfaction_rate")[:2] == (2, 4)  # F2 late, F4 dislikes
    assert staged.i766("C1", "2024-03", "5.2")[3] == pytest.approx(6 * 3 / 4)


def test_no_feedback_scores_six_and_ratio_null(staged):  # settled 7, 13
    staged.build()
    assert staged.i766("C1", "2024-03", "5.2") == (0, 0, None, 6.0, 6.0)
    assert staged.i766("C1", "2024-03", "5.3") == (0, 0, None, 6.0, 6.0)
    assert staged.i766("C1", "2024-03", "5.4") == (0, 0, None, 0.0, 6.0)
    assert staged.i766("C1", "2024-03", "2.1") == (0, 0, None, None, 20.0)
    assert staged.i766("C1", "2024-03", "3.3")[3:] == (None, None)


def test_scores_are_capped_and_unrounded(staged):
    staged.procedure()
    for i in range(3):
        staged.dossier(f"C1-{i}", status=10, finished_at="2024-03-05", reused_digitized_data=True)
    staged.build()
    assert staged.i766("C1", "2024-03", "4.3")[3] == 2.0  # 2 x 1 / 0.8 = 2.5: capped at 2
    assert staged.i766("C1", "2024-03", "5.4")[3] == 6.0
    assert staged.i766("C1", "2024-03", "2.1")[3] == 20.0


def test_procedure_kpis_use_catalogue_at_e_and_the_agency_level(staged):  # settled 8
    staged.procedure(code="1.000001", updated="2023-01-05", levels="commune", publication_decision_date=date(2023, 1, 1),
                     publication_state="published", has_sample_dossier=True, is_online_eligible=True, online_level=2,
                     is_full_online_eligible=True, has_simplification_plan=True)
    staged.procedure(code="1.000001", updated="2024-06-10", levels="commune;district", online_level=4,
                     publication_decision_date=date(2023, 1, 1), publication_state="stopped",
                     is_online_eligible=True, is_full_online_eligible=True)
    staged.procedure(code="1.000002", updated="2024-06-10", levels="province", publication_state="published",
                     publication_decision_date=date(2024, 6, 1), is_online_eligible=True, online_level=3)
    staged.build()
    # March 2024: only the first version of 1.000001 (commune) and the earliest (only) version of 1.000002
    assert staged.kpi("C1", "2024-03", "procedures_published_rate")[:2] == (1, 1)
    assert staged.kpi("C1", "2024-03", "procedures_online_rate")[:2] == (0, 1)
    assert staged.kpi("C1", "2024-03", "procedures_simplified_rate")[:2] == (1, 1)
    assert staged.kpi("S1", "2024-03", "procedures_published_rate")[:2] == (0, 0)  # decision dated after E
    assert staged.kpi("S1", "2024-07", "procedures_published_rate")[:2] == (1, 1)
    # July 2024: new version stopped -> out of the published denominator; full online at level 4
    assert staged.kpi("C1", "2024-07", "procedures_published_rate")[:2] == (0, 0)
    assert staged.kpi("C1", "2024-07", "procedures_full_online_rate")[:2] == (1, 1)
    assert staged.kpi("D1", "2024-07", "procedures_full_online_rate")[:2] == (3, 3)  # own + 2 communes


def _f06(**over):
    base = {"agency_code": "C1", "period_basis": "calendar", "period_type": "month", "period": "2024-03",
            "field_code": "F", "field_name": "F", "c03_received_total": 3, "c04_received_online": 1,
            "c05_received_direct_postal": 1, "c06_carried_over": 1, "c07_resolved_total": 2,
            "c08_resolved_early": 1, "c09_resolved_on_time": 1, "c10_resolved_late": 0,
            "c11_in_progress_total": 1, "c12_in_progress_within_time": 1, "c13_in_progress_overdue": 0}
    base.update(over)
    return pa.Table.from_pylist([base])


def test_form06_identities_are_checked():
    check_form06(_f06())
    with pytest.raises(FormIdentityError, match="c03 = c04"):
        check_form06(_f06(c04_received_online=2))
    with pytest.raises(FormIdentityError, match="c11 = c12"):
        check_form06(_f06(c12_in_progress_within_time=0))
    # an unknown side breaks an identity too, and the message counts the rows
    good = _f06(period="2024-04")
    two = pa.concat_tables([_f06(c13_in_progress_overdue=None).cast(good.schema), good])
    with pytest.raises(FormIdentityError, match=r"c11 = c12 \+ c13: 1 rows"):
        check_form06(two)


def test_identity_violation_publishes_nothing(staged, monkeypatch):
    import transforms.marts.build as M

    staged.procedure()
    staged.dossier("C1-1")
    staged.write()
    from transforms.core import build_core

    build_core(staged.wh, staged.agencies)
    orig = M.form06_table

    def broken(con):
        t = orig(con)
        return t.set_column(t.schema.get_field_index("c04_received_online"), "c04_received_online",
                            pa.array([v + 1 for v in t.column("c04_received_online").to_pylist()], pa.int64()))

    monkeypatch.setattr(M, "form06_table", broken)
    with pytest.raises(FormIdentityError):
        M.build_marts(staged.wh, date(2025, 12, 31))
    assert not any((staged.wh / m).exists() for m in M.MARTS)


def test_changed_periods():
    got = changed_periods([date(2025, 12, 20)], date(2025, 12, 31))
    assert got == {"2025-12", "2025-Q4", "2025", "2026-01", "2026-Q1", "2026"}
    assert "2025-11" in changed_periods([date(2025, 11, 30)], date(2025, 12, 31))
    assert changed_periods([], date(2025, 12, 31)) == set()


def test_incremental_rebuild_equals_full_and_rerun_leaves_files_untouched(staged):
    staged.procedure()
    staged.dossier("C1-1", received="2025-11-03", status=4)
    staged.build()
    files = {m: (staged.wh / m / "data.parquet") for m in
             ("mart_kpi__agency_period", "mart_766__agency_period", "mart_tt01_form06__agency_period")}
    before = {m: (f.stat().st_mtime_ns, f.read_bytes()) for m, f in files.items()}
    from transforms.marts import build_marts

    build_marts(staged.wh, date(2025, 12, 31))  # nothing new
    assert {m: (f.stat().st_mtime_ns, f.read_bytes()) for m, f in files.items()} == before
    # a new dossier in December: rebuild only the periods it can change, compare with a full rebuild
    staged.rows = {k: [] for k in staged.rows}
    staged.dossier("C1-2", received="2025-12-10", status=4, batch="b2")
    staged.write()
    from transforms.core import build_core

    build_core(staged.wh, staged.agencies)
    build_marts(staged.wh, date(2025, 12, 31), periods=changed_periods([date(2025, 12, 10)], date(2025, 12, 31)))
    incremental = {m: f.read_bytes() for m, f in files.items()}
    assert staged.kpi("C9", "2025-12", "on_time_rate")[1] == 2  # both overdue, both counted
    build_marts(staged.wh, date(2025, 12, 31))
    assert {m: f.read_bytes() for m, f in files.items()} == incremental
