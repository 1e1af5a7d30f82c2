"""Nights on an office's real inbox: every entry accounted for, one unreadable file or a broken agencies.csv never
costs the night, and the operator reads sentences, never a traceback.

One warehouse, three nights over one inbox (the nights share the Prefect harness; each costs seconds):
1. agencies.csv as an office saves it (Windows-1258, ';', DD/MM/YYYY) and odd entries beside the exports
   (hidden, Office lock, partial download, hidden folder, a document, a name holding backslashes, a link leading
   outside, an .xls): the exports are all staged and passed, core carries the list, every odd entry is in the
   ledger, the run summary and the report with its reason; the run fails for the rejected ones only.
2. agencies.csv broken (a duplicate code, an unknown successor) and a new export: the export is ingested and gated
   with the last good list, core and marts are built from it, the run fails saying where the list is broken and
   which list was used.
3. ``tthc run`` in a subprocess (file modes binding, even for root), the list still broken, a mode 000 export and
   a new export after it: exit 1, the unreadable file named with what to do, the next export passed, no traceback.
And a fresh warehouse whose inbox has no agencies.csv and no list was ever kept: nothing ingested, no table
built, a critical message, exit 1, no traceback.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pytest

from warehouse import store
from warehouse.ledger import Ledger

pytestmark = pytest.mark.integration
AS_OF = date(2025, 12, 31)
ROOT = Path(__file__).resolve().parents[2]
TTHC = Path(sys.executable).parent / "tthc"

# entry -> (ledger status of night 1, words of its reason)
ODD = {
    ".hoso_an.csv": ("skipped", "hidden file"),
    "huong_dan.pdf": ("skipped", "not a data file"),
    "one_stop/dossiers/~$DanhSachHoSo.xlsx": ("skipped", "Office lock or temporary file"),
    "one_stop/dossiers/export_2025.csv.part": ("skipped", "partly downloaded"),
    "one_stop/.tam/": ("skipped", "hidden folder"),
    "one_stop/dossiers/..\\..\\hoso_2024.csv": ("rejected", "its name holds backslashes"),
    "one_stop/dossiers/link_ngoai.csv": ("rejected", "link leading outside the inbox"),
    "dvc_portal/payments/thanhtoan.xls": ("rejected", "unsupported file type '.xls'"),
}


def _office_agencies(path: Path) -> list[list[str]]:
    """Rewrite the generated agencies.csv as a Vietnamese Windows Excel saves it; returns its rows."""
    from devkit.sample.encodings import encode_cp1258

    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    out = []
    for r in rows:
        out.append([re.sub(r"^(\d{4})-(\d\d)-(\d\d)$", r"\3/\2/\1", v) for v in r])
    buf = io.StringIO()
    csv.writer(buf, delimiter=";", lineterminator="\r\n").writerows(out)
    path.write_bytes(encode_cp1258(buf.getvalue()))
    return rows[1:]


def _copy_changed(src: Path, dst: Path, old: str, new: str) -> None:
    dst.write_text(src.read_text(encoding="utf-8-sig").replace(old, new), encoding="utf-8")


def _core_agencies(wh: Path) -> list[tuple]:
    con = duckdb.connect()
    try:
        return con.execute(f"SELECT agency_code, valid_from, valid_to, successor_code FROM "
                           f"read_parquet('{store.table_glob(wh, 'core_agencies')}') ORDER BY 1").fetchall()
    finally:
        con.close()


def _ledger(wh: Path):
    return Ledger(f"sqlite:///{wh / '_ledger.sqlite'}")


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTHC_")}
    # the code under test (this checkout) whatever the environment's install points at
    env.update({"TTHC_PSEUDONYM_KEY": "inbox-nights-key", "PREFECT_LOGGING_LEVEL": "WARNING",
                "PYTHONPATH": str(ROOT)})
    env.update(extra or {})
    return env


def _without_file_override() -> None:
    """In the child before exec: root loses CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (bounding set), so file modes
    bind it as anyone (a mode 000 file is really unreadable)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def tthc_run(inbox: Path, wh: Path, api_url: str) -> subprocess.CompletedProcess:
    """``tthc run`` as an operator runs it, against the session's Prefect API, file modes binding."""
    kw = {"preexec_fn": _without_file_override} if os.geteuid() == 0 else {}
    return subprocess.run([str(TTHC), "run", "--inbox", str(inbox), "--warehouse", str(wh), "--as-of",
                           AS_OF.isoformat()], cwd=ROOT, env=_env({"PREFECT_API_URL": api_url}),
                          capture_output=True, text=True, timeout=600, **kw)


