"""A night started under umask 000 still writes the warehouse with explicit modes: nothing world-writable, and
the layers with personal data (raw_, quarantine_, _secrets) owner-only."""

from __future__ import annotations

import os
import stat
from datetime import date

import pytest

pytestmark = pytest.mark.integration


def test_modes_do_not_follow_a_permissive_umask(prefect_harness, tmp_path, monkeypatch):
    from flows.nightly import nightly
    from devkit.sample.inbox import generate_inbox

    inbox, wh = tmp_path / "inbox", tmp_path / "wh"
    generate_inbox(inbox, seed=5, scale=0.05)
    monkeypatch.delenv("TTHC_PSEUDONYM_KEY", raising=False)  # the key file is made by the run: check its mode
    for k in ("TTHC_DVC_PORTAL_URL", "TTHC_ONE_STOP_URL", "TTHC_ONE_STOP_DB_URL", "TTHC_ALERT_URLS"):
        monkeypatch.delenv(k, raising=False)
    old = os.umask(0)
    try:
        nightly(inbox=str(inbox), warehouse=str(wh), as_of=date(2025, 12, 31), return_state=True)
    finally:
        os.umask(old)
    checked = 0
    for p in [wh, *wh.rglob("*")]:
        if p.is_symlink():
            continue
        mode = stat.S_IMODE(p.lstat().st_mode)
        rel = p.relative_to(wh).as_posix()
        assert not mode & stat.S_IWOTH and not mode & stat.S_IWGRP, f"{rel} is {oct(mode)}"
        if rel.split("/")[0].startswith(("raw_", "quarantine_", "_secrets")):
            assert not mode & (stat.S_IRWXG | stat.S_IRWXO), f"{rel} holds personal data but is {oct(mode)}"
        checked += 1
    assert checked > 20 and (wh / "_secrets").is_dir() and any(wh.glob("raw_*/*.parquet"))
