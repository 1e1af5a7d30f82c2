"""Row problems hold rows, file problems hold files: the gate sets aside the rows breaking a critical row rule
(raw text to quarantine, staged file rewritten, ledger counts updated) before its verdict, and holds a file only
when too much of it was set aside; a release never lets a bad row in. Batches staged by the real staging SQL
from raw files in the warehouse, as ingest leaves them."""

from __future__ import annotations

import json
import shutil
import unicodedata
from datetime import date
from types import SimpleNamespace

import duckdb
import pyarrow.parquet as pq
import pytest

from gate_helpers import dossier, stage_rows
from transforms import ingest
from transforms.quality.gate import check_batch, gate_batch
from warehouse.ledger import Ledger

AS_OF = date(2025, 12, 31)
NO_GX = SimpleNamespace(dq_gx_sample_rows=0, freshness_lag_days=3)
DOSSIERS = "stg_one_stop__dossiers"
BID = "b20251231T010000-00000001"
PASTED = "Nguyễn Văn Bình 0987654321"  # a name and a phone number pasted into the procedure-code column


def _rows(wh, layer: str, bid: str = BID, held: bool = False) -> list[dict]:
    base = wh / "_held" if held else wh
    path = base / f"{layer}_one_stop__dossiers" / f"{bid}.parquet"
    return pq.read_table(path).to_pylist() if path.exists() else []


def _ledger(wh, stage, bid: str = BID) -> Ledger:
    led = Ledger(f"sqlite:///{wh / '_ledger.sqlite'}")
    led.start_run("r1", AS_OF, "inbox")
    led.begin_batch(bid, "r1", path="one_stop/dossiers/hoso_2025_11.csv", source="one_stop", entity="dossiers")
    led.finish_batch(bid, "staged", rows_raw=stage.rows_raw, rows_staged=stage.rows_staged,
                     rows_quarantined=stage.rows_quarantined)
    return led


def _messages(g) -> str:
    return json.dumps([r.to_dict() for r in g.results], ensure_ascii=False, default=str)


def test_one_malformed_procedure_code_is_set_aside_and_the_rest_of_the_file_passes(tmp_path):
    """The issue's case: one procedure code holding a name and a phone held 1,487 good dossiers."""
    rows = [dossier(i) for i in range(1488)]
    rows[700] = dossier(700, procedure_code=PASTED)
    stage = stage_rows(tmp_path, "dossiers", rows)
    assert (stage.rows_staged, stage.rows_quarantined) == (1488, 0)  # staging has no pattern rule: the gate's
    led = _ledger(tmp_path, stage)
    g = gate_batch(tmp_path, "one_stop", "dossiers", BID, ledger=led, run_id="r1", settings=NO_GX, as_of=AS_OF)
    assert g.passed, g.summary_line()
    assert g.rows == 1487 and g.set_aside == {"moved": 1, "by_rule": {"pattern:procedure_code": 1}, "rows_raw": 1488,
                                              "rows_staged": 1487, "rows_quarantined": 1}
    (q,) = _rows(tmp_path, "quarantine")
    assert (q["_rule"], q["_column"], q["_value"], q["_source_row"]) == ("pattern:procedure_code", "Mã TTHC",
                                                                         PASTED, 701)
    assert q["applicant_name"] == "Nguyễn Văn An" and q["_message"].startswith("does not have the expected form")
    staged = _rows(tmp_path, "stg")
    assert len(staged) == 1487 and PASTED not in {r["procedure_code"] for r in staged}
    w = {r.name: r for r in g.warnings}
    assert w["pattern:procedure_code"].observed["set_aside"] == 1 and "701" in w["pattern:procedure_code"].message
    assert "column Mã TTHC, line 702;" in w["pattern:procedure_code"].message  # as the file spells it, where
    assert w["quarantined_share"].message == (
        "file hoso_2025_11.csv: 1 of 1,488 rows (0.1%) set aside: pattern:procedure_code 1 (column Mã TTHC; line "
        "702); "
        "within the 5% allowed for dossiers, the other rows are used: ask the unit to correct these rows in its "
        "next export")
    assert "0987654321" not in _messages(g) and "Bình" not in _messages(g)  # no personal data in any message
    # the ledger follows the files: raw = staged + quarantined
    b = next(x for x in led.batches_of_run("r1") if x["batch_id"] == BID)
    assert (b["rows_raw"], b["rows_staged"], b["rows_quarantined"]) == (1488, 1487, 1)
    led.check_balance("r1")
    led.dispose()