@dataclass
class Nights:
    inbox: Path
    wh: Path
    manifest: dict
    agencies: list[list[str]]
    state1: object
    state2: object
    run3: subprocess.CompletedProcess
    runs: list[dict]  # newest first
    batches: dict[str, list[dict]]  # run id -> its batches
    core1: list[tuple]
    core2: list[tuple]
    kept1: bytes
    kept2: bytes
    new2: str
    new3: str
    locked3: str


@pytest.fixture(scope="module")
def nights(prefect_harness, tmp_path_factory) -> Nights:
    from prefect.settings import PREFECT_API_URL

    from flows.nightly import nightly
    from devkit.sample import generate_inbox

    root = tmp_path_factory.mktemp("inbox_nights")
    inbox, wh, outside = root / "inbox", root / "wh", root / "elsewhere"
    manifest = generate_inbox(inbox, seed=5, scale=0.02)
    agencies = _office_agencies(inbox / "agencies.csv")
    dossier = next(p for p in sorted((inbox / "one_stop" / "dossiers").glob("*.csv")) if "cp1258" not in p.name
                   and "loi_font" not in p.name)
    outside.mkdir()
    _copy_changed(dossier, outside / "hoso_ngoai.csv", "Mã hồ sơ", "Mã hồ sơ")
    for rel in ODD:
        p = inbox / rel
        if rel.endswith("/"):
            p.mkdir(parents=True)
            (p / "hoso.csv").write_bytes(dossier.read_bytes())
        elif rel.endswith("link_ngoai.csv"):
            os.symlink(outside / "hoso_ngoai.csv", p)
        else:
            p.write_bytes(dossier.read_bytes() + rel.encode())
    env = _env()

    def run():
        with pytest.MonkeyPatch.context() as mp:
            for k in [k for k in os.environ if k.startswith("TTHC_")]:
                mp.delenv(k)
            for k, v in env.items():
                mp.setenv(k, v)
            return nightly(inbox=str(inbox), warehouse=str(wh), as_of=AS_OF, return_state=True)

    state1 = run()
    core1 = _core_agencies(wh)
    kept1 = (wh / "_config" / "agencies.last_good.csv").read_bytes()

    # night 2: the list broken; a new ratings export
    from devkit.sample.encodings import encode_cp1258

    text = (inbox / "agencies.csv").read_bytes()
    broken = text + encode_cp1258(f"{agencies[0][0]};Trùng mã;province;;01/01/2023;;H00.404;x\r\n")
    (inbox / "agencies.csv").write_bytes(broken)
    rating = next((inbox / "dvc_portal" / "ratings").glob("*.csv"))
    new2 = "dvc_portal/ratings/danhgia_them.csv"
    _copy_changed(rating, inbox / new2, "DG", "DX")
    state2 = run()
    core2 = _core_agencies(wh)
    kept2 = (wh / "_config" / "agencies.last_good.csv").read_bytes()

    # night 3: tthc run in a subprocess; an unreadable export, then a new one after it
    locked3 = "dvc_portal/feedback/0_khoa.csv"
    feedback = next(p for p in sorted((inbox / "dvc_portal" / "feedback").glob("*.csv")) if p.name != "0_khoa.csv")
    _copy_changed(feedback, inbox / locked3, "PAKN-", "PAKZ-")
    os.chmod(inbox / locked3, 0)
    new3 = "dvc_portal/feedback/pakn_them.csv"
    _copy_changed(feedback, inbox / new3, "PAKN-", "PAKY-")
    run3 = tthc_run(inbox, wh, PREFECT_API_URL.value())
    os.chmod(inbox / locked3, 0o644)

    led = _ledger(wh)
    try:
        runs = led.recent_runs(10)
        batches = {r["run_id"]: led.batches_of_run(r["run_id"]) for r in runs}
    finally:
        led.dispose()
    return Nights(inbox, wh, manifest, agencies, state1, state2, run3, runs, batches, core1, core2, kept1, kept2,
                  new2, new3, locked3)


def _night_batches(n: Nights, i: int) -> dict[str, dict]:
    """Batches of night ``i`` (1-based) by path."""
    run = n.runs[len(n.runs) - i]
    return {b["path"]: b for b in n.batches[run["run_id"]]}


def _summary(n: Nights, i: int) -> dict:
    return json.loads(n.runs[len(n.runs) - i]["summary_json"])


def test_night1_reads_the_office_agency_list_and_every_export(nights):
    assert len(nights.runs) == 3
    by_path = _night_batches(nights, 1)
    for f in nights.manifest["files"]:
        if f.get("expect") == "reject":
            continue
        b = by_path[f["path"]]
        assert b["status"] == "passed", (f["path"], b["status"], b["error"])
    got = {c: (vf, vt, s) for c, vf, vt, s in nights.core1}
    for r in nights.agencies:
        code, vf, vt, succ = r[0], r[4], r[5], r[6]
        assert got[code] == (date.fromisoformat(vf), date.fromisoformat(vt) if vt else None, succ or None), code
    assert len(got) == len(nights.agencies)
    assert any(t.startswith("mart_") for t in store.list_tables(nights.wh))


