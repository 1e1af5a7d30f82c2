"""Each check of the gate fires on a crafted bad batch, and stays quiet on a clean one."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from types import SimpleNamespace

import duckdb
import pytest

from devkit.synth import DOSSIERS, write_dossier_batch
from transforms.quality.gate import check_batch

AS_OF = date(2025, 12, 31)
NO_GX = SimpleNamespace(dq_gx_sample_rows=0, freshness_lag_days=3)


def _failed(g):
    return {r.name: r for r in g.results if not r.success}


def _history(wh, n=4, rows=500):
    """n clean daily batches ending the day before AS_OF, ingested in order."""
    ids = []
    for k in range(n):
        end = AS_OF - timedelta(days=n - k)
        ids.append(write_dossier_batch(wh, rows, end=end, seed=100 + k,
                                       ingested=datetime.combine(end, datetime.min.time()) + timedelta(hours=25)))
    return ids


def test_clean_batch_passes(tmp_path):
    b = write_dossier_batch(tmp_path, 1000, end=AS_OF)
    g = check_batch(tmp_path, DOSSIERS, b, settings=NO_GX, as_of=AS_OF)
    assert g.passed and not g.criticals and not g.warnings, [r.message for r in g.criticals + g.warnings]
    assert g.rows == 1000
    names = {r.name for r in g.results}
    assert {"not_null:dossier_id", "unique_version:dossier_id+updated_at", "code_in_list:status",
            "date_order:finished_at>=received_at", "row_count", "freshness"} <= names


def test_missing_column_is_critical_and_schema_drift(tmp_path):
    _history(tmp_path, n=1)
    b = write_dossier_batch(tmp_path, 300, end=AS_OF, seed=9, drop_columns=("has_e_result",))
    g = check_batch(tmp_path, DOSSIERS, b, settings=NO_GX, as_of=AS_OF)
    f = _failed(g)
    assert not g.passed
    assert f["column_present:has_e_result"].severity == "critical"
    assert "has_e_result" in f["column_present:has_e_result"].message
    assert f["schema_drift:columns"].observed["missing"] == ["has_e_result"]


def test_type_change_is_drift(tmp_path):
    _history(tmp_path, n=1)
    b = write_dossier_batch(tmp_path, 300, end=AS_OF, seed=9, overrides={"fee_vnd": "fee_vnd_text"}
                            if False else {"fee_vnd": "'10000'"})
    g = check_batch(tmp_path, DOSSIERS, b, settings=NO_GX, as_of=AS_OF)
    f = _failed(g)
    assert f["column_type:fee_vnd"].observed["observed_type"] == "string"
    assert "fee_vnd" in f["schema_drift:columns"].observed["type_changed"]


def test_date_order_broken(tmp_path):
    # finished before received in every 10th row (10% > the 1% the rule tolerates): those rows are set aside, and
    # 10% of the file set aside holds it
    b = write_dossier_batch(tmp_path, 1000, end=AS_OF, overrides={
        "finished_at": "CASE WHEN i % 10 = 0 THEN rec - INTERVAL 2 DAY END"})
    g = check_batch(tmp_path, DOSSIERS, b, settings=NO_GX, as_of=AS_OF)
    f = _failed(g)
    r = f["date_order:finished_at>=received_at"]
    assert r.severity == "warning" and r.observed["set_aside"] == 100
    assert r.unexpected_count == 100 and r.element_count == 100
    assert r.examples and r.examples[0].endswith("(row 1)")
    assert "finished_at>=received_at" in r.message and "100" in r.message and "export_" in r.message
    assert not g.passed and [c.name for c in g.criticals] == ["quarantined_share"]
    assert g.rows == 900 and g.set_aside["rows_quarantined"] == 100
    q = duckdb.sql(f"SELECT _rule, _column, count(*) FROM '{tmp_path}/quarantine_one_stop__dossiers/{b}.parquet' "
                   "GROUP BY ALL").fetchall()
    assert q == [("date_order:finished_at>=received_at", "Ngày kết thúc xử lý", 100)]


def test_date_order_a_few_rows_set_aside_the_file_passes(tmp_path):
    # one dossier finished before it was received (a clock error): that row is set aside, the file passes
    b = write_dossier_batch(tmp_path, 2000, end=AS_OF, overrides={
        "finished_at": "CASE WHEN i = 0 THEN rec - INTERVAL 2 DAY WHEN hash(i, 4) % 2 = 0 THEN rec END"})
    g = check_batch(tmp_path, DOSSIERS, b, settings=NO_GX, as_of=AS_OF)
    r = next(x for x in g.results if x.name == "date_order:finished_at>=received_at")
    assert not r.success and r.severity == "warning" and r.unexpected_count == 1 and r.observed["set_aside"] == 1
    assert g.passed and g.rows == 1999


def test_unknown_codes_and_null_keys(tmp_path):
    b = write_dossier_batch(tmp_path, 500, end=AS_OF, overrides={
        "status": "CASE WHEN i < 7 THEN 11 ELSE 2 END::BIGINT",
        "dossier_id": "CASE WHEN i = 3 THEN NULL ELSE 'H19.1-' || i::VARCHAR END"})
    g = check_batch(tmp_path, DOSSIERS, b, settings=NO_GX, as_of=AS_OF)
    f = _failed(g)
    assert f["code_in_list:status"].unexpected_count == 7
    assert f["not_null:dossier_id"].unexpected_count == 1
    assert f["not_null:dossier_id"].examples == ["(empty id) (row 4)"]
    # 7 of 500 rows (1.4%) set aside, each once, under the first rule it breaks (row 4 breaks both); the rest of
    # the file passes
    assert g.passed and g.rows == 493 and g.set_aside["by_rule"] == {"not_null:dossier_id": 1,
                                                                      "code_in_list:status": 6}
    share = f["quarantined_share"]
    assert share.severity == "warning" and (share.unexpected_count, share.element_count) == (7, 500)


def test_duplicate_versions(tmp_path):
    b = write_dossier_batch(tmp_path, 200, end=AS_OF, overrides={
        "dossier_id": "'H19.1-' || (i % 150)::VARCHAR", "updated_at": "TIMESTAMP '2025-12-30 10:00:00'"})
    g = check_batch(tmp_path, DOSSIERS, b, settings=NO_GX, as_of=AS_OF)
    r = _failed(g)["unique_version:dossier_id+updated_at"]
    assert r.unexpected_count == 100 and r.observed["duplicate_keys"] == 50
    # the earlier row of each pair is set aside (50 of 200: the file is held), the later one kept
    assert r.observed["set_aside"] == 50 and not g.passed
    kept = duckdb.sql(f"SELECT min(_source_row), count(*) FROM '{tmp_path}/stg_one_stop__dossiers/{b}.parquet'"
                      ).fetchall()
    assert kept == [(51, 150)]


def test_received_at_required_unless_status_1_or_3(tmp_path):
    b = write_dossier_batch(tmp_path, 100, end=AS_OF, overrides={
        "received_at": "CASE WHEN i < 10 THEN NULL ELSE rec END",
        "status": "CASE WHEN i < 5 THEN 1 ELSE 4 END::BIGINT"})
    g = check_batch(tmp_path, DOSSIERS, b, settings=NO_GX, as_of=AS_OF)
    assert _failed(g)["not_null:received_at"].unexpected_count == 5


def test_stale_export_warns(tmp_path):
    b = write_dossier_batch(tmp_path, 300, end=AS_OF - timedelta(days=10))
    g = check_batch(tmp_path, DOSSIERS, b, settings=NO_GX, as_of=AS_OF)
    r = _failed(g)["freshness"]
    assert g.passed and r.severity == "warning" and r.observed["lag_days"] == 10
    fresh = check_batch(tmp_path, DOSSIERS, b, settings=SimpleNamespace(dq_gx_sample_rows=0,
                                                                        freshness_lag_days=15), as_of=AS_OF)
    assert "freshness" not in _failed(fresh)


def test_volume_collapse_and_spike_per_agency(tmp_path):
    _history(tmp_path, n=4, rows=500)   # 5 agencies, ~100 rows a day each
    # agency H19.26290 sends nothing, the others as usual
    b = write_dossier_batch(tmp_path, 500, end=AS_OF, seed=7,
                            overrides={"agency_code": "'H19.' || (26291 + (hash(i, 7) % 4))::VARCHAR"})
    g = check_batch(tmp_path, DOSSIERS, b, settings=NO_GX, as_of=AS_OF)
    f = _failed(g)
    assert "volume:H19.26290" in f and f["volume:H19.26290"].observed["direction"] == "low"
    assert f["volume:H19.26290"].agency_code == "H19.26290" and f["volume:H19.26290"].unexpected_count == 0
    assert not [n for n in f if n.startswith("volume:") and n != "volume:H19.26290"]
    assert g.passed  # a warning, not a gate failure


def test_volume_spike(tmp_path):
    _history(tmp_path, n=4, rows=500)
    b = write_dossier_batch(tmp_path, 5000, end=AS_OF, seed=8)
    g = check_batch(tmp_path, DOSSIERS, b, settings=NO_GX, as_of=AS_OF)
    vol = [r for r in g.warnings if r.name.startswith("volume:")]
    assert len(vol) == 5 and all(r.observed["direction"] == "high" for r in vol)


def test_null_share_jump_and_emptied_column(tmp_path):
    _history(tmp_path, n=1)
    b = write_dossier_batch(tmp_path, 500, end=AS_OF, seed=9, overrides={
        "has_digitized_components": "CASE WHEN i % 2 = 0 THEN NULL ELSE TRUE END",
        "fee_vnd": "NULL::BIGINT"})
    g = check_batch(tmp_path, DOSSIERS, b, settings=NO_GX, as_of=AS_OF)
    f = _failed(g)
    assert "has_digitized_components" in f["null_share_jump"].observed["jumps"]
    assert f["schema_drift:new_or_emptied"].observed["emptied"] == ["fee_vnd"]


def test_unknown_procedure_code_is_a_warning(tmp_path):
    cat = tmp_path / "stg_dvc_portal__procedures"
    cat.mkdir()
    duckdb.sql(f"COPY (SELECT '1.00' || lpad((1000 + i)::VARCHAR, 4, '0') AS procedure_code FROM range(39) t(i)) "
               f"TO '{cat}/b1.parquet'")
    b = write_dossier_batch(tmp_path, 400, end=AS_OF)
    g = check_batch(tmp_path, DOSSIERS, b, settings=NO_GX, as_of=AS_OF)
    r = _failed(g)["procedure_known:procedure_code"]
    assert r.severity == "warning" and r.unexpected_count > 0 and g.passed


def test_results_go_to_the_ledger(tmp_path):
    from warehouse.ledger import Ledger

    led = Ledger(f"sqlite:///{tmp_path / 'l.sqlite'}")
    b = write_dossier_batch(tmp_path, 300, end=AS_OF, overrides={"fee_vnd": "-5::BIGINT"})
    g = check_batch(tmp_path, DOSSIERS, b, ledger=led, run_id="r1", settings=NO_GX, as_of=AS_OF)
    rows = led.dq_history(run_id="r1")
    assert len(rows) == len(g.results)
    bad = [r for r in rows if r["check_name"] == "min:fee_vnd"][0]
    assert not bad["success"] and bad["unexpected_count"] == 300 and bad["source"] == "one_stop"
    assert len(json.loads(bad["examples_json"])) == 5
    led.dispose()


def test_gx_checkpoint_agrees_with_duckdb(tmp_path):
    b = write_dossier_batch(tmp_path, 3000, end=AS_OF, overrides={
        "status": "CASE WHEN i % 100 = 0 THEN 12 ELSE 4 END::BIGINT"})
    # without its raw file the 30 bad rows cannot be set aside: GX sees them on the sample, as DuckDB counted
    g = check_batch(tmp_path, DOSSIERS, b, settings=SimpleNamespace(dq_gx_sample_rows=500), as_of=AS_OF)
    (tmp_path / "raw_one_stop__dossiers" / f"{b}.parquet").unlink()
    kept = check_batch(tmp_path / "kept", DOSSIERS, write_dossier_batch(
        tmp_path / "kept", 3000, end=AS_OF, raw=False, overrides={
            "status": "CASE WHEN i % 100 = 0 THEN 12 ELSE 4 END::BIGINT"}),
        settings=SimpleNamespace(dq_gx_sample_rows=500), as_of=AS_OF)
    for gate_result in (g, kept):
        checked = [r for r in gate_result.results if "gx_sample" in r.observed]
        assert len(checked) > 20
        for r in checked:
            gx = r.observed["gx_sample"]
            assert gx["exception"] is None, (r.name, gx)
            assert gx["success"] == r.success, (r.name, gx, r.success)
    # set aside: GX checked the batch as it now is (clean), the rule reports what left it
    assert "gx_sample" not in _failed(g)["code_in_list:status"].observed and g.passed
    assert _failed(kept)["code_in_list:status"].observed["gx_sample"]["unexpected_count"] == 30
    assert "raw file" in _failed(kept)["code_in_list:status"].message and not kept.passed


def test_volume_ignores_an_agency_not_valid_in_the_batch_window(tmp_path):
    """An old commune that ended before this export's window (the 2025 merger) is not a volume collapse."""
    _history(tmp_path, n=4, rows=500)
    b = write_dossier_batch(tmp_path, 500, end=AS_OF, seed=7,
                            overrides={"agency_code": "'H19.' || (26291 + (hash(i, 7) % 4))::VARCHAR"})
    agencies = tmp_path / "agencies.csv"
    agencies.write_text("agency_code,agency_name,level,parent_code,valid_from,valid_to\n"
                        "H19.26290,Xã cũ,commune,,2023-01-01,2024-06-30\n", encoding="utf-8")
    s = SimpleNamespace(**vars(NO_GX), resolved_agencies_path=agencies)
    g = check_batch(tmp_path, DOSSIERS, b, settings=s, as_of=AS_OF)
    assert "volume:H19.26290" not in _failed(g)


