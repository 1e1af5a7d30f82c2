"""README's "Schedule on a Prefect server", run as written: a real Prefect server, a process work pool, both
deployments from prefect.yaml, a real worker, and the nightly deployment run to completion. Only the port and
the two data folders are changed (a free port, temporary folders)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def readme_recipe() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Schedule on a Prefect server", 1)[1]
    return section.split("```bash\n", 1)[1].split("```", 1)[0]


def stop_group(pgid: int) -> None:
    """SIGTERM to every process of the recipe's session, then SIGKILL to what is left after 10 s."""
    import time

    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_readme_server_recipe_runs_the_nightly_deployment(tmp_path):
    from devkit.sample.inbox import generate_inbox

    if subprocess.run(["which", "curl"], capture_output=True).returncode:
        pytest.skip("the recipe waits for the server with curl, which is not installed")
    inbox, wh = tmp_path / "inbox", tmp_path / "wh"
    generate_inbox(inbox, seed=3, scale=0.1)
    port = free_port()
    script = readme_recipe()
    assert "export PREFECT_API_URL=" in script and "prefect worker start" in script
    script = (script.replace("4200", str(port)).replace("/data/inbox", str(inbox))
              .replace("/data/warehouse", str(wh)))
    script = script.replace("prefect deployment run tthc-nightly/nightly --watch",
                            "prefect deployment run tthc-nightly/nightly --watch --watch-timeout 600 "
                            "-p as_of=2025-12-31")
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{venv_bin}:{os.environ['PATH']}", "PREFECT_HOME": str(tmp_path / "prefect"),
           "TTHC_PSEUDONYM_KEY": "recipe-test", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    for k in ("PREFECT_API_URL", "TTHC_DVC_PORTAL_URL", "TTHC_ONE_STOP_URL", "TTHC_ONE_STOP_DB_URL", "TTHC_INBOX",
              "TTHC_WAREHOUSE"):
        env.pop(k, None)
    after = (f"\nprefect deployment inspect tthc-pull/pull > {tmp_path / 'pull.txt'}\n"
             f"prefect flow-run ls --limit 5 > {tmp_path / 'runs.txt'}\n")
    log = tmp_path / "recipe.log"
    with open(log, "w") as fh:  # a file, not a pipe: the server and worker left in the background keep it open
        proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", script + after], cwd=ROOT, env=env,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        proc.wait(timeout=540)
        out = log.read_text(errors="replace")
    finally:
        stop_group(proc.pid)  # the server and the worker were started in the background by the recipe
    assert proc.returncode == 0, out[-4000:]
    assert "PREFECT_API_URL must be set" not in out
    assert re.search(r"Completed", out), out[-3000:]
    assert (wh / "mart_kpi__agency_period").is_dir() or list(wh.rglob("mart_kpi__agency_period*")), \
        sorted(p.name for p in wh.iterdir())
    pull = (tmp_path / "pull.txt").read_text()
    assert "'active': False" in pull, pull  # no source configured: the pull schedule is off
    from warehouse.ledger import Ledger

    led = Ledger(f"sqlite:///{wh / '_ledger.sqlite'}", read_only=True)
    try:
        run = led.recent_runs(1)[0]
    finally:
        led.dispose()
    assert run["status"] == "completed", json.loads(run["summary_json"] or "{}")
    assert run["run_id"] in (tmp_path / "runs.txt").read_text()  # the flow run is named after the run id
