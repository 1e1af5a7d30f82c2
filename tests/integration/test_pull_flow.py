"""The pull flow on two fake portals: one with a bad token fails alone, the other is staged, gated, committed."""

from __future__ import annotations

import pytest

from devkit.fakeportal.generate import AGENCIES, generate_dossiers
from devkit.fakeportal.server import FakePortal
from warehouse.ledger import Ledger


@pytest.mark.integration
def test_pull_flow_isolates_a_failing_source(prefect_harness, tmp_path, monkeypatch):
    from flows.pull import pull

    records = generate_dossiers(200, seed=9)
    payments = [{"payment_id": f"P{i}", "dossier_id": r["MaHoSo"], "amount_vnd": 12000,
                 "paid_at": r["NgayTiepNhan"], "payment_channel": 1, "status": "Thành công",
                 "updated_at": r["NgayCapNhat"]} for i, r in enumerate(records[:20])]
    agencies = tmp_path / "agencies.csv"
    agencies.write_text("agency_code,agency_name,level,parent_code,valid_from,valid_to\n"
                        + "".join(f"{a},Đơn vị {a},commune,,2023-01-01,\n" for a in AGENCIES), encoding="utf-8")
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
