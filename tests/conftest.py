"""Shared test set-up: analytics off, one Prefect test harness per session (its temporary API costs ~7 s)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_UI_ENABLED", "false")
# The nightly KPI reports (step 8: two periods' HTML, PDF and workbooks) cost ~3-6 s a night; the suite runs the
# flow some forty times, so they are made only where they are the subject: the session's sample warehouse below
# and tests/integration/test_nightly_reports.py turn them on.
os.environ.setdefault("TTHC_KPI_REPORTS", "false")

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
SAMPLE_INBOX = SHARED / "samples" / "inbox"
SAMPLE_EXPECTED = SHARED / "samples" / "expected"


@pytest.fixture(scope="session")
def prefect_harness():
    """Start Prefect's temporary API once for every flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def sample_inbox() -> Path:
    if not (SAMPLE_INBOX / "manifest.json").exists():
        pytest.skip(f"the shared sample inbox is absent ({SAMPLE_INBOX}); conformance needs ../shared/samples")
    return SAMPLE_INBOX


@pytest.fixture
def pseudonym_env(monkeypatch):
    monkeypatch.setenv("TTHC_PSEUDONYM_KEY", "test-key-not-secret")


@pytest.fixture(scope="session")
def sample_warehouse(prefect_harness, sample_inbox, tmp_path_factory) -> Path:
    """The nightly flow run once on ../shared/samples/inbox with as_of 2025-12-31, its KPI reports on; shared by
    conformance tests."""
    from datetime import date

    from flows.nightly import nightly

    wh = tmp_path_factory.mktemp("sample_wh")
    os.environ["TTHC_PSEUDONYM_KEY"] = "conformance-test-key"
    os.environ["TTHC_KPI_REPORTS"] = "true"
    try:
        state = nightly(inbox=str(sample_inbox), warehouse=str(wh), as_of=date(2025, 12, 31), return_state=True)
    finally:
        os.environ.pop("TTHC_PSEUDONYM_KEY", None)
        os.environ["TTHC_KPI_REPORTS"] = "false"
    assert state.is_completed(), state.message
    return wh
