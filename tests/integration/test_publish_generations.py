"""kill -9 at named points of a second night (``TTHC_TEST_KILL_AT``, a real SIGKILL of the process) leaves the
three KPI marts of one generation, the next run brings them to exactly what a clean second night gives (byte for
byte), and no process outlives the killed run (Prefect's temporary API server included).

- a real ``tthc run`` without ``PREFECT_API_URL`` (so Prefect starts its temporary server), killed between core and
  the marts: the point where every later run used to say "nothing new" and leave the marts wrong for good;
- the marts' publish killed between two mart writes, before and after the one swap (a small process building the
  marts on the warehouse the first kill left, so no Prefect start per point).
Each recovery is the real nightly flow, in-process on the session's Prefect test API.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from transforms.core import read_core_meta
from transforms.marts import MARTS
from warehouse.views import connect

pytestmark = pytest.mark.integration

AS_OF = date(2025, 12, 31)
LATE = "one_stop/dossiers/dongbo_hoso_2025_12.json"  # the second night's new file
KEY = "publish-test-key"
TTHC = str(Path(sys.executable).with_name("tthc"))
ROOT = Path(__file__).resolve().parents[2]
BUILD_MARTS = """
import sys
from datetime import date
from pathlib import Path
sys.path.insert(0, {root!r})
from transforms.marts import build_marts
build_marts(Path({wh!r}), date.fromisoformat({as_of!r}))
"""


def _files(wh: Path) -> dict[str, str]:
    """sha256 of each mart as analysts open it (``<mart>/data.parquet``)."""
    return {m: hashlib.sha256((wh / m / "data.parquet").read_bytes()).hexdigest() for m in MARTS}


def _seen_by_a_reader(wh: Path) -> dict[str, list]:
    con = connect(wh)
    try:
        return {m: con.sql(f'SELECT * FROM "{m}" ORDER BY ALL').fetchall() for m in MARTS}
    finally:
        con.close()


def _night(inbox: Path, wh: Path):
    from flows.nightly import nightly

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TTHC_PSEUDONYM_KEY", KEY)
        return nightly(inbox=str(inbox), warehouse=str(wh), as_of=AS_OF, return_state=True)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def _marked(mark: str) -> list[str]:
    """Processes whose environment carries ``mark`` (every process a run starts inherits it), as 'pid command'."""
    out = []
    for e in os.listdir("/proc"):
        if not e.isdigit() or int(e) == os.getpid():
            continue
        try:
            env = Path(f"/proc/{e}/environ").read_bytes()
            if f"TTHC_TEST_RUN_MARK={mark}".encode() in env.split(b"\0"):
                stat = Path(f"/proc/{e}/stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                    cmd = Path(f"/proc/{e}/cmdline").read_bytes().replace(b"\0", b" ")[:120]
                    out.append(f"{e} {cmd!r}")
        except OSError:
            continue
    return out


@dataclass
class Nights:
    inbox2: Path
    night1: Path  # the warehouse after a clean first night
    marts1: dict  # its marts
    clean: dict  # the marts after a clean second night
    clean_seen: dict


@pytest.fixture(scope="module")
def nights(prefect_harness, tmp_path_factory) -> Nights:
    from devkit.sample import generate_inbox

    root = tmp_path_factory.mktemp("publish")
    inbox2 = root / "inbox2"
    generate_inbox(inbox2, seed=5, scale=0.05)
    # a small night: the catalogue and the dossiers (no spreadsheet, no other entity: every file costs its gate)
    for extra in [*inbox2.glob("dvc_portal/[!p]*"), *inbox2.glob("one_stop/dossiers/*.xlsx")]:
        shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
    inbox1 = _copy(inbox2, root / "inbox1")
    (inbox1 / LATE).unlink()
    night1 = root / "night1"
    state = _night(inbox1, night1)
    assert state.is_completed(), state.message
    clean = _copy(night1, root / "clean")
    state = _night(inbox2, clean)
    assert state.is_completed(), state.message
    assert _files(clean) != _files(night1)  # the second night changes every mart
    return Nights(inbox2, night1, _files(night1), _files(clean), _seen_by_a_reader(clean))


@dataclass
class Killed:
    wh: Path
    proc: subprocess.CompletedProcess
    survivors: list[str]
    marts: dict
    seen: dict


@pytest.fixture(scope="module")
def killed(nights, tmp_path_factory) -> Killed:
    """A real ``tthc run`` of the second night, on Prefect's temporary server, killed between core and marts."""
    root = tmp_path_factory.mktemp("killed")
    wh = _copy(nights.night1, root / "wh")
    mark = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TTHC_", "PREFECT_API_"))}
    env.update({"TTHC_PSEUDONYM_KEY": KEY, "PREFECT_HOME": str(root / "prefect_home"), "COLUMNS": "200",
                "PREFECT_LOGGING_LEVEL": "WARNING", "TTHC_TEST_KILL_AT": "between_core_and_marts",
                "TTHC_TEST_RUN_MARK": mark})
    try:
        # the output pipes close when the last process holding them ends: a surviving server would hang this
        proc = subprocess.run([TTHC, "run", "--inbox", str(nights.inbox2), "--warehouse", str(wh), "--as-of",
                               AS_OF.isoformat()], env=env, capture_output=True, text=True, timeout=300)
        deadline = time.monotonic() + 15
        while _marked(mark) and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = _marked(mark)
    finally:
        for p in _marked(mark):  # never leave them to the rest of the session
            os.kill(int(p.split()[0]), 9)
    return Killed(wh, proc, survivors, _files(wh), _seen_by_a_reader(wh))