def test_repeated_versions_keep_the_later_row_of_the_file(tmp_path):
    """Three dossiers repeated with the same Ngày cập nhật but another status: the later row of the file wins, the
    earlier one is set aside as duplicate_version; the 1,494 others pass."""
    rows = [dossier(i) for i in range(1494)]
    for k, i in enumerate((10, 500, 1200)):
        rows.append(dossier(i, status="10", finished_at="07/11/2025 09:00:00"))
        rows[i]["status"] = "5"
    rows[1200]["procedure_code"] = "xx"  # this earlier copy also breaks the pattern: set aside once, for that
    stage_rows(tmp_path, "dossiers", rows)
    g = check_batch(tmp_path, DOSSIERS, BID, settings=NO_GX, as_of=AS_OF)
    assert g.passed and g.rows == 1494
    assert g.set_aside["by_rule"] == {"pattern:procedure_code": 1, "unique_version:dossier_id+updated_at": 2}
    q = {r["_source_row"]: (r["_rule"], r["_column"]) for r in _rows(tmp_path, "quarantine")}
    assert q == {11: ("duplicate_version", "Ngày cập nhật"), 501: ("duplicate_version", "Ngày cập nhật"),
                 1201: ("pattern:procedure_code", "Mã TTHC")}
    dup = next(r for r in _rows(tmp_path, "quarantine") if r["_source_row"] == 11)
    assert dup["_message"] == ("repeats the version (Mã hồ sơ, Ngày cập nhật) of data row 1495, later in the file, "
                               "which is kept")
    kept = {r["dossier_id"]: r for r in _rows(tmp_path, "stg") if r["_source_row"] > 1494}
    assert len(kept) == 3 and {r["status"] for r in kept.values()} == {10}
    r = next(x for x in g.warnings if x.name == "unique_version:dossier_id+updated_at")
    assert "later row of the file is kept" in r.message and "duplicate_version" in r.message


def test_a_status_outside_the_list_on_55_of_271_rows_holds_the_file_and_names_it(tmp_path):
    """Staging quarantined them (exit 0, no alert before): 20.3% of the file is above the 5% allowed."""
    rows = [dossier(i, status=("11" if i % 2 else "12") if i < 55 else "4") for i in range(271)]
    stage_rows(tmp_path, "dossiers", rows)
    g = check_batch(tmp_path, DOSSIERS, BID, settings=NO_GX, as_of=AS_OF)
    assert not g.passed and [r.name for r in g.criticals] == ["quarantined_share"]
    c = g.criticals[0]
    assert c.message == ("file hoso_2025_11.csv: 55 of 271 rows (20.3%) set aside: unknown_code 55 (column Trạng "
                         "thái, values 11, 12; lines 2, 3, 4, ...); above the 5% allowed for dossiers: ask the unit "
                         "to check the export")
    assert (c.unexpected_count, c.element_count, c.kind) == (55, 271, "batch_rule")
    assert "hoso_2025_11.csv" in g.summary_line() and "20.3%" in g.summary_line()


def test_a_file_whose_every_row_is_set_aside_is_held(tmp_path):
    """A file saved in Unicode NFD: every yes/no unreadable, 1,491 of 1,491 rows quarantined; it passed before."""
    nfd = unicodedata.normalize("NFD", "Có")
    rows = [dossier(i, has_e_result=nfd) for i in range(40)]
    stage = stage_rows(tmp_path, "dossiers", rows)
    assert (stage.rows_staged, stage.rows_quarantined) == (0, 40)
    g = check_batch(tmp_path, DOSSIERS, BID, settings=NO_GX, as_of=AS_OF)
    assert not g.passed and [r.name for r in g.criticals] == ["quarantined_share"]
    assert g.criticals[0].observed["every_row"] and g.criticals[0].message == (
        f"file hoso_2025_11.csv: every row (40) set aside: invalid_bool 40 (column Có kết quả điện tử, values {nfd}; "
        "lines 2, 3, 4, ...); "
        "nothing of this file can be used: ask the unit to check the export")


