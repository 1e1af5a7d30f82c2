"""tthc.watchdog: whatever a run started ends with it, even when the run is killed with SIGKILL: children it saw,
a child started a moment before the kill (before the watchdog's next look), grandchildren; unrelated processes are
left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
# the "run": starts its watchdog, then children that would outlive it, prints their pids, then waits to be killed
RUN = """
import os, subprocess, sys, time
sys.path.insert(0, {root!r})
from tthc import watchdog
watchdog.start()
time.sleep({settle})
kids = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])]
# a grandchild too, its parent alive until the end
kids.append(subprocess.Popen([sys.executable, "-c",
    "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
    "time.sleep(120)"]))
time.sleep(0.3)
print(" ".join(str(k.pid) for k in kids), flush=True)
{end}
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _family(pids: list[int]) -> set[int]:
    """The pids and every descendant of them."""
    out = set(pids)
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                ppid = int(open(f"/proc/{e}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid in pids:
                out.add(int(e))
    return out


def _wait_gone(pids, seconds: float = 10.0) -> set[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = {p for p in pids if _alive(p)}
        if not left:
            return set()
        time.sleep(0.05)
    return {p for p in pids if _alive(p)}


pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="the watchdog needs /proc (Linux)")


@pytest.mark.parametrize("poll", ["0.2", "600"], ids=["children seen", "children started since its last look"])
def test_a_killed_run_leaves_no_process(poll):
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    # poll 600: the watchdog never looks while the run lives, so only the orphans it finds after the kill count
    run = subprocess.Popen([sys.executable, "-c", RUN.format(root=str(ROOT), settle=0.6, end="time.sleep(120)")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "TTHC_WATCHDOG_POLL_S": poll})
    try:
        kids = [int(x) for x in run.stdout.readline().split()]
        family = _family(kids)
        assert len(family) == 3 and all(_alive(p) for p in family)
        os.kill(run.pid, signal.SIGKILL)  # kill -9 of the run
        run.wait()
        assert _wait_gone(family) == set()
        assert "stopped them" in run.stderr.read()
        assert _alive(bystander.pid)  # only what the run started
    finally:
        for p in [run.pid, *locals().get("family", ())]:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
        bystander.kill()
        bystander.wait()


def test_a_run_that_exits_leaving_a_child_behind_leaves_no_process():
    run = subprocess.Popen([sys.executable, "-c", RUN.format(root=str(ROOT), settle=0.6, end="os._exit(0)")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kids = [int(x) for x in run.stdout.readline().split()]
    assert run.wait() == 0
    assert _wait_gone(kids) == set()


def test_a_run_that_ends_cleanly_says_nothing():
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from tthc import watchdog; print(watchdog.start())"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    pid = int(res.stdout.strip())
    assert _wait_gone([pid]) == set()  # the watchdog itself is gone too
    assert res.stderr == ""
