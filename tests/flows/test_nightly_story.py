"""The nightly flow's story, without a Prefect server: the steps run in the night's order, what passed the gate is
what core and marts are given, the run's verdict reaches the ledger and the flow's state; with no usable agency
list the night stops after step 1. And both flows settle a batch through the one ``settle.settle_batch``.

The flow's body runs as a plain function (``nightly.fn``) with its heavy steps replaced by recorders (the whole
flow is exercised by tests/integration); the last test runs the real gate task and pull task bodies against a fake
portal on 127.0.0.1. ~3 s in all."""

from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest

import flows.nightly as N
from transforms.ingest import FileOutcome
from transforms.quality.model import CheckResult, GateResult
from warehouse.ledger import Ledger

AS_OF = date(2025, 12, 31)
AGENCIES = "agency_code,agency_name,level,parent_code,valid_from,valid_to\nH19,Tỉnh,province,,2023-01-01,\n"
STEPS = ["pull", "ingest", "gate", "build", "mart_dq", "reports", "period_reports", "alerts"]


def _env(monkeypatch, tmp_path: Path, agencies: str = AGENCIES) -> Path:
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "agencies.csv").write_text(agencies, encoding="utf-8")
    for k, v in {"TTHC_INBOX": str(tmp_path / "inbox"), "TTHC_WAREHOUSE": str(tmp_path / "wh"),
                 "TTHC_AS_OF": AS_OF.isoformat(), "TTHC_PSEUDONYM_KEY": "k", "TTHC_ALERT_URLS": ""}.items():
        monkeypatch.setenv(k, v)
    for k in ("TTHC_LEDGER_URL", "TTHC_AGENCIES_PATH", "TTHC_DVC_PORTAL_URL", "TTHC_ONE_STOP_URL",
              "TTHC_ONE_STOP_DB_URL"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(N, "get_run_logger", lambda: logging.getLogger("test-nightly"))
    return tmp_path / "wh"


def _gate_result(table: str, bid: str, passed: bool) -> GateResult:
    return GateResult(table, bid, f"{bid}.csv", 10, [CheckResult(
        "quarantined_share", "critical", passed, message="" if passed else f"file {bid}.csv: every row set aside")])


@pytest.fixture
def story(monkeypatch):
    """Each step of the night replaced by a recorder: one pull that passed, one file whose batch is held."""
    done: list[str] = []
    seen: dict = {}
    pulled = _gate_result("stg_one_stop__dossiers", "bp", True)
    held = _gate_result("stg_one_stop__dossiers", "bf", False)

    def step(name, result):
        def run(*args, **kwargs):
            done.append(name)
            seen[name] = (args, kwargs)
            return result
        return run

    monkeypatch.setattr(N, "_pull_sources", step("pull", [SimpleNamespace(
        source="one_stop", entity="dossiers", kind="api", status="passed", error=None, gate_result=pulled)]))
    monkeypatch.setattr(N, "_ingest_inbox", step("ingest", [FileOutcome(
        rel="one_stop/dossiers/a.csv", status="staged", batch_id="bf", rows_raw=10, rows_staged=10)]))
    monkeypatch.setattr(N, "_gate_staged", step("gate", [held]))
    monkeypatch.setattr(N, "build_task", step("build", {"rebuild": "incremental", "reason": "new batches"}))
    monkeypatch.setattr(N, "build_mart_dq", step("mart_dq", None))
    monkeypatch.setattr(N, "_reports", step("reports", {"summary": {"run_id": "x"}, "html": "r.html"}))
    monkeypatch.setattr(N, "period_reports_task", step("period_reports", None))
    monkeypatch.setattr(N, "notify", step("alerts", None))
    return SimpleNamespace(done=done, seen=seen, held=held)


def test_the_night_runs_its_steps_in_order_and_its_verdict_reaches_the_ledger(story, monkeypatch, tmp_path):
    wh = _env(monkeypatch, tmp_path)
    state = N.nightly.fn()
    assert story.done == STEPS
    args, _ = story.seen["build"]
    assert args[3] == [("one_stop", "dossiers", "bp")] and args[4] is False  # only what passed; not a full rebuild
    assert state.is_failed() and state.message == story.held.summary_line()  # a held batch fails the run
    ledger = Ledger(f"sqlite:///{wh / '_ledger.sqlite'}")
    try:
        runs = ledger.recent_runs()
    finally:
        ledger.dispose()
    assert len(runs) == 1 and runs[0]["status"] == "failed"
    summary = json.loads(runs[0]["summary_json"])
    assert (summary["batches_passed"], summary["batches_held"], summary["rebuild"]) == (1, 1, "incremental")


def test_a_backfill_rebuilds_every_period(story, monkeypatch, tmp_path):
    _env(monkeypatch, tmp_path)
    N.nightly.fn(backfill_from=date(2025, 12, 1), pull=True)
    args, _ = story.seen["build"]
    assert args[4] is True and story.seen["pull"][0][1] == (date(2025, 12, 1), date(2025, 12, 1))


def test_without_a_usable_agency_list_the_night_stops_after_step_one(story, monkeypatch, tmp_path):
    _env(monkeypatch, tmp_path, agencies="agency_code;broken\n")
    artifacts: list[str] = []
    monkeypatch.setattr(N, "create_markdown_artifact", lambda key, markdown: artifacts.append(markdown))
    state = N.nightly.fn()
    assert state.is_failed() and "agencies.csv" in state.message
    assert story.done == ["alerts"]  # nothing pulled, ingested, gated or built; the operator is told
    assert len(artifacts) == 1 and "nothing was ingested" in artifacts[0]
