"""The nightly flow pulls the export API in the same run as the inbox files; a backfill is idempotent."""

from __future__ import annotations

import json
from datetime import date

import pytest

from devkit.fakeportal.server import FakePortal
from devkit.sample import generate_inbox
from warehouse.ledger import Ledger

pytestmark = pytest.mark.integration


def _marts(wh):
    # the KPI marts (mart_dq__ counts rows received, so a re-pull rightly shows there)
    return {p.parent.name: p.read_bytes() for p in sorted(wh.glob("mart_*/data.parquet"))
            if not p.parent.name.startswith("mart_dq__")}


def test_nightly_pulls_then_backfill_twice_gives_identical_marts(prefect_harness, tmp_path, monkeypatch):
    from flows.nightly import nightly

    inbox = tmp_path / "inbox"
    generate_inbox(inbox, seed=5, scale=0.3)
    pulled_file = next((inbox / "dvc_portal" / "payments").glob("*.jsonl"))
    payments = [json.loads(line) for line in pulled_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    pulled_file.unlink()  # these payments reach the warehouse only through the export API
    assert payments
    wh = tmp_path / "wh"
    data = {"payments": payments, "procedures": [], "ratings": [], "feedback": [], "e_certifications": []}
    with FakePortal(data, token="tok") as portal:
        for k, v in {"TTHC_DVC_PORTAL_URL": portal.base_url, "TTHC_DVC_PORTAL_TOKEN": "tok",
                     "TTHC_PSEUDONYM_KEY": "k", "TTHC_ALERT_URLS": ""}.items():
            monkeypatch.setenv(k, v)
        for k in ("TTHC_ONE_STOP_URL", "TTHC_ONE_STOP_DB_URL"):
            monkeypatch.delenv(k, raising=False)
        first = nightly(inbox=str(inbox), warehouse=str(wh), as_of=date(2025, 12, 31), return_state=True)
        assert first.is_completed(), first.message
        ledger = Ledger(f"sqlite:///{wh / '_ledger.sqlite'}")
        try:
            pulled = [b for b in ledger.recent_batches(200) if b["source"] == "dvc_portal"
                      and b["entity"] == "payments" and b["file_kind"] == "api"]
            assert len(pulled) == 1 and pulled[0]["status"] == "passed"
            assert pulled[0]["rows_raw"] == len(payments)
            assert ledger.get_watermark("dvc_portal", "payments") is not None
        finally:
            ledger.dispose()
        after_first = _marts(wh)
        assert set(after_first) >= {"mart_kpi__agency_period", "mart_766__agency_period",
                                    "mart_tt01_form06__agency_period"}

        b1 = nightly(inbox=str(inbox), warehouse=str(wh), as_of=date(2025, 12, 31),
                     backfill_from=date(2025, 1, 1), backfill_to=date(2025, 12, 31), return_state=True)
        assert b1.is_completed(), b1.message
        once = _marts(wh)
        b2 = nightly(inbox=str(inbox), warehouse=str(wh), as_of=date(2025, 12, 31),
                     backfill_from=date(2025, 1, 1), backfill_to=date(2025, 12, 31), return_state=True)
        assert b2.is_completed(), b2.message
        twice = _marts(wh)
    # the re-pulled versions are the ones already held: the numbers do not move, run after run
    assert once == twice == after_first