def test_night1_accounts_for_every_odd_entry(nights):
    by_path = _night_batches(nights, 1)
    for rel, (status, why) in ODD.items():
        b = by_path[rel]
        assert b["status"] == status and why in b["error"] and b["error"].startswith(rel), (rel, b)
    s = _summary(nights, 1)
    assert s["skipped"] == sum(v[0] == "skipped" for v in ODD.values())
    assert s["rejected"] == sum(v[0] == "rejected" for v in ODD.values())
    # the run fails for the rejected entries (named), not for the ones only listed
    msg = nights.state1.message
    assert nights.state1.is_failed()
    for rel, (status, _why) in ODD.items():
        assert (rel in msg) == (status == "rejected"), rel
    report = Path(s["report"]).read_text(encoding="utf-8")
    import html

    for rel in ODD:  # the report lists each one, with its reason
        assert html.escape(rel, quote=True) in report, rel
    # nothing of them was read: no raw row comes from a file outside the manifest
    con = duckdb.connect()
    try:
        files = {r[0] for t in store.list_tables(nights.wh) if t.startswith("raw_") for r in con.execute(
            f"SELECT DISTINCT _source_file FROM read_parquet('{store.table_glob(nights.wh, t)}')").fetchall()}
    finally:
        con.close()
    assert not files & set(ODD)


def test_night2_broken_list_uses_the_last_good_one_and_says_so(nights):
    assert nights.state2.is_failed()
    msg = nights.state2.message
    src = nights.inbox / "agencies.csv"
    n_lines = len(nights.agencies) + 2
    code = nights.agencies[0][0]
    assert f"{src}, line {n_lines}, column agency_code: {code} is listed twice (first on line 2)" in msg
    assert f"{src}, line {n_lines}, column successor_code: H00.404 is not an agency of this file" in msg
    assert re.search(r"The last good list \(read cleanly on \d{4}-\d\d-\d\d\) was used", msg), msg
    b = _night_batches(nights, 2)[nights.new2]
    assert b["status"] == "passed" and b["rows_quarantined"] == 0, b  # the last good list's codes
    assert nights.core2 == nights.core1  # core built from the last good list
    assert nights.kept2 == nights.kept1  # a broken list never replaces the kept one
    s = _summary(nights, 2)
    assert s["agencies"].startswith("broken; the last good list of")
    assert s["rebuild"] in ("incremental", "full")
    # entries only listed, unchanged, are not listed as new again (nor alerted), but still counted
    assert s["skipped"] == 0 and s["skipped_before"] == sum(v[0] == "skipped" for v in ODD.values())
    assert not any(x["status"] == "skipped" for x in nights.batches[nights.runs[1]["run_id"]])


def test_night3_tthc_run_names_the_unreadable_file_and_goes_on_without_a_traceback(nights):
    r = nights.run3
    out = r.stdout + r.stderr
    assert r.returncode == 1, out[-3000:]
    assert "Traceback" not in out
    flat = " ".join(out.split())
    assert "permission denied; ask the operator to fix its permissions" in flat, out[-3000:]
    assert nights.locked3 in flat
    assert "agencies.csv is broken" in flat and "was used" in flat
    by_path = _night_batches(nights, 3)
    assert by_path[nights.locked3]["status"] == "failed"
    assert by_path[nights.new3]["status"] == "passed"  # read after the unreadable one


def test_no_list_ever_kept_ingests_nothing_and_fails_in_words(prefect_harness, tmp_path):
    from prefect.settings import PREFECT_API_URL

    from devkit.sample import generate_inbox

    inbox, wh = tmp_path / "inbox", tmp_path / "wh"
    generate_inbox(inbox, seed=5, scale=0.02)
    (inbox / "agencies.csv").unlink()
    r = tthc_run(inbox, wh, PREFECT_API_URL.value())
    out = r.stdout + r.stderr
    assert r.returncode == 1, out[-3000:]
    assert "Traceback" not in out
    flat = " ".join(out.split())
    assert "CRITICAL: agencies.csv is unusable and no good list was ever kept" in flat, out[-3000:]
    assert f"{inbox / 'agencies.csv'}: agencies file not found" in flat
    assert store.list_tables(wh) == []  # nothing ingested, nothing built
    led = _ledger(wh)
    try:
        (run,) = led.recent_runs(5)
        assert led.batches_of_run(run["run_id"]) == []
    finally:
        led.dispose()
    s = json.loads(run["summary_json"])
    assert run["status"] == "failed" and s["waiting"] > 0 and s["files"] == 0
    assert shutil.which("tthc", path=str(TTHC.parent))