def test_the_run_was_killed_after_core_took_the_new_night_and_before_the_marts(killed, nights):
    assert killed.proc.returncode == -9, killed.proc.stdout[-2000:] + killed.proc.stderr[-2000:]
    night1_core = read_core_meta(nights.night1)["staged"]["stg_one_stop__dossiers"]
    assert len(read_core_meta(killed.wh)["staged"]["stg_one_stop__dossiers"]) == len(night1_core) + 1


def test_the_killed_run_leaves_the_first_nights_marts_whole(killed, nights):
    assert killed.marts == nights.marts1
    assert killed.seen == _seen_by_a_reader(nights.night1)


def test_no_process_outlives_the_killed_run(killed):
    assert killed.survivors == []
    # Prefect's temporary API server was running when the run was killed, and the watchdog stopped it
    assert "stopped them" in killed.proc.stderr and "uvicorn" in killed.proc.stderr, killed.proc.stderr[-2000:]


def test_the_next_run_rebuilds_the_marts_exactly_as_a_clean_night(killed, nights, tmp_path):
    wh = _copy(killed.wh, tmp_path / "wh")
    state = _night(nights.inbox2, wh)
    assert state.is_completed(), state.message
    assert _files(wh) == nights.clean
    from warehouse.ledger import Ledger

    led = Ledger(f"sqlite:///{wh / '_ledger.sqlite'}")
    try:
        build = json.loads(led.recent_runs(1)[0]["summary_json"])["build"]
    finally:
        led.dispose()
    assert build["rebuild"] == "full" and "core was updated after the published marts" in build["reason"]


def test_a_publish_killed_at_any_point_shows_one_generation_and_the_next_run_finishes_it(killed, nights, tmp_path):
    """Killed between two mart writes, then before the swap, then after it (each build starting from what the
    previous kill left): a reader always sees all three marts of one night, by the views and by the files alike."""
    wh = _copy(killed.wh, tmp_path / "wh")
    code = BUILD_MARTS.format(root=str(ROOT), wh=str(wh), as_of=AS_OF.isoformat())
    for point, published in [("between_mart_writes", "first"), ("before_publish_swap", "first"),
                             ("after_publish_swap", "second")]:
        res = subprocess.run([sys.executable, "-c", code], env={**os.environ, "TTHC_TEST_KILL_AT": point},
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == -9, (point, res.stderr[-2000:])
        assert _files(wh) == (nights.marts1 if published == "first" else nights.clean), point
        assert _seen_by_a_reader(wh) == (killed.seen if published == "first" else nights.clean_seen), point
    assert len(list((wh / "_marts").iterdir())) > 3  # what the killed publishes left
    state = _night(nights.inbox2, wh)
    assert state.is_completed(), state.message
    assert _files(wh) == nights.clean
    # what the killed publishes left is gone: the current generation and the one before it remain
    gens = sorted(p.name for p in (wh / "_marts").iterdir())
    assert len(gens) == 3 and "current" in gens, gens
    assert sorted(p.name for p in wh.iterdir() if p.name.startswith(".") and p.name != ".lock") == []
