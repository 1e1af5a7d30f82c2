"""Machine faults told as one sentence by the real `tthc` command: an unreachable ledger, a full disk, a read-only
warehouse (where status and dq still work). Disks are real: small tmpfs mounts (root only; elsewhere those tests
skip and say why)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tthc import faults
from warehouse.ledger import Ledger


def tthc(*args, env=None, timeout=120) -> subprocess.CompletedProcess:
    e = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "tthc.cli", *args], capture_output=True, text=True, env=e,
                          timeout=timeout)


def can_mount() -> str | None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return "needs root and mount(8) to make a real full or read-only disk"
    return None


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size, ro=False) -> a folder on a real tmpfs of that size; unmounted at the end."""
    why = can_mount()
    if why:
        pytest.skip(why)
    mounted: list[Path] = []

    def mount(size: str, name: str = "disk") -> Path:
        d = tmp_path / name
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], capture_output=True,
                           text=True)
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounted.append(d)
        return d

    yield mount
    for d in reversed(mounted):
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_unreachable_ledger_is_one_sentence_with_the_traceback_in_the_log(tmp_path):
    env = {"TTHC_LEDGER_URL": "postgresql+psycopg://etl:s3cret@127.0.0.1:1/tthc", "TTHC_LOG_DIR": str(tmp_path)}
    r = tthc("status", "--warehouse", str(tmp_path / "wh"), env=env)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr + r.stdout and "s3cret" not in r.stderr
    assert "Cannot reach the ledger database postgresql+psycopg://etl:***@127.0.0.1:1/tthc" in r.stderr
    assert "Check TTHC_LEDGER_URL" in r.stderr
    assert "Traceback" in (tmp_path / "errors.log").read_text()
    debug = tthc("--debug", "status", "--warehouse", str(tmp_path / "wh"), env=env)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_a_full_disk_is_one_sentence(tmpfs, tmp_path):
    disk = tmpfs("64k")
    r = tthc("sample", "--out", str(disk / "inbox"), "--seed", "7", env={"TTHC_LOG_DIR": str(tmp_path)})
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert "The disk is full" in r.stderr and "free some space" in r.stderr


def test_status_and_dq_work_on_a_read_only_warehouse(tmpfs, tmp_path):
    disk = tmpfs("16m")
    wh = disk / "wh"
    wh.mkdir()
    led = Ledger(f"sqlite:///{wh / '_ledger.sqlite'}")
    led.start_run("r-ro-1", None, "inbox")
    led.finish_run("r-ro-1", "failed", {"files": 1})
    led.dispose()
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    with pytest.raises(OSError) as info:
        (wh / "probe").write_text("x")
    assert "read-only file system" in faults.sentence(info.value)
    st = tthc("status", "--warehouse", str(wh), env={"TTHC_LOG_DIR": str(tmp_path)})
    assert st.returncode == 0, st.stderr
    assert "r-ro-1" in st.stdout and "failed" in st.stdout
    dq = tthc("dq", "--warehouse", str(wh), env={"TTHC_LOG_DIR": str(tmp_path)})
    assert dq.returncode == 0 and "No data-quality results" in dq.stdout, dq.stderr
    assert sorted(p.name for p in wh.iterdir()) == ["_ledger.sqlite"]  # nothing written beside it


def test_the_lock_held_by_another_run_is_a_sentence(tmp_path):
    from warehouse.lock import WarehouseBusy, warehouse_lock

    with warehouse_lock(tmp_path):
        child = subprocess.run([sys.executable, "-c", (
            "from warehouse.lock import warehouse_lock\n"
            f"with warehouse_lock({str(tmp_path)!r}, wait_seconds=0.2, poll=0.05): pass")],
            capture_output=True, text=True, timeout=60)
    assert child.returncode == 1 and "WarehouseBusy" in child.stderr
    s = faults.sentence(WarehouseBusy(f"another run holds {tmp_path / '.lock'} (waited 0 s); try again later"))
    assert "wait for it to finish" in s and ".lock" in s