def _freshness(g):
    return [r for r in g.results if r.name == "freshness"]


def test_freshness_is_the_sources_judged_on_its_latest_batch(tmp_path):
    """A first load of old exports (or an old export sent again) is not a stale source when newer data of the same
    source format is staged, and N stale historical files give one warning, on the latest-ingested batch, not N;
    another format's fresh export does not hide a stale one, nor does an updated_at in the future."""
    day = datetime(2026, 1, 1, 2)
    old = [write_dossier_batch(tmp_path, 200, end=AS_OF - timedelta(days=400 - 100 * k), seed=k,
                               ingested=day + timedelta(minutes=k)) for k in range(3)]
    # only old data staged: the earlier batches are not judged, the latest one is, on the source's newest record
    assert not [r for b in old[:2] for r in _freshness(check_batch(tmp_path, DOSSIERS, b, settings=NO_GX,
                                                                   as_of=AS_OF))]
    r = _failed(check_batch(tmp_path, DOSSIERS, old[2], settings=NO_GX, as_of=AS_OF))["freshness"]
    assert r.observed["lag_days"] == 200 and r.observed["earlier_batches"] == 2
    # a fresh export staged earlier in the same run: the old file ingested after it is not stale
    fresh = write_dossier_batch(tmp_path, 200, end=AS_OF, seed=8, ingested=day + timedelta(minutes=3))
    late_old = write_dossier_batch(tmp_path, 200, end=AS_OF - timedelta(days=500), seed=9,
                                   ingested=day + timedelta(minutes=4))
    assert not _freshness(check_batch(tmp_path, DOSSIERS, fresh, settings=NO_GX, as_of=AS_OF))
    (r,) = _freshness(check_batch(tmp_path, DOSSIERS, late_old, settings=NO_GX, as_of=AS_OF))
    assert r.success and r.observed["lag_days"] == 0 and r.observed["batch_max_updated_at"].startswith("2024-")
    # the other system (national sync) is fresh; a flat export stuck two months back is still stale
    other = tmp_path / "other"
    write_dossier_batch(other, 200, end=AS_OF, seed=10, fmt="national_sync", ingested=day)
    stuck = write_dossier_batch(other, 200, end=AS_OF - timedelta(days=60), seed=11, ingested=day + timedelta(hours=1))
    r = _failed(check_batch(other, DOSSIERS, stuck, settings=NO_GX, as_of=AS_OF))["freshness"]
    assert r.observed["lag_days"] == 60 and r.observed["format"] == "flat_export"
    # one clock error in the past (a row updated in 2052) does not keep a stale source fresh
    clock = tmp_path / "clock"
    write_dossier_batch(clock, 200, end=AS_OF - timedelta(days=300), seed=12, ingested=day,
                        overrides={"updated_at": "CASE WHEN i = 0 THEN TIMESTAMP '2052-01-10' ELSE upd END"})
    stale = write_dossier_batch(clock, 200, end=AS_OF - timedelta(days=90), seed=13, ingested=day + timedelta(hours=1))
    r = _failed(check_batch(clock, DOSSIERS, stale, settings=NO_GX, as_of=AS_OF))["freshness"]
    assert r.observed["lag_days"] == 90


