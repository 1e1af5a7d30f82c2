"""Incremental core (transforms.core.update_core): merging a night's batches gives exactly the rows a full rebuild
gives, rewrites only the month files concerned, falls back to a full rebuild when it must, and the marts rebuilt
for the planned periods equal a full mart build."""

from __future__ import annotations

from datetime import date, datetime

from nights_helpers import AS_OF, MARTS, first_night, second_night, snapshot
from transforms import core as C
from transforms.marts import build_marts
from transforms.plan import RebuildPlan

CORE = ["core_agencies", "core_procedures", "core_dossiers", "core_payments", "core_feedback", "core_ratings",
        "core_e_certifications"]
KEY = {"core_agencies": "agency_code", "core_procedures": "procedure_code, version_no",
       "core_dossiers": "dossier_id", "core_payments": "payment_id", "core_feedback": "feedback_id",
       "core_ratings": "rating_id", "core_e_certifications": "transaction_id"}


def test_update_core_equals_full_rebuild_and_marts_follow(staged):
    first_night(staged)
    C.build_core(staged.wh, staged.agencies)
    build_marts(staged.wh, AS_OF)
    files_before = {f.name: f.stat().st_mtime_ns for f in (staged.wh / "core_dossiers").iterdir()}
    assert all(n.startswith("p") for n in files_before)  # one file per month of the dossiers' first date

    # nothing new: nothing rewritten
    up = C.update_core(staged.wh, staged.agencies)
    assert not up.full and up.first_date is None and up.counts["core_dossiers"] == 5
    assert {f.name: f.stat().st_mtime_ns for f in (staged.wh / "core_dossiers").iterdir()} == files_before

    second_night(staged)
    up = C.update_core(staged.wh, staged.agencies)
    assert not up.full, up.reason
    # the moved received date (2025-06-20 -> 2025-05-20) reaches back to the old version's month too
    assert up.first_date == date(2025, 5, 20)
    assert up.touched["core_dossiers"] == 3  # C1-2, C2-1, C9-2 changed; C1-1 (older version), C9-1 (feedback
    # fb1 answered, its link unchanged) did not
    after = {f.name: f.stat().st_mtime_ns for f in (staged.wh / "core_dossiers").iterdir()}
    assert after["p202305-0.parquet"] == files_before["p202305-0.parquet"]  # S1-1's month left alone
    assert after["p202403-0.parquet"] == files_before["p202403-0.parquet"]  # C1-1: an older version, no change
    assert "p202506-0.parquet" not in after and "p202505-0.parquet" in after  # C2-1 moved month
    incremental = snapshot(staged.wh, CORE)

    plan = RebuildPlan("incremental", "test", first_date=date(2025, 12, 18)).after_core(up)
    assert plan.first_date == date(2025, 5, 20)
    build_marts(staged.wh, AS_OF, periods=plan.periods(AS_OF))
    marts_incremental = snapshot(staged.wh, MARTS)

    counts = C.build_core(staged.wh, staged.agencies)
    assert snapshot(staged.wh, CORE) == incremental
    assert counts["core_dossiers"] == up.counts["core_dossiers"] == 6
    build_marts(staged.wh, AS_OF)
    assert snapshot(staged.wh, MARTS) == marts_incremental
    # the merge did change what it had to
    row = staged.sql("SELECT status, end_date, first_successful_payment_date FROM core_dossiers "
                     "WHERE dossier_id = 'C1-2'")[0]
    assert row == (10, date(2025, 12, 19), None)
    assert staged.sql("SELECT first_successful_payment_date FROM core_dossiers WHERE dossier_id = 'C2-1'") == [
        (date(2025, 12, 19),)]
    assert staged.sql("SELECT status FROM core_dossiers WHERE dossier_id = 'C1-1'") == [(4,)]


def test_update_core_falls_back_to_full_when_it_must(staged):
    first_night(staged)
    C.build_core(staged.wh, staged.agencies)
    # a new catalogue version: every dossier's due date / field may change
    staged.rows = {k: [] for k in staged.rows}
    staged.procedure("1.000001", updated="2024-01-01", legal_days=10, batch="b3")
    staged.write()
    up = C.update_core(staged.wh, staged.agencies)
    assert up.full and "procedure" in up.reason
    assert staged.sql("SELECT due_date FROM core_dossiers WHERE dossier_id = 'C1-1'") == [(date(2024, 3, 18),)]
    assert RebuildPlan("incremental", "x", first_date=date(2025, 12, 1)).after_core(up).mode == "full"
    # agencies.csv edited
    staged.agencies.write_text(staged.agencies.read_text() + "X1,Xã X1,commune,D1,2023-01-01,,,test\n")
    assert C.update_core(staged.wh, staged.agencies).full
    # a batch built before has gone (held by the quality gate after the fact)
    (staged.wh / "stg_dvc_portal__procedures" / "b3.parquet").unlink()
    up = C.update_core(staged.wh, staged.agencies)
    assert up.full and "gone" in up.reason
    # an interrupted swap of the month files
    C._set_meta_state(staged.wh, "swapping")
    assert "did not finish" in C.incremental_blocker(staged.wh, staged.agencies)


def test_full_build_with_enum_columns_writes_what_strings_would(staged, monkeypatch):
    """A full build types the low-cardinality text columns as ENUMs (transforms.core.dossier_enums) only to write
    faster: every core table holds the same rows and Parquet types as a build with plain strings, on dossiers of
    both formats, an empty field code (the catalogue's is taken), a procedure missing from the catalogue, an
    agency missing from agencies.csv, a NULL agency and a tie decided by the greater batch id."""
    first_night(staged)
    second_night(staged)
    staged.rows = {k: [] for k in staged.rows}
    tie = {"updated_at": "2025-12-01", "_ingested_at": datetime(2026, 1, 3)}
    staged.dossier("C1-7", received="2025-12-02", status=4, field_code="", field_name="", batch="b10", **tie)
    staged.dossier("C1-7", received="2025-12-02", status=9, finished_at="2025-12-03", batch="b9", **tie)
    staged.dossier("X1-1", received="2025-12-04", status=4, procedure_code="9.999999", fmt="national_sync",
                   supplement_requests=[{"requested_at": datetime(2025, 12, 5), "received_at": None}])
    staged.dossier("C2-5", received="2025-12-06", status=4, agency_code=None, field_code="F9", field_name="Riêng")
    staged.write()
    C.build_core(staged.wh, staged.agencies)
    with_enums = snapshot(staged.wh, CORE)
    monkeypatch.setattr(C.dossiers, "dossier_enums", lambda con, src: {})
    C.build_core(staged.wh, staged.agencies)
    assert snapshot(staged.wh, CORE) == with_enums
    rows = {r[0]: r[1:] for r in staged.sql("SELECT dossier_id, status, field_code, source_format, supplement_rule, "
                                            "owner_agency_code FROM core_dossiers")}
    assert rows["C1-7"][:2] == (9, "F1")  # b9 > b10 as strings: the batch-id tie goes to b9's version
    assert rows["X1-1"][2:4] == ("national_sync", "list") and rows["X1-1"][4] == "X1"
    assert rows["C2-5"][4] is None and rows["C2-5"][1] == "F9"