@pytest.mark.parametrize(("bad", "held"), [(1, False), (3, False), (4, True)])
def test_a_small_file_is_held_only_beyond_a_handful_of_rows(tmp_path, bad, held):
    """1 bad row of a 13-row file is 7.7%, a share that says nothing: up to quarantine_allowance_rows (3) set aside
    is a warning whatever the share; beyond it the share decides."""
    rows = [dossier(i, agency_code="H19.99999" if i < bad else "H19.26293") for i in range(13)]
    stage_rows(tmp_path, "dossiers", rows)
    g = check_batch(tmp_path, DOSSIERS, BID, settings=NO_GX, as_of=AS_OF)
    share = next(r for r in g.results if r.name == "quarantined_share")
    assert g.passed is not held and share.severity == ("critical" if held else "warning") and not share.success
    assert share.unexpected_count == bad and "unknown_agency" in share.message and "H19.99999" in share.message


def test_setting_aside_again_moves_nothing_more_and_never_repeats_a_row(tmp_path):
    """A second gate over the same batch, or one after an interruption between the quarantine write and the
    staged rewrite (the staged file still holds the row), leaves one quarantined copy of each row."""
    rows = [dossier(i) for i in range(60)]
    rows[5]["procedure_code"] = "1.2.3"
    stage_rows(tmp_path, "dossiers", rows)
    staged = tmp_path / "stg_one_stop__dossiers" / f"{BID}.parquet"
    before = tmp_path / "before.parquet"
    shutil.copy(staged, before)
    assert check_batch(tmp_path, DOSSIERS, BID, settings=NO_GX, as_of=AS_OF).set_aside["moved"] == 1
    again = check_batch(tmp_path, DOSSIERS, BID, settings=NO_GX, as_of=AS_OF)
    assert again.set_aside["moved"] == 0 and again.passed
    shutil.copy(before, staged)  # as if the run died after publishing the quarantine, before the staged rewrite
    resumed = check_batch(tmp_path, DOSSIERS, BID, settings=NO_GX, as_of=AS_OF)
    assert resumed.set_aside == {"moved": 1, "by_rule": {"pattern:procedure_code": 1}, "rows_raw": 60,
                                 "rows_staged": 59, "rows_quarantined": 1}
    assert [r["_source_row"] for r in _rows(tmp_path, "quarantine")] == [6]


def test_rows_staging_quarantined_stay_and_the_gates_join_them(tmp_path):
    rows = [dossier(i) for i in range(100)]
    rows[3]["received_at"] = "31/02/2025"  # staging: invalid_date
    rows[9]["procedure_code"] = "1.0010"   # gate: pattern
    stage_rows(tmp_path, "dossiers", rows)
    g = check_batch(tmp_path, DOSSIERS, BID, settings=NO_GX, as_of=AS_OF)
    q = [(r["_source_row"], r["_rule"]) for r in _rows(tmp_path, "quarantine")]
    assert q == [(4, "invalid_date"), (10, "pattern:procedure_code")]
    assert g.passed and g.set_aside["rows_raw"] == 100 == g.set_aside["rows_staged"] + len(q)
    share = next(r for r in g.results if r.name == "quarantined_share")
    assert share.unexpected_count == 2 and share.examples == ["invalid_date 1 (Ngày tiếp nhận)",
                                                              "pattern:procedure_code 1 (Mã TTHC)"]