def test_an_empty_batch_is_a_row_count_warning_not_a_crash(tmp_path):
    """A file whose every row was quarantined stages an empty batch: its row rules count nothing (DuckDB 2.0's
    count_if over no rows is NULL, which crashed the gate), and the row count says what happened."""
    _history(tmp_path, n=2)
    b = write_dossier_batch(tmp_path, 0, end=AS_OF)
    g = check_batch(tmp_path, DOSSIERS, b, settings=NO_GX, as_of=AS_OF)
    assert g.passed and g.rows == 0
    w = {r.name: r.message for r in g.warnings}
    assert set(w) == {"row_count"} and "0 rows" in w["row_count"]  # not also "stale": it has no data at all
    assert all(r.unexpected_count == 0 for r in g.results if r.kind == "row_rule")


class _Ledger:
    """Records what the gate writes; ``fail`` makes the write fail like a locked database."""

    def __init__(self, fail: bool = False):
        self.rows, self.fail = [], fail

    def record_dq(self, rows):
        if self.fail:
            raise RuntimeError("database is locked")
        self.rows += rows

    def update_batch(self, batch_id, **values):
        self.counts = values


def test_gate_batch_records_the_verdict_holds_a_crash_and_raises_machine_trouble(tmp_path, monkeypatch):
    from transforms.quality import gate

    b = write_dossier_batch(tmp_path, 300, end=AS_OF)
    led = _Ledger()
    g = gate.gate_batch(tmp_path, "one_stop", "dossiers", b, ledger=led, run_id="r1", settings=NO_GX, as_of=AS_OF)
    assert g.passed and len(led.rows) == len(g.results) and {r["run_id"] for r in led.rows} == {"r1"}
    # a failing ledger write is not a verdict on the batch: it is raised, the batch stays as it was
    with pytest.raises(RuntimeError, match="locked"):
        gate.gate_batch(tmp_path, "one_stop", "dossiers", b, ledger=_Ledger(fail=True), run_id="r2", settings=NO_GX, as_of=AS_OF)
    # checks that crash on the batch: held (critical gate_error), recorded
    monkeypatch.setattr(gate, "check_batch", lambda *a, **k: (_ for _ in ()).throw(KeyError("no such column")))
    led = _Ledger()
    g = gate.gate_batch(tmp_path, "one_stop", "dossiers", b, ledger=led, run_id="r3", settings=NO_GX, as_of=AS_OF)
    assert not g.passed and [r.name for r in g.criticals] == ["gate_error"] and "no such column" in g.summary_line()
    assert [(r["check_name"], r["source"], r["entity"]) for r in led.rows] == [("gate_error", "one_stop", "dossiers")]
    # the machine's trouble (disk, memory) is raised: the batch stays staged and is gated again next run
    for exc in (OSError("disk full"), MemoryError()):
        monkeypatch.setattr(gate, "check_batch", lambda *a, e=exc, **k: (_ for _ in ()).throw(e))
        with pytest.raises(type(exc)):
            gate.gate_batch(tmp_path, "one_stop", "dossiers", b, ledger=_Ledger(), run_id="r4", settings=NO_GX, as_of=AS_OF)


def test_a_staged_file_the_checks_cannot_read_is_held_not_raised(tmp_path):
    """A damaged staged file: gate_error, recorded; its ledger counts stay as staging left them."""
    from transforms.quality import gate

    b = write_dossier_batch(tmp_path, 50, end=AS_OF)
    (tmp_path / DOSSIERS / f"{b}.parquet").write_bytes(b"PAR1 not a parquet file PAR1")
    led = _Ledger()
    g = gate.gate_batch(tmp_path, "one_stop", "dossiers", b, ledger=led, run_id="r1", settings=NO_GX, as_of=AS_OF)
    assert [r.name for r in g.criticals] == ["gate_error"] and not hasattr(led, "counts")
