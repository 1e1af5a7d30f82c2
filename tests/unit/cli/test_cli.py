"""The CLI without running a flow: `tthc status` on a ledger written here, `tthc run`'s exit code and messages
(the flow replaced by a stub returning a state), bad options."""

from __future__ import annotations

from datetime import date, datetime
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from tthc.cli import app
from warehouse.ledger import Ledger


@pytest.fixture
def wide_console():
    """Rich folds long cells at 80 columns; batch ids must appear whole in the captured output."""
    from tthc.commands import pipeline

    old = pipeline.console._width
    pipeline.console._width = 400
    yield
    pipeline.console._width = old


def _ledger_with_history(wh) -> tuple[Ledger, dict]:
    wh.mkdir(parents=True, exist_ok=True)
    led = Ledger(f"sqlite:///{wh / '_ledger.sqlite'}")
    led.start_run("r20251231T013000-aaaaaa", date(2025, 12, 31), "/in")
    ids = {}
    for i, (path, status, err) in enumerate([
            ("one_stop/dossiers/export_2024Q1.csv", "passed", None),
            ("one_stop/dossiers/bad_encoding.csv", "rejected", "the text encoding could not be determined"),
            ("dvc_portal/payments/p.jsonl", "gate_failed", "critical check failed: schema")]):
        bid = f"b20251231T0130{i:02d}000000-{i:010x}"
        ids[path] = bid
        led.begin_batch(bid, "r20251231T013000-aaaaaa", sha256=str(i) * 64, path=path, size_bytes=1)
        led.finish_batch(bid, status, error=err, rows_raw=10 + i, rows_staged=9, rows_quarantined=1 + i,
                         unknown_columns=["Ghi chú nội bộ"] if i == 0 else [])
    led.finish_run("r20251231T013000-aaaaaa", "failed", {"staged": 1, "rejected": 1})
    return led, ids


def test_help_lists_the_commands():
    res = CliRunner().invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("run", "status", "sample"):
        assert cmd in res.output


def test_status_names_runs_and_batches(tmp_path, wide_console):
    wh = tmp_path / "wh"
    led, ids = _ledger_with_history(wh)
    led.dispose()
    res = CliRunner().invoke(app, ["status", "--warehouse", str(wh)])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "r20251231T013000-aaaaaa" in out and "2025-12-31" in out and "staged=1" in out
    for path, bid in ids.items():
        assert bid in out and path in out
    for word in ("passed", "rejected", "gate_failed", "encoding could not be determined",
                 "unknown columns: Ghi chú nội bộ"):
        assert word in out
    res = CliRunner().invoke(app, ["status", "--warehouse", str(wh), "--limit", "1"])
    assert sum(bid in res.output for bid in ids.values()) == 1


def test_status_reads_the_warehouse_from_the_environment(tmp_path, wide_console, monkeypatch):
    wh = tmp_path / "envwh"
    led, ids = _ledger_with_history(wh)
    led.dispose()
    monkeypatch.setenv("TTHC_WAREHOUSE", str(wh))
    res = CliRunner().invoke(app, ["status"])
    assert res.exit_code == 0 and all(bid in res.output for bid in ids.values())


def test_status_on_a_warehouse_without_runs(tmp_path):
    wh = tmp_path / "wh"
    wh.mkdir()
    Ledger(f"sqlite:///{wh / '_ledger.sqlite'}").dispose()  # a ledger, no run yet
    res = CliRunner().invoke(app, ["status", "--warehouse", str(wh)])
    assert res.exit_code == 0, res.output
    assert "Recent batches" in res.output


@pytest.mark.parametrize("cmd", [["status"], ["dq"], ["release"], ["release", "b1", "--reason", "x"]])
def test_reading_commands_on_a_missing_or_unused_warehouse_say_so(tmp_path, cmd):
    """No traceback, no 'No batch is held' for a path that is not a warehouse, and no empty ledger created in a
    folder that merely exists (a mistyped path)."""
    res = CliRunner().invoke(app, [*cmd, "--warehouse", str(tmp_path / "absent")])
    assert res.exit_code == 2 and "No warehouse at" in res.output and "absent" in res.output, res.output
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(app, [*cmd, "--warehouse", str(tmp_path / "empty")])
    if cmd == ["release"]:  # listing held batches needs no ledger
        assert res.exit_code == 0 and "No batch is held" in res.output
    else:
        assert res.exit_code == 2 and "No ledger in" in res.output, res.output
    assert list((tmp_path / "empty").iterdir()) == []


