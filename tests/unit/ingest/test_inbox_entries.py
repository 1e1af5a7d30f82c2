"""Every entry under the inbox is read or listed with its reason, and one unreadable file never costs the night.

Real entries only: hidden and temporary files, a name holding backslashes or control characters or bytes that
are not UTF-8, links leading outside the inbox or nowhere, a named pipe, a socket; an unreadable file really
unreadable (mode 000, read by an unprivileged user: root ignores file modes), a file gone between discovery and
reading.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from transforms import ingest
from warehouse.ledger import Ledger

ROOT = Path(__file__).resolve().parents[3]


def _touch(root: Path, rel: str | bytes, data: bytes = b"x") -> Path:
    p = Path(os.fsdecode(os.path.join(os.fsencode(root), os.fsencode(rel))))
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


DOSSIER_CSV = "Mã hồ sơ,Mã TTHC,Mã đơn vị,Ngày tiếp nhận,Ngày hẹn trả,Trạng thái,Ngày cập nhật\n".encode()


@pytest.fixture
def odd_inbox(tmp_path):
    """An inbox holding one of every kind of entry an office's share accumulates."""
    inbox = tmp_path / "in"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "hoso_secret.csv").write_bytes(DOSSIER_CSV)
    (outside / "folder").mkdir()
    d = "one_stop/dossiers"
    good = _touch(inbox, f"{d}/hoso_2024.csv", DOSSIER_CSV)
    for rel in (".hoso_an.csv", f"{d}/.hoso_an.csv", f"{d}/~$DanhSach.xlsx", f"{d}/hoso.csv~", f"{d}/.hoso.csv.swp",
                f"{d}/export.tmp", f"{d}/hoso_2025.csv.part", f"{d}/hoso_2025.csv.crdownload", f"{d}/Thumbs.db",
                "dvc_portal/desktop.ini", f"{d}/huong_dan.pdf", f"{d}/.~lock.hoso_2024.csv#", f"{d}/._hoso_2024.csv",
                f"{d}/.DS_Store", ".git/config", ".git/HEAD",
                f"{d}/..\\..\\hoso_2024.csv", f"{d}/hoso\x07chuong.csv", b"one_stop/dossiers/ho\xe0so.csv",
                f"{d}/hoso.xls", f"{d}/hoso.txt", f"{d}/noi_dung", f"{d}/lien_ket.lnk", "lac_cho/hoso.csv"):
        _touch(inbox, rel, DOSSIER_CSV + os.fsencode(rel))  # each its own content (a copy is another matter)
    os.symlink(outside / "hoso_secret.csv", inbox / d / "link_out.csv")
    os.symlink("../../../outside/folder", inbox / d / "link_out_dir")
    os.symlink("nothing_here.csv", inbox / d / "broken_link.csv")
    os.symlink("hoso_2024.csv", inbox / d / "link_in.csv")
    os.symlink("../one_stop", inbox / "dvc_portal" / "one_stop_again")
    os.mkfifo(inbox / d / "pipe.csv")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(inbox / d / "sock.csv"))
    yield inbox, good
    sock.close()


