"""The KPI registry: formulas parse only over known counters, the marts and explain take their formulas from it,
and explain's record-by-record conditions (derived from the formulas) count what the marts count for every
explainable KPI, indicator and form 06 column."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import yaml

from transforms import marts
from transforms.kpis import registry as reg


def test_formulas_are_sums_and_differences_of_known_counters():
    assert reg.sql("resolved_early + resolved_on_time + in_progress_within_time") == "c_early + c_on_time + c_within"
    assert reg.record_condition("population - dissatisfied").startswith(
        "(true) AND NOT (timeliness IN ('late', 'overdue')")
    assert reg.record_condition("procedures_published") is None  # not listed record by record
    for bad, says in [("on_time", "unknown counter 'on_time'"), ("population dissatisfied", r"joined by \+ and -"),
                      ("- population", r"joined by \+ and -"), ("", "empty formula")]:
        with pytest.raises(ValueError, match=says):
            reg.terms(bad)


def test_marts_and_explain_read_the_registry():
    assert [k[0] for k in marts.KPIS] == [k.code for k in reg.KPIS]
    assert dict((k[0], k[1]) for k in marts.KPIS)["on_time_rate"] == "c_early + c_on_time + c_within"
    assert [(i[0], i[4]) for i in marts.INDICATORS] == [
        ("2.1", "20"), ("3.3", "NULL"), ("3.6", "NULL"), ("4.1", "6"), ("4.2", "4"), ("4.3", "2"), ("5.2", "6"),
        ("5.3", "6"), ("5.4", "6")]
    # an indicator with the ratio of a plan KPI shares its formula, never restates it
    for i in reg.INDICATORS:
        if i.same_as:
            assert (i.numerator, i.denominator) == (reg.KPI[i.same_as].numerator, reg.KPI[i.same_as].denominator)
    # explain lists every dossier and feedback measure; procedure and e-certification measures it cannot
    assert set(marts.EXPLAIN) == ({k.code for k in reg.KPIS if not k.code.startswith(("procedures_", "e_cert"))}
                                  | set(reg.INDICATOR) | set(reg.FORM06_COLUMN))
    assert marts.EXPLAIN["on_time_rate"] == marts.EXPLAIN["2.1"]


def test_form06_labels_match_the_contract():
    spec = yaml.safe_load((Path(reg.__file__).parents[2] / "expectations" / "tables"
                           / f"{marts.MART_F06}.yaml").read_text(encoding="utf-8"))
    vi = {c["name"]: c["vi"] for c in spec["columns"]}
    assert [f.code for f in reg.FORM06] == [c for c in vi if c.startswith("c")]
    assert all(vi[f.code] == f.vi for f in reg.FORM06)


def test_explain_counts_what_the_mart_counts_for_every_measure(staged):
    staged.procedure(code="1.000001", is_paper_result=None)
    staged.procedure(code="1.000002", is_paper_result=False)
    staged.dossier("C1-1", channel=2, has_digitized_components=True, reused_digitized_data=True, status=10,
                   finished_at="2024-03-05", has_e_result=True, fee_vnd=50000, due_at="2024-03-08")
    staged.dossier("C1-2", status=9, finished_at="2024-03-20", has_digitized_components=True, fee_vnd=20000,
                   due_at="2024-03-08")
    staged.dossier("C1-3", procedure_code="1.000002", status=10, finished_at="2024-02-05", channel=2,
                   received="2024-01-10")
    staged.dossier("C2-1", status=4, received="2023-12-20", due_at="2024-01-05")
    staged.dossier("C2-2", status=4, channel=2, received="2024-02-01", due_at="2024-12-31")
    staged.add("payments", payment_id="P1", dossier_id="C1-1", amount_vnd=50000, paid_at="2024-03-04",
               status="success")
    staged.add("ratings", rating_id="R1", dossier_id="C1-3", rating=1, rated_at="2024-02-06")
    staged.add("feedback", feedback_id="F1", agency_code="C1", received_at="2024-03-05", likes=0, dislikes=2)
    staged.add("feedback", feedback_id="F2", agency_code="C2", received_at="2024-01-05",
               answered_at="2024-01-08")
    staged.build()
    checked = 0
    for code in marts.EXPLAIN:
        t = marts.explain(staged.wh, code, "P", "2024-Q1")
        got = (sum(bool(v) for v in t.column("in_numerator").to_pylist()), t.num_rows)
        if code in reg.KPI:
            want = staged.kpi("P", "2024-Q1", code)[:2]
        elif code in reg.INDICATOR:
            want = staged.i766("P", "2024-Q1", code)[:2]
        else:
            num, den = staged.sql(f"SELECT sum({code}), sum(c03_received_total) FROM mart_tt01_form06__agency_period"
                                  " WHERE agency_code = 'P' AND period = '2024-Q1' AND period_basis = 'calendar'")[0]
            want = (num, den)
        assert got == want, code
        checked += got[1] > 0
    assert checked == len(marts.EXPLAIN)  # no measure passes for want of records


def test_unknown_publication_state_is_in_the_denominator_not_published(staged):  # rule C2
    staged.procedure(code="1.000001", publication_decision_date=date(2023, 1, 1), publication_state=None,
                     has_sample_dossier=True)
    staged.procedure(code="1.000002", publication_decision_date=date(2023, 1, 1), publication_state="published")
    staged.build()
    assert staged.kpi("C1", "2024-03", "procedures_published_rate")[:2] == (1, 2)
    assert staged.kpi("C1", "2024-03", "procedures_sample_dossier_rate")[:2] == (1, 2)
