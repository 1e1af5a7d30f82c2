"""No process outlives a run: a tiny watchdog that ``tthc run`` / ``tthc backfill`` start before anything else.

Without ``PREFECT_API_URL`` Prefect runs the flow on a temporary API server that it starts as a child process
(uvicorn, ``SubprocessASGIServer`` in prefect/server/api/server.py) and stops at exit; a ``kill -9`` of the run
leaves that server running for good. The watchdog is a separate small process reading a pipe whose write end only
the run holds: however the run ends (exit, crash, SIGKILL) the kernel closes that end and the watchdog reads EOF.
It then stops what the run left behind, with SIGTERM and, 3 s later, SIGKILL:
- every descendant of the run it saw while the run lived (it looks every half second; a process is recognised by
  its pid and start time, so a reused pid is never hit);
- the run's orphans, which also covers a child started in the last half second: processes that the run's death
  re-parented (their parent is now the watchdog's own new parent, the reaper), still in the run's process group
  and session, started after the run;
- and their descendants.
It ignores SIGINT, SIGHUP and SIGTERM (Ctrl-C reaches the whole process group) so that it can do this last, then
exits. Linux only (``/proc``); elsewhere ``start`` does nothing.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

POLL_S = 0.5
GRACE_S = 3.0
_guard: tuple[subprocess.Popen, int] | None = None


def start() -> int | None:
    """Start the watchdog of this process (once); returns its pid, None where there is no ``/proc``."""
    global _guard
    if _guard is not None:
        return _guard[0].pid
    if not os.path.isdir("/proc/self"):
        return None
    r, w = os.pipe()  # not inheritable: only this process holds the write end
    try:
        proc = subprocess.Popen([sys.executable, "-m", "tthc.watchdog", str(os.getpid())], stdin=r,
                                stdout=subprocess.DEVNULL, close_fds=True)
    finally:
        os.close(r)
    _guard = (proc, w)  # the write end stays open for the life of this process: its closing is the signal
    return proc.pid


# --- the watchdog's side -----------------------------------------------------------------------------------------
def _stat(pid: int) -> tuple[str, int, int, int, int] | None:
    """(state, ppid, process group, session, start time in clock ticks) of a process, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    f = data[data.rindex(b")") + 2:].split()
    return f[0].decode(), int(f[1]), int(f[2]), int(f[3]), int(f[19])


def _processes() -> dict[int, tuple[str, int, int, int, int]]:
    out = {}
    for e in os.listdir("/proc"):
        if e.isdigit():
            s = _stat(int(e))
            if s is not None:
                out[int(e)] = s
    return out


def _descendants(procs: dict, roots) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, s in procs.items():
        children.setdefault(s[1], []).append(pid)
    out: set[int] = set()
    stack = list(roots)
    while stack:
        for c in children.get(stack.pop(), ()):
            if c not in out:
                out.add(c)
                stack.append(c)
    return out


def _alive(pid: int, started: int) -> bool:
    s = _stat(pid)
    return s is not None and s[4] == started and s[0] not in ("Z", "X")


def _command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()[:160]
    except OSError:
        return "?"


def left_behind(parent: int, parent_stat: tuple, seen: dict[int, int], me: int) -> dict[int, int]:
    """pid -> start time of every process the (ended) run left behind."""
    procs = _processes()
    _state, _ppid, pgrp, session, started = parent_stat
    reaper = os.getppid()
    found = {pid: s[4] for pid, s in procs.items()
             if pid != me and s[1] in (reaper, parent) and s[2] == pgrp and s[3] == session and s[4] >= started}
    found.update({pid: st for pid, st in seen.items() if pid in procs and procs[pid][4] == st})
    found.update({pid: procs[pid][4] for pid in _descendants(procs, list(found))})
    found.pop(me, None)
    return {pid: st for pid, st in found.items() if procs[pid][0] not in ("Z", "X")}


def stop(targets: dict[int, int], grace: float = GRACE_S) -> list[str]:
    """SIGTERM, then SIGKILL after ``grace`` seconds; returns what was stopped, as 'pid (command)'."""
    told = [f"{pid} ({_command(pid)})" for pid in sorted(targets)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, st in targets.items():
            if _alive(pid, st):
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(p, s) for p, s in targets.items()):
            time.sleep(0.05)
    return told


def watch(parent: int, fd: int = 0, poll: float = POLL_S) -> list[str]:
    """Until ``fd`` reads EOF, note ``parent``'s descendants; then stop what it left behind."""
    me = os.getpid()
    parent_stat = _stat(parent)
    if parent_stat is None or os.getppid() != parent:
        return []
    seen: dict[int, int] = {}
    while True:
        ready, _, _ = select.select([fd], [], [], poll)
        if ready:
            if not os.read(fd, 4096):
                break
            continue
        procs = _processes()
        for pid in _descendants(procs, [parent]) - {me}:
            seen[pid] = procs[pid][4]
    deadline = time.monotonic() + 2.0  # EOF comes as the run's files close, just before its children are
    while os.getppid() == parent and time.monotonic() < deadline:  # re-parented
        time.sleep(0.01)
    targets = left_behind(parent, parent_stat, seen, me)
    return stop(targets) if targets else []


def main(argv: list[str]) -> None:
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    stopped = watch(int(argv[0]), poll=float(os.environ.get("TTHC_WATCHDOG_POLL_S") or POLL_S))
    if stopped:
        try:
            sys.stderr.write(f"tthc: the run ended without stopping {len(stopped)} process(es) it had started "
                             f"(killed?); stopped them: {'; '.join(stopped)}\n")
            sys.stderr.flush()
        except OSError:  # the terminal is gone
            pass


if __name__ == "__main__":
    main(sys.argv[1:])