def test_status_on_a_missing_warehouse_says_so_in_plain_words(tmp_path):
    res = CliRunner().invoke(app, ["status", "--warehouse", str(tmp_path / "absent")])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "absent" in res.output


def test_run_refuses_a_bad_date(tmp_path):
    res = CliRunner().invoke(app, ["run", "--inbox", str(tmp_path), "--warehouse", str(tmp_path / "wh"),
                                   "--as-of", "31/12/2025"])
    assert res.exit_code != 0
    assert "is not a date YYYY-MM-DD" in res.output


@pytest.mark.parametrize("failed", [True, False])
def test_run_exit_code_follows_the_flow_state(tmp_path, monkeypatch, wide_console, failed):
    import flows.nightly

    wh = tmp_path / "wh"
    calls = []

    def fake_nightly(**kw):
        calls.append(kw)
        led, _ids = _ledger_with_history(wh)
        led.dispose()
        return SimpleNamespace(is_failed=lambda: failed, is_crashed=lambda: False,
                               message="stub: export_2024Q1.csv rejected" if failed else "stub: 3 files staged")

    monkeypatch.setattr(flows.nightly, "nightly", fake_nightly)
    (tmp_path / "in").mkdir()
    res = CliRunner().invoke(app, ["run", "--inbox", str(tmp_path / "in"), "--warehouse", str(wh),
                                   "--as-of", "2025-12-31", "--full-rebuild"])
    assert calls and calls[0]["as_of"] == date(2025, 12, 31) and calls[0]["full_rebuild"] is True
    assert calls[0]["warehouse"] == str(wh) and calls[0]["inbox"] == str(tmp_path / "in")
    assert "Run r20251231T013000-aaaaaa" in res.output  # the last run's batches are printed
    if failed:
        assert res.exit_code == 1
        assert "Run failed" in res.output and "export_2024Q1.csv rejected" in res.output
    else:
        assert res.exit_code == 0, res.output
        assert "Run completed" in res.output


def test_started_at_is_shown_in_utc_text(tmp_path, wide_console):
    wh = tmp_path / "wh"
    led, ids = _ledger_with_history(wh)
    bid = ids["dvc_portal/payments/p.jsonl"]
    led.update_batch(bid, started_at=datetime(2025, 12, 31, 18, 30, 5))
    led.dispose()
    res = CliRunner().invoke(app, ["status", "--warehouse", str(wh)])
    assert "2025-12-31 18:30:05" in res.output


def test_python_dash_m_tthc_cli_works():
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "tthc.cli", "status", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-500:]
    assert "--warehouse" in res.stdout


@pytest.mark.parametrize("source", [None, "TTHC_ONE_STOP_URL"])
def test_backfill_says_when_there_is_nothing_to_pull(tmp_path, monkeypatch, wide_console, source):
    import flows.nightly

    wh = tmp_path / "wh"
    for k in ("TTHC_DVC_PORTAL_URL", "TTHC_ONE_STOP_URL", "TTHC_ONE_STOP_DB_URL"):
        monkeypatch.delenv(k, raising=False)
    if source:
        monkeypatch.setenv(source, "http://127.0.0.1:1")
    calls = []

    def fake_nightly(**kw):
        calls.append(kw)
        _ledger_with_history(wh)[0].dispose()
        return SimpleNamespace(is_failed=lambda: False, is_crashed=lambda: False, message="stub")

    monkeypatch.setattr(flows.nightly, "nightly", fake_nightly)
    (tmp_path / "in").mkdir()
    res = CliRunner().invoke(app, ["backfill", "--from", "2025-11-01", "--to", "2025-11-30", "--inbox",
                                   str(tmp_path / "in"), "--warehouse", str(wh), "--as-of", "2025-12-31"])
    assert res.exit_code == 0 and calls[0]["backfill_from"] == date(2025, 11, 1), res.output
    assert ("No source to pull is configured" in res.output) is (source is None)