# entry -> (listed status or None when its bytes are opened, words of its reason)
EXPECTED = {
    ".hoso_an.csv": ("skipped", "hidden file (name starts with '.')"),
    "one_stop/dossiers/.hoso_an.csv": ("skipped", "hidden file"),
    "one_stop/dossiers/~$DanhSach.xlsx": ("skipped", "Office lock or temporary file"),
    "one_stop/dossiers/hoso.csv~": ("skipped", "temporary, backup or partly downloaded"),
    "one_stop/dossiers/.hoso.csv.swp": ("skipped", "hidden file"),
    "one_stop/dossiers/export.tmp": ("skipped", "temporary, backup or partly downloaded"),
    "one_stop/dossiers/hoso_2025.csv.part": ("skipped", "partly downloaded"),
    "one_stop/dossiers/hoso_2025.csv.crdownload": ("skipped", "partly downloaded"),
    "one_stop/dossiers/Thumbs.db": ("skipped", "system file"),
    "dvc_portal/desktop.ini": ("skipped", "system file"),
    "one_stop/dossiers/huong_dan.pdf": ("skipped", "not a data file"),
    "one_stop/dossiers/.~lock.hoso_2024.csv#": ("skipped", "LibreOffice lock file"),
    "one_stop/dossiers/._hoso_2024.csv": ("skipped", "macOS resource copy"),
    "one_stop/dossiers/.DS_Store": ("skipped", "macOS folder settings"),
    ".git/": ("skipped", "hidden folder (name starts with '.'): its 2 file(s) are not read"),
    "dvc_portal/one_stop_again/": ("skipped", "link to the inbox folder one_stop: its files are read there"),
    "one_stop/dossiers/..\\..\\hoso_2024.csv": (None, "its name holds backslashes"),
    "one_stop/dossiers/hoso\\x07chuong.csv": (None, "its name holds control characters"),
    "one_stop/dossiers/ho\\xe0so.csv": (None, "its name is not valid UTF-8 text"),
    "one_stop/dossiers/hoso.xls": (None, "unsupported file type '.xls'"),
    "one_stop/dossiers/hoso.txt": (None, "unsupported file type '.txt'"),
    "one_stop/dossiers/noi_dung": (None, "unsupported file type ''"),
    "one_stop/dossiers/lien_ket.lnk": (None, "a Windows shortcut"),
    "lac_cho/hoso.csv": (None, "not under <source>/<entity>/"),
    "one_stop/dossiers/link_out.csv": ("rejected", "link leading outside the inbox"),
    "one_stop/dossiers/link_out_dir": ("rejected", "link leading outside the inbox"),
    "one_stop/dossiers/broken_link.csv": ("rejected", "broken link (leads to nothing_here.csv"),
    "one_stop/dossiers/pipe.csv": ("rejected", "not a regular file but a named pipe"),
    "one_stop/dossiers/sock.csv": ("rejected", "not a regular file but a socket"),
    "one_stop/dossiers/hoso_2024.csv": (None, None),
    "one_stop/dossiers/link_in.csv": (None, None),  # a link to a file of the inbox is read like the file
}


def test_every_entry_is_read_or_listed_with_its_reason(odd_inbox):
    inbox, good = odd_inbox
    found = {f.rel: f for f in ingest.discover(inbox)}
    assert set(found) == set(EXPECTED)  # nothing left out (the root's agencies.csv would be, there is none)
    for rel, (listed, why) in EXPECTED.items():
        f = found[rel]
        assert f.listed == listed, (rel, f.listed, f.problem)
        if why is None:
            assert f.problem is None, (rel, f.problem)
        else:
            assert why in f.problem, (rel, f.problem)
    assert found["one_stop/dossiers/link_in.csv"].source == "one_stop" and found[
        "one_stop/dossiers/hoso_2024.csv"].path == good


