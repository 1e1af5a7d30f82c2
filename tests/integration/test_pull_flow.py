"""The pull flow on two fake portals: one with a bad token fails alone, the other is staged, gated, committed."""

from __future__ import annotations

import pytest

from devkit.fakeportal.generate import AGENCIES, generate_dossiers
from devkit.fakeportal.server import FakePortal
from warehouse.ledger import Ledger


def write_agencies(path) -> None:
    """The fake portal's communes as an agencies.csv."""
    path.write_text("agency_code,agency_name,level,parent_code,valid_from,valid_to\n"
                    + "".join(f"{a},Đơn vị {a},commune,,2023-01-01,\n" for a in AGENCIES), encoding="utf-8")


@pytest.mark.integration
def test_pull_flow_isolates_a_failing_source(prefect_harness, tmp_path, monkeypatch):
    from flows.pull import pull

    records = generate_dossiers(200, seed=9)
    payments = [{"payment_id": f"P{i}", "dossier_id": r["MaHoSo"], "amount_vnd": 12000,
                 "paid_at": r["NgayTiepNhan"], "payment_channel": 1, "status": "Thành công",
                 "updated_at": r["NgayCapNhat"]} for i, r in enumerate(records[:20])]
    agencies = tmp_path / "agencies.csv"
    write_agencies(agencies)
    wh = tmp_path / "wh"
    with FakePortal({"payments": payments}, token="good") as dvc, \
            FakePortal({"dossiers": records}, token="onestop") as one:
        for k, v in {"TTHC_DVC_PORTAL_URL": dvc.base_url, "TTHC_DVC_PORTAL_TOKEN": "revoked",
                     "TTHC_ONE_STOP_URL": one.base_url, "TTHC_ONE_STOP_TOKEN": "onestop",
                     "TTHC_AGENCIES_PATH": str(agencies), "TTHC_PSEUDONYM_KEY": "k", "TTHC_AS_OF": "2025-12-31",
                     "TTHC_ALERT_URLS": ""}.items():
            monkeypatch.setenv(k, v)
        monkeypatch.delenv("TTHC_ONE_STOP_DB_URL", raising=False)
        # the gate is exercised in test_pull_paths (a callable); here the flow's isolation of a failing source
        state = pull(warehouse=str(wh), use_gate=False, return_state=True)
    assert state.is_failed()
    assert "dvc_portal" in state.message and "TTHC_DVC_PORTAL_TOKEN" in state.message
    ledger = Ledger(f"sqlite:///{wh / '_ledger.sqlite'}")
    try:
        assert ledger.get_watermark("dvc_portal", "payments") is None
        assert ledger.get_watermark("one_stop", "dossiers") is not None
        staged = [b for b in ledger.recent_batches() if b["source"] == "one_stop"]
        assert len(staged) == 1 and staged[0]["status"] == "staged" and staged[0]["rows_raw"] == 200
    finally:
        ledger.dispose()


@pytest.mark.integration
def test_pull_with_a_broken_agency_list_uses_the_last_good_one_or_says_why(prefect_harness, tmp_path, monkeypatch):
    """agencies.csv broken: the pull uses the warehouse's last good list; with none ever kept, it pulls nothing
    and fails in one sentence naming the file (it raised a traceback)."""
    from flows.pull import pull

    records = generate_dossiers(30, seed=4)
    agencies = tmp_path / "agencies.csv"
    agencies.write_text("agency_code,agency_name,level\nX,Xã X,commune\n", encoding="utf-8")  # no validity columns
    wh = tmp_path / "wh"
    with FakePortal({"dossiers": records}, token="t") as one:
        for k, v in {"TTHC_ONE_STOP_URL": one.base_url, "TTHC_ONE_STOP_TOKEN": "t",
                     "TTHC_AGENCIES_PATH": str(agencies), "TTHC_PSEUDONYM_KEY": "k", "TTHC_AS_OF": "2025-12-31",
                     "TTHC_ALERT_URLS": ""}.items():
            monkeypatch.setenv(k, v)
        for k in ("TTHC_ONE_STOP_DB_URL", "TTHC_DVC_PORTAL_URL"):
            monkeypatch.delenv(k, raising=False)
        state = pull(warehouse=str(wh), use_gate=False, return_state=True)
        assert state.is_failed() and "agencies.csv" in state.message and "valid_from" in state.message
        led = Ledger(f"sqlite:///{wh / '_ledger.sqlite'}")
        try:
            assert led.get_watermark("one_stop", "dossiers") is None
        finally:
            led.dispose()
        write_agencies(agencies)
        assert pull(warehouse=str(wh), use_gate=False, return_state=True).is_completed()  # the list is kept now
        agencies.write_text("agency_code;broken\n", encoding="utf-8")
        state = pull(warehouse=str(wh), use_gate=False, return_state=True)
    assert state.is_completed(), state.message  # the last good list stood in