def test_release_lets_the_clean_rows_in_and_never_a_bad_one(tmp_path):
    """20 of 200 rows with a name and a phone in Mã TTHC: held for the share; released, the 180 good rows go to
    staging and the 20 stay quarantined (before, release let the bad rows into core)."""
    rows = [dossier(i, procedure_code=PASTED if i % 10 == 0 else None) if i % 10 == 0 else dossier(i)
            for i in range(200)]
    stage = stage_rows(tmp_path, "dossiers", rows)
    led = _ledger(tmp_path, stage)
    g = gate_batch(tmp_path, "one_stop", "dossiers", BID, ledger=led, run_id="r1", settings=NO_GX, as_of=AS_OF)
    assert not g.passed and [r.name for r in g.criticals] == ["quarantined_share"]
    ingest.hold_batch(tmp_path, "one_stop", "dossiers", BID)
    dst = ingest.release_batch(tmp_path, led, BID, "checked with the xã")
    staged = pq.read_table(dst).to_pylist()
    assert len(staged) == 180 and all(r["procedure_code"] != PASTED for r in staged)
    assert len(_rows(tmp_path, "quarantine")) == 20
    b = next(x for x in led.batches_of_run("r1") if x["batch_id"] == BID)
    assert (b["status"], b["rows_staged"], b["rows_quarantined"]) == ("passed", 180, 20)
    led.check_balance("r1")
    led.dispose()


def test_release_of_a_batch_held_with_its_bad_rows_sets_them_aside(tmp_path):
    """A batch held before the gate set rows aside (or whose checks crashed): the release re-applies the row rules."""
    rows = [dossier(i) for i in range(50)]
    rows[7]["procedure_code"] = PASTED
    stage = stage_rows(tmp_path, "dossiers", rows)
    led = _ledger(tmp_path, stage)
    ingest.hold_batch(tmp_path, "one_stop", "dossiers", BID)
    assert len(_rows(tmp_path, "stg", held=True)) == 50
    dst = ingest.release_batch(tmp_path, led, BID, "looked at")
    con = duckdb.connect()
    assert con.execute(f"SELECT count(*), count_if(procedure_code = '{PASTED}') FROM '{dst}'").fetchall() == [(49, 0)]
    assert [r["_rule"] for r in _rows(tmp_path, "quarantine")] == ["pattern:procedure_code"]
    b = next(x for x in led.batches_of_run("r1") if x["batch_id"] == BID)
    assert "1 rows breaking a rule set aside at release" in b["error"] and b["rows_staged"] == 49
    led.check_balance("r1")
    led.dispose()


def test_a_release_that_cannot_check_the_rows_keeps_the_batch_held(tmp_path):
    rows = [dossier(i) for i in range(20)]
    rows[2]["procedure_code"] = PASTED
    stage = stage_rows(tmp_path, "dossiers", rows)
    led = _ledger(tmp_path, stage)
    ingest.hold_batch(tmp_path, "one_stop", "dossiers", BID)
    (tmp_path / "raw_one_stop__dossiers" / f"{BID}.parquet").unlink()
    with pytest.raises(ingest.ReleaseRefused, match="stays held"):
        ingest.release_batch(tmp_path, led, BID, "looked at")
    assert [p.stem for p in ingest.held_batches(tmp_path)] == [BID]
    led.dispose()


def test_batch_level_checks_keep_their_severities_when_rows_are_set_aside(tmp_path):
    """Schema drift stays critical, volume and freshness warnings: setting rows aside changes none of them."""
    from datetime import datetime, timedelta

    from devkit.synth import write_dossier_batch

    for k in range(4):
        end = AS_OF - timedelta(days=30 + 4 - k)
        write_dossier_batch(tmp_path, 500, end=end, seed=100 + k,
                            ingested=datetime.combine(end, datetime.min.time()) + timedelta(hours=25))
    b = write_dossier_batch(tmp_path, 5000, end=AS_OF - timedelta(days=20), seed=8, drop_columns=("has_e_result",),
                            overrides={"procedure_code": "CASE WHEN i < 3 THEN 'x' ELSE '1.001193' END"})
    g = check_batch(tmp_path, DOSSIERS, b, settings=NO_GX, as_of=AS_OF)
    assert g.set_aside["by_rule"] == {"pattern:procedure_code": 3}
    sev = {r.name.split(":")[0] if r.name.startswith("volume") else r.name: r.severity for r in g.results
           if not r.success}
    assert sev["schema_drift:columns"] == "critical" and sev["column_present:has_e_result"] == "critical"
    assert sev["volume"] == "warning" and sev["freshness"] == "warning"
    assert sev["pattern:procedure_code"] == "warning" and sev["quarantined_share"] == "warning"
    assert not g.passed and {r.name for r in g.criticals} == {"schema_drift:columns", "column_present:has_e_result"}