def test_run_without_inbox_or_sources_says_so_before_starting(tmp_path, monkeypatch):
    import flows.nightly

    for k in ("TTHC_DVC_PORTAL_URL", "TTHC_ONE_STOP_URL", "TTHC_ONE_STOP_DB_URL"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(flows.nightly, "nightly", lambda **kw: pytest.fail("the flow must not start"))
    res = CliRunner().invoke(app, ["run", "--inbox", str(tmp_path / "typo"), "--warehouse", str(tmp_path / "wh")])
    flat = " ".join(res.output.replace("│", " ").split())
    assert res.exit_code == 2 and "does not exist" in flat and "typo" in flat, res.output
    assert not (tmp_path / "wh").exists()


def test_status_reads_a_ledger_elsewhere_without_a_local_warehouse(tmp_path, monkeypatch, wide_console):
    """With TTHC_LEDGER_URL (e.g. PostgreSQL on another host) status and dq need no local warehouse folder."""
    led, ids = _ledger_with_history(tmp_path / "elsewhere")
    led.dispose()
    monkeypatch.setenv("TTHC_LEDGER_URL", f"sqlite:///{tmp_path / 'elsewhere' / '_ledger.sqlite'}")
    res = CliRunner().invoke(app, ["status", "--warehouse", str(tmp_path / "absent")])
    assert res.exit_code == 0 and ids["one_stop/dossiers/export_2024Q1.csv"] in res.output, res.output
    res = CliRunner().invoke(app, ["release", "--warehouse", str(tmp_path / "absent")])
    assert res.exit_code == 2 and "No warehouse at" in res.output


def test_status_shows_a_failed_night_first_after_many_no_op_runs(tmp_path, wide_console):
    """Five (or fifty) no-op pulls after a failed night must not push it off the list; --failed shows only it."""
    wh = tmp_path / "wh"
    led, ids = _ledger_with_history(wh)
    for i in range(30):
        led.start_run(f"p20260101T0{i:05d}-noop00", date(2025, 12, 31), "pull")
        led.finish_run(f"p20260101T0{i:05d}-noop00", "completed", {"pulls": 0})
    led.dispose()
    res = CliRunner().invoke(app, ["status", "--warehouse", str(wh), "--limit", "5"])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "r20251231T013000-aaaaaa" in out and out.index("r20251231T013000-aaaaaa") < out.index("noop00")
    assert ids["one_stop/dossiers/bad_encoding.csv"] in out and ids["dvc_portal/payments/p.jsonl"] in out
    only = CliRunner().invoke(app, ["status", "--warehouse", str(wh), "--failed"]).output
    assert "r20251231T013000-aaaaaa" in only and "noop00" not in only
    assert ids["one_stop/dossiers/export_2024Q1.csv"] not in only


def test_dq_for_an_agency_says_when_its_results_are_from_an_older_run(tmp_path):
    """Last night's batch was held on checks that name no agency: `tthc dq --agency X` must not answer
    'All checks passed' from an older run without saying so."""
    wh = tmp_path / "wh"
    led, _ids = _ledger_with_history(wh)
    base = {"batch_id": "b1", "table_name": "stg_one_stop__dossiers", "source": "one_stop", "entity": "dossiers",
            "expectation_type": "x", "element_count": 10, "examples_json": [], "observed_json": {}}
    led.record_dq([{**base, "run_id": "r-old", "agency_code": "H31.1", "check_name": "volume:H31.1",
                    "severity": "warning", "success": True, "unexpected_count": 0, "unexpected_percent": 0.0}])
    led.record_dq([{**base, "run_id": "r-new", "batch_id": "b2", "agency_code": None,
                    "check_name": "quarantined_share", "severity": "critical", "success": False,
                    "unexpected_count": 9, "unexpected_percent": 90.0}])
    led.dispose()
    res = CliRunner().invoke(app, ["dq", "--warehouse", str(wh), "--agency", "H31.1"])
    out = " ".join(res.output.split())
    assert res.exit_code == 0, res.output
    assert "latest checks (run r-new) have no result for --agency H31.1" in out and "earlier run r-old" in out
    assert "Run r-new failed 1 check(s) (1 critical)" in out and "tthc dq --run r-new" in out
