"""The marts' one publish and the plan judged against it: the three marts move together with what they were built
from, and "nothing new" is decided against the published marts, never against core alone (a run killed between
core and the marts left core ahead of them: the next plan rebuilds every period and gets what a clean night
gets)."""

from __future__ import annotations

import os
from datetime import date

from nights_helpers import AS_OF, MARTS, first_night, second_night, snapshot
from transforms import core as C
from transforms import plan as P
from transforms.marts import build_marts, marts_as_of
from warehouse import generations


def _plan(st, new=(), **kw):
    return P.plan_rebuild(st.wh, list(new), AS_OF, agencies_digest=P.file_digest(st.agencies), **kw)


def _night(st, p):
    """What flows.build._build does with a plan."""
    if p.mode == "full" and p.core_full:
        C.build_core(st.wh, st.agencies)
    else:
        p = p.after_core(C.update_core(st.wh, st.agencies))
    build_marts(st.wh, AS_OF, periods=p.periods(AS_OF))
    return p


def _clean_second_night(tmp_path, staged_type):
    """The marts a clean (uninterrupted) second night gives, in a warehouse of its own (``staged_type``:
    tests/unit/conftest.py's ``Staged``, taken from the fixture: ``from conftest import`` finds whichever conftest was
    loaded last)."""
    (tmp_path / "clean").mkdir()
    st = staged_type(tmp_path / "clean")
    first_night(st)
    _night(st, _plan(st))
    second_night(st)
    p = _night(st, _plan(st))
    assert p.mode == "incremental"
    return snapshot(st.wh, MARTS)


def test_first_publish_records_what_the_marts_were_built_from(staged):
    first_night(staged)
    p = _plan(staged)
    assert p.mode == "full" and not p.core_full and "no published marts" in p.reason
    _night(staged, p)
    m = generations.published_manifest(staged.wh)
    assert m["tables"] == sorted(MARTS)
    assert m["rows"] == {t: n for t, n in m["rows"].items()} and set(m["rows"]) == set(MARTS)
    built = m["built_from"]
    assert built["as_of"] == AS_OF.isoformat() and marts_as_of(staged.wh) == AS_OF
    assert built["core"] == {k: v for k, v in C.read_core_meta(staged.wh).items() if k != "state"}
    assert built["core"]["staged"]["stg_one_stop__dossiers"] == ["b1"]
    assert built["targets_sha256"]
    assert _plan(staged).mode == "skip"


def test_nothing_new_publishes_nothing(staged):
    first_night(staged)
    _night(staged, _plan(staged))
    gen = generations.current_generation(staged.wh)
    before = {t: (staged.wh / t / "data.parquet").stat().st_mtime_ns for t in MARTS}
    build_marts(staged.wh, AS_OF)  # same core, same as_of: same marts, same record
    assert generations.current_generation(staged.wh) == gen
    assert {t: (staged.wh / t / "data.parquet").stat().st_mtime_ns for t in MARTS} == before


def test_a_run_killed_between_core_and_marts_is_finished_by_the_next_one(staged, tmp_path):
    clean = _clean_second_night(tmp_path, type(staged))
    first_night(staged)
    _night(staged, _plan(staged))
    night1 = snapshot(staged.wh, MARTS)
    second_night(staged)
    assert _plan(staged).mode == "incremental"
    C.update_core(staged.wh, staged.agencies)  # ... and the run is killed here: the marts are not published
    assert snapshot(staged.wh, MARTS) == night1  # readers still see the first night's marts, all three
    # judged against core alone there is "nothing new" (the issue: every later run skipped, marts wrong for good)
    assert not any(C.new_staged_batches(staged.wh).values())
    p = _plan(staged)
    assert p.mode == "full" and not p.core_full and "core was updated after the published marts" in p.reason
    _night(staged, p)
    assert snapshot(staged.wh, MARTS) == clean
    assert _plan(staged).mode == "skip"


def test_an_interrupted_core_build_rebuilds_core_then_every_period(staged, tmp_path):
    clean = _clean_second_night(tmp_path, type(staged))
    first_night(staged)
    _night(staged, _plan(staged))
    second_night(staged)
    C._set_meta_state(staged.wh, "swapping")  # killed while core_dossiers' month files were being swapped
    p = _plan(staged)
    assert p.mode == "full" and "did not finish" in p.reason
    _night(staged, p)
    assert snapshot(staged.wh, MARTS) == clean


def test_targets_or_days_off_changed_rebuild_every_period(staged, tmp_path):
    first_night(staged)
    _night(staged, _plan(staged))
    targets = tmp_path / "targets.csv"
    targets.write_text("year,agency_code,kpi_code,target\n2025,,on_time_rate,0.5\n", encoding="utf-8")
    p = _plan(staged, targets_csv=targets)
    assert p.mode == "full" and "targets.csv" in p.reason and not p.core_full
    days_off = tmp_path / "days_off.csv"
    days_off.write_text("date,reason\n2025-12-01,test\n", encoding="utf-8")
    p = _plan(staged, extra_days_off=days_off)
    assert p.mode == "full" and "days-off" in p.reason


def test_unchanged_marts_move_to_the_new_generation_as_links(staged):
    first_night(staged)
    _night(staged, _plan(staged))
    files = {t: (staged.wh / t / "data.parquet").resolve() for t in MARTS}
    gen = generations.current_generation(staged.wh)
    # a batch that changes no mart (a payment of an unknown dossier, dated before every period) still moves what
    # the marts were built from: a new generation, its files the same inodes
    staged.rows = {k: [] for k in staged.rows}
    staged.add("payments", batch="b9", payment_id="p9", dossier_id="nobody", amount_vnd=1, paid_at="2019-01-01",
               status="success")
    staged.write()
    p = _night(staged, _plan(staged, [("dvc_portal", "payments", "b9")]))
    assert p.mode == "incremental"
    assert generations.current_generation(staged.wh) != gen
    assert "b9" in generations.published_manifest(staged.wh)["built_from"]["core"]["staged"]["stg_dvc_portal__payments"]
    for t in MARTS:
        assert os.path.samefile(staged.wh / t / "data.parquet", files[t])
    assert _plan(staged).mode == "skip"
    assert date.fromisoformat(generations.published_manifest(staged.wh)["built_from"]["as_of"]) == AS_OF