def test_listed_entries_reach_the_ledger_once_and_refused_ones_are_never_opened(odd_inbox, tmp_path):
    inbox, _good = odd_inbox
    wh = tmp_path / "wh"
    wh.mkdir()
    ledger = Ledger(f"sqlite:///{wh / '_ledger.sqlite'}")
    try:
        files = [f for f in ingest.discover(inbox) if f.problem is not None]
        t0 = time.perf_counter()
        outs = {f.rel: ingest.ingest_file(f, warehouse=wh, ledger=ledger, run_id="r1", agency_codes=[],
                                          pseudonym_key=b"k") for f in files}
        assert time.perf_counter() - t0 < 30  # the pipe was not opened (that would wait for a writer for ever)
        rows = {b["path"]: b for b in ledger.batches_of_run("r1")}
        assert set(rows) == set(outs)  # every listed entry has its ledger row, with its reason
        for rel, (listed, why) in EXPECTED.items():
            if why is None:
                continue
            o, b = outs[rel], rows[rel]
            assert o.status == b["status"] == (listed or "rejected"), (rel, o.status, b["status"])
            assert why in o.error and o.error == b["error"] and o.error.startswith(rel)
            if listed:  # decided without reading: no hash of what a link leads to, of a pipe, of a hidden file
                assert b["sha256"] is None, rel
            else:
                assert b["sha256"] is not None, rel
        assert not any(d.name.startswith(("raw_", "stg_")) for d in wh.iterdir())
        # the next night: hidden and temporary files unchanged are not listed again as new; a name problem is
        # 'rejected before'; links and special files are refused again (nothing can tell they did not change)
        again = {f.rel: ingest.ingest_file(f, warehouse=wh, ledger=ledger, run_id="r2", agency_codes=[],
                                           pseudonym_key=b"k") for f in files}
        for rel, (listed, _why) in EXPECTED.items():
            if rel in again:
                want = {"skipped": "skipped_before", None: "rejected_before", "rejected": "rejected"}[listed]
                assert again[rel].status == want, (rel, again[rel].status)
        assert {b["status"] for b in ledger.batches_of_run("r2")} == {"rejected"}
        s = ingest.summarize(list(outs.values()))
        assert s["skipped"] == sum(v[0] == "skipped" for v in EXPECTED.values()) and s["files"] == len(outs)
    finally:
        ledger.dispose()


# ------------------------------------------------------------------------------------- unreadable files
_SCRIPT = r"""
import json, sys
from pathlib import Path
from transforms import ingest
from warehouse.ledger import Ledger

inbox, wh = Path(sys.argv[1]), Path(sys.argv[2])
ledger = Ledger(f"sqlite:///{wh / '_ledger.sqlite'}")
codes = [a["agency_code"] for a in ingest.load_agencies(inbox / "agencies.csv")]
outs = [ingest.ingest_file(f, warehouse=wh, ledger=ledger, run_id="r1", agency_codes=codes, pseudonym_key=b"k")
        for f in ingest.discover(inbox)]
print(json.dumps([o.as_dict() for o in outs]))
"""


def _without_file_override() -> None:
    """In the child before exec: root loses CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from its bounding set, so
    file modes apply to it as to anyone (a mode 000 file is then really unreadable)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def run_as_anyone(args: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: int = 300):
    """Run ``args`` where file permissions bind: as this user, or as root without its override of file modes."""
    kw = {"preexec_fn": _without_file_override} if os.geteuid() == 0 else {}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, **kw)


def test_a_file_that_cannot_be_read_is_its_failure_and_the_next_files_are_ingested(tmp_path):
    from devkit.sample import generate_inbox

    inbox, wh = tmp_path / "in", tmp_path / "wh"
    manifest = generate_inbox(inbox, seed=3, scale=0.02)
    wh.mkdir()
    entries = sorted(f["path"] for f in manifest["files"])
    keep = [entries[0], [e for e in entries if e.endswith(".csv")][-1]]  # two files, read after the locked one
    for e in set(entries) - set(keep):
        (inbox / e).unlink()
    entries = keep
    locked_rel = "dvc_portal/e_certifications/0_khoa.csv"  # read first: every file after it must still get in
    shutil.copyfile(inbox / entries[0], inbox / locked_rel)
    os.chmod(inbox / locked_rel, 0)
    locked_dir = inbox / "dvc_portal" / "procedures"  # a folder nobody may list
    locked_dir.mkdir(exist_ok=True)
    (locked_dir / "danhmuc.csv").write_bytes(b"x")
    os.chmod(locked_dir, 0)
    res = run_as_anyone([sys.executable, "-c", _SCRIPT, str(inbox), str(wh)], cwd=ROOT,
                        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    outs = {o["rel"]: o for o in json.loads(res.stdout)}
    locked = outs[locked_rel]
    assert locked["status"] == "failed"
    assert locked["error"] == (f"cannot read file {locked_rel}: permission denied; ask the operator to fix its "
                               f"permissions")
    for rel in entries:
        assert outs[rel]["status"] == "staged", (rel, outs[rel])
    ledger = Ledger(f"sqlite:///{wh / '_ledger.sqlite'}")
    try:
        rows = {b["path"]: b for b in ledger.batches_of_run("r1")}
    finally:
        ledger.dispose()
    assert rows[locked_rel]["status"] == "failed" and rows[locked_rel]["error"] == locked["error"]
    assert not list(wh.glob(f"*/{locked['batch_id']}.parquet"))
    folder = outs["dvc_portal/procedures/"]
    assert folder["status"] == rows["dvc_portal/procedures/"]["status"] == "failed"
    assert folder["error"] == ("dvc_portal/procedures/: cannot list this folder: permission denied; ask the operator "
                               "to fix its permissions")
    os.chmod(locked_dir, 0o755)  # (for the clean-up)


def test_a_file_gone_between_discovery_and_reading_is_its_failure(tmp_path):
    inbox, wh = tmp_path / "in", tmp_path / "wh"
    wh.mkdir()
    p = _touch(inbox, "one_stop/dossiers/hoso.csv", DOSSIER_CSV)
    (f,) = ingest.discover(inbox)
    p.unlink()
    ledger = Ledger(f"sqlite:///{wh / '_ledger.sqlite'}")
    try:
        out = ingest.ingest_file(f, warehouse=wh, ledger=ledger, run_id="r1", agency_codes=[], pseudonym_key=b"k")
        (row,) = ledger.batches_of_run("r1")
    finally:
        ledger.dispose()
    assert out.status == row["status"] == "failed"
    assert out.error.startswith("cannot read file one_stop/dossiers/hoso.csv: it disappeared")
    assert row["error"] == out.error


def test_whose_fault_an_os_error_is(tmp_path):
    """The file's own problems are its failure; a full or read-only warehouse, another file's error, and transient
    I/O are not (they are raised: the run fails, or the flow's task retries the file)."""
    inbox = tmp_path / "in"
    p = _touch(inbox, "one_stop/dossiers/hoso.csv", DOSSIER_CSV)
    (f,) = ingest.discover(inbox)
    mine = str(p)
    assert "permission denied" in ingest.input_error(PermissionError(errno.EACCES, "Permission denied", mine), f)
    assert "disappeared" in ingest.input_error(FileNotFoundError(errno.ENOENT, "No such file", mine), f)
    assert "Is a directory" in ingest.input_error(IsADirectoryError(errno.EISDIR, "Is a directory", mine), f)
    warehouse_file = str(tmp_path / "wh" / "raw_x" / "b1.parquet")
    assert ingest.input_error(PermissionError(errno.EACCES, "Permission denied", warehouse_file), f) is None
    assert ingest.input_error(OSError(errno.ENOSPC, "No space left on device", warehouse_file), f) is None
    assert ingest.input_error(OSError(errno.ENOSPC, "No space left on device"), f) is None
    assert ingest.input_error(OSError(errno.EROFS, "Read-only file system", mine), f) is None
    assert ingest.input_error(OSError(errno.EIO, "Input/output error", mine), f) is None  # transient: retried
    # raised without a file name (pyarrow): blamed on the input only when the input cannot be opened now
    assert ingest.input_error(PermissionError(errno.EACCES, "Permission denied"), f) is None
    p.unlink()
    assert "disappeared" in ingest.input_error(OSError(errno.EACCES, "Permission denied"), f)
    assert ingest.input_error(ValueError("not an OSError"), f) is None


def test_a_pipe_named_like_an_export_is_refused_without_waiting(tmp_path):
    """Opening a FIFO for reading waits for a writer: discovery looks at what the entry is, never opens it."""
    inbox = tmp_path / "in"
    (inbox / "one_stop" / "dossiers").mkdir(parents=True)
    os.mkfifo(inbox / "one_stop" / "dossiers" / "hoso.csv")
    (f,) = ingest.discover(inbox)
    assert f.listed == "rejected" and "named pipe" in f.problem
    assert stat.S_ISFIFO(os.lstat(f.path).st_mode)
