"""transforms.ingest without Prefect: inbox discovery on odd layouts, one file as one batch (rejected, duplicate by
content, staged) against a SQLite ledger. agencies.csv: ../agencies/test_agencies.py; odd entries and unreadable files:
test_inbox_entries.py."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from transforms import ingest
from warehouse.ledger import Ledger

# ---------------------------------------------------------------- discover
def _touch(root, rel, data=b"x"):
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def test_discover_on_odd_layouts(tmp_path):
    good = ["one_stop/dossiers/a.csv", "one_stop/dossiers/B.XLSX", "dvc_portal/payments/p.jsonl",
            "dvc_portal/feedback/f.json"]
    odd = {
        "notes.txt": "not under <source>/<entity>/",
        "one_stop/loose.csv": "not under <source>/<entity>/",
        "one_stop/dossiers/2024/deep.csv": "not under <source>/<entity>/",
        "dvc_portal/dossiers/wrong_source.csv": "not under <source>/<entity>/",
        "other_system/things/x.csv": "not under <source>/<entity>/",
        "one_stop/dossiers/old.xls": "unsupported file type '.xls'",
        "dvc_portal/ratings/readme": "unsupported file type ''",
    }
    only_listed = {"one_stop/dossiers/.~lock.a.csv#": "LibreOffice lock file",
                   "dvc_portal/payments/.partial.jsonl": "hidden file (name starts with '.')"}
    config = ["agencies.csv", "manifest.json", "README.md"]
    for rel in good + list(odd) + list(only_listed) + config:
        _touch(tmp_path, rel)
    (tmp_path / "dvc_portal" / "procedures").mkdir(parents=True)  # an empty folder is nothing
    found = ingest.discover(tmp_path)
    by_rel = {f.rel: f for f in found}
    assert set(by_rel) == set(good) | set(odd) | set(only_listed)  # only the root's configuration is left out
    assert [f.rel for f in found] == sorted(by_rel)  # a stable order
    for rel in good:
        f = by_rel[rel]
        assert f.problem is None and f.listed is None and f.path == tmp_path / rel
        assert (f.source, f.entity) == tuple(rel.split("/")[:2])
    assert by_rel["one_stop/dossiers/B.XLSX"].kind == "xlsx"
    assert by_rel["dvc_portal/payments/p.jsonl"].kind == "jsonl"
    for rel, why in odd.items():
        assert why in by_rel[rel].problem and by_rel[rel].listed is None, (rel, by_rel[rel].problem)
    for rel, why in only_listed.items():
        assert why in by_rel[rel].problem and by_rel[rel].listed == "skipped", (rel, by_rel[rel].problem)
    assert by_rel["one_stop/dossiers/old.xls"].source == "one_stop"  # the folder is right, only the type is not
    assert by_rel["other_system/things/x.csv"].source is None


def test_discover_nested_config_names_are_not_skipped(tmp_path):
    """Only the inbox root's agencies.csv is configuration; one deeper is a misplaced file and is reported."""
    _touch(tmp_path, "one_stop/agencies.csv")
    (f,) = ingest.discover(tmp_path)
    assert f.rel == "one_stop/agencies.csv" and f.problem


def test_discover_empty_or_absent_inbox(tmp_path):
    assert ingest.discover(tmp_path) == []
    assert ingest.discover(tmp_path / "absent") == []


# ---------------------------------------------------------------- one file = one batch
@pytest.fixture
def small_inbox(tmp_path_factory):
    from devkit.sample import generate_inbox

    root = tmp_path_factory.mktemp("inbox")
    manifest = generate_inbox(root, seed=3, scale=0.02)
    return root, manifest


@dataclass
class Desk:
    """A sample inbox and an empty warehouse with its SQLite ledger: files go in one at a time."""
    inbox: Path
    manifest: dict
    wh: Path
    ledger: Ledger
    codes: list[str]

    def entry(self, name: str) -> dict:
        return next(f for f in self.manifest["files"] if f["path"].endswith(name))

    def file(self, rel: str, inbox: Path | None = None) -> ingest.InboxFile:
        return {f.rel: f for f in ingest.discover(inbox or self.inbox)}[rel]

    def take(self, f: ingest.InboxFile, run_id: str) -> ingest.FileOutcome:
        return ingest.ingest_file(f, warehouse=self.wh, ledger=self.ledger, run_id=run_id, agency_codes=self.codes,
                                  pseudonym_key=b"k")


@pytest.fixture
def desk(tmp_path, small_inbox):
    inbox, manifest = small_inbox
    wh = tmp_path / "wh"
    wh.mkdir()
    ledger = Ledger(f"sqlite:///{wh / '_ledger.sqlite'}")
    try:
        codes = [a["agency_code"] for a in ingest.load_agencies(inbox / "agencies.csv")]
        yield Desk(inbox, manifest, wh, ledger, codes)
    finally:
        ledger.dispose()


def test_ingest_file_stages_once_then_duplicates_by_content(desk):
    entry = desk.entry("thanhtoan_2023_2024.csv")
    wh, ledger = desk.wh, desk.ledger
    out = desk.take(desk.file(entry["path"]), "r1")
    assert out.status == "staged", out.error
    assert out.rows_raw == entry["data_rows"] == out.rows_staged + out.rows_quarantined
    assert out.sha256 == entry["sha256"]
    assert (wh / "raw_dvc_portal__payments" / f"{out.batch_id}.parquet").exists()
    assert re.fullmatch(r"b\d{8}T\d{12}-[0-9a-f]{10}", out.batch_id)
    # the same bytes under another name: not ingested again
    copy = desk.inbox / "dvc_portal" / "payments" / "copy_with_another_name.csv"
    shutil.copyfile(desk.inbox / entry["path"], copy)
    again = desk.take(desk.file("dvc_portal/payments/copy_with_another_name.csv"), "r2")
    assert again.status == "duplicate" and again.duplicate_of == out.batch_id
    # named once, with the file it copies: the office sees why it added nothing
    assert entry["path"] in again.error and "not read again" in again.error
    (listed,) = ledger.batches_of_run("r2")
    assert listed["status"] == "duplicate" and listed["path"] == "dvc_portal/payments/copy_with_another_name.csv"
    third = desk.take(desk.file("dvc_portal/payments/copy_with_another_name.csv"), "r3")
    assert third.status == "duplicate" and third.error is None and ledger.batches_of_run("r3") == []
    assert len(list((wh / "raw_dvc_portal__payments").glob("*.parquet"))) == 1
    ledger.check_balance()
    (row,) = ledger.batches_of_run("r1")  # hashed while it was read: the hash still reaches the ledger
    assert row["sha256"] == entry["sha256"] and row["status"] == "staged"


def test_a_copy_found_only_by_its_hash_is_undone(desk, tmp_path, monkeypatch):
    """A file whose size the ledger does not know is hashed while it is staged; if its hash then names a batch
    already taken (here: the size check is made to miss), the new batch's files go and the ledger says why."""
    entry = desk.entry("thanhtoan_2023_2024.csv")
    wh, ledger = desk.wh, desk.ledger
    f = desk.file(entry["path"])
    first = desk.take(f, "r1")
    assert first.status == "staged", first.error
    assert ledger.size_seen(f.path.stat().st_size) and not ledger.size_seen(1)
    work = tmp_path / "inbox2"
    (work / "dvc_portal" / "payments").mkdir(parents=True)
    shutil.copyfile(desk.inbox / entry["path"], work / "dvc_portal" / "payments" / "renamed.csv")
    monkeypatch.setattr(Ledger, "size_seen", lambda self, size: False)
    (g,) = ingest.discover(work)
    again = desk.take(g, "r2")
    assert again.status == "duplicate" and again.duplicate_of == first.batch_id
    (row,) = ledger.batches_of_run("r2")
    assert row["status"] == "duplicate" and first.batch_id in row["error"] and row["sha256"] == entry["sha256"]
    for table in ("raw_dvc_portal__payments", "stg_dvc_portal__payments"):
        assert [p.stem for p in (wh / table).glob("*.parquet")] == [first.batch_id]
    ledger.check_balance()


def test_ingest_file_rejects_a_misplaced_file_once(tmp_path):
    inbox = tmp_path / "in"
    p = _touch(inbox, "unknown_system/things/export.csv", "Mã,Tên\n1,a\n".encode())
    wh = tmp_path / "wh"
    wh.mkdir()
    ledger = Ledger(f"sqlite:///{wh / '_ledger.sqlite'}")
    try:
        (f,) = ingest.discover(inbox)
        out = ingest.ingest_file(f, warehouse=wh, ledger=ledger, run_id="r1", agency_codes=[], pseudonym_key=b"k")
        assert out.status == "rejected"
        assert "unknown_system/things/export.csv" in out.error and "not under <source>/<entity>/" in out.error
        (b,) = ledger.batches_of_run("r1")
        assert b["status"] == "rejected" and b["error"] == out.error
        assert b["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
        again = ingest.ingest_file(f, warehouse=wh, ledger=ledger, run_id="r2", agency_codes=[],
                                   pseudonym_key=b"k")
        # not read again, said so (not "already ingested"), and not a new batch or a new failure of the run
        assert again.status == "rejected_before" and again.duplicate_of == out.batch_id
        assert "not read again" in again.error and "not under <source>/<entity>/" in again.error
        assert ledger.batches_of_run("r2") == []
        assert [d.name for d in wh.iterdir() if not d.name.startswith("_")] == []  # no table was written
    finally:
        ledger.dispose()


def test_a_rejected_file_is_read_again_once_the_reading_rules_change(desk, tmp_path, monkeypatch):
    """A dossier export whose headers no mapping knows is rejected; the operator adds the aliases to
    transforms/mappings (no code change): the next run reads the same file again instead of skipping it."""
    bad = tmp_path / "in" / "dvc_portal" / "ratings" / "vendor.csv"
    bad.parent.mkdir(parents=True)
    bad.write_text("cot_a,cot_b\n1,2\n", encoding="utf-8")
    (f,) = ingest.discover(tmp_path / "in")
    first = desk.take(f, "r1")
    assert first.status == "rejected"
    assert desk.take(f, "r2").status == "rejected_before"
    later = datetime.now(UTC).replace(tzinfo=None) + timedelta(minutes=1)
    monkeypatch.setattr(ingest.outcomes, "reading_rules_changed_at", lambda: later)  # a mapping edited after the rejection
    third = desk.take(f, "r3")
    assert third.status == "rejected" and third.batch_id != first.batch_id  # read again (and still unreadable)


def test_reading_rules_changed_at_is_the_newest_rule_file(tmp_path, monkeypatch):
    for rel in ingest.READING_RULES:
        p = tmp_path / rel.replace("*", "x")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
        os.utime(p, (1_700_000_000, 1_700_000_000))
    newest = tmp_path / "transforms" / "mappings" / "flat_export.yaml"
    newest.write_text("aliases")
    os.utime(newest, (1_800_000_000, 1_800_000_000))
    monkeypatch.setattr(ingest.outcomes, "_ROOT", tmp_path)
    assert ingest.reading_rules_changed_at() == datetime.fromtimestamp(1_800_000_000, UTC).replace(tzinfo=None)


def test_summarize_counts_every_outcome():
    outs = [ingest.FileOutcome("a", "staged", rows_raw=5, rows_staged=4, rows_quarantined=1),
            ingest.FileOutcome("b", "duplicate"), ingest.FileOutcome("c", "rejected"),
            ingest.FileOutcome("d", "staged", rows_raw=2, rows_staged=2), ingest.FileOutcome("e", "rejected_before")]
    s = ingest.summarize(outs)
    assert (s["files"], s["staged"], s["duplicate"], s["rejected"], s["rejected_before"], s["failed"]) == (
        5, 2, 1, 1, 1, 0)
    assert (s["rows_raw"], s["rows_staged"], s["rows_quarantined"]) == (7, 6, 1)


def test_a_file_already_taken_is_not_hashed_again_but_a_changed_one_is(desk, tmp_path, monkeypatch):
    entry = desk.entry("danhgia_2023_2025.csv")
    f = desk.file(entry["path"])
    first = desk.take(f, "r1")
    assert first.status == "staged", first.error
    hashed: list = []
    real = ingest.sha256_file
    monkeypatch.setattr(ingest.per_file, "sha256_file", lambda p: hashed.append(p) or real(p))
    again = desk.take(f, "r2")
    assert again.status == "duplicate" and again.duplicate_of == first.batch_id and hashed == []
    # the same name with new content (an export overwritten in place) is read and staged again
    work = tmp_path / "inbox"
    shutil.copytree(desk.inbox, work)
    target = work / entry["path"]
    target.write_bytes(target.read_bytes() + target.read_bytes().splitlines(keepends=True)[-1])
    third = desk.take(desk.file(entry["path"], work), "r3")
    assert hashed and third.status == "staged" and third.rows_raw == first.rows_raw + 1


def test_an_older_ledger_gains_new_columns(tmp_path):
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    eng = sa.create_engine(url)
    with eng.begin() as c:  # a batches table as the first version of the ledger made it (no mtime_ns)
        c.exec_driver_sql("CREATE TABLE batches (batch_id VARCHAR(64) PRIMARY KEY, path TEXT, size_bytes BIGINT, "
                          "sha256 VARCHAR(64), status VARCHAR(16))")
        c.exec_driver_sql("INSERT INTO batches VALUES ('b0', 'x.csv', 10, 'aa', 'passed')")
    eng.dispose()
    ledger = Ledger(url)
    try:
        cols = {c["name"] for c in sa.inspect(ledger.engine).get_columns("batches")}
        assert "mtime_ns" in cols and ledger.known_file("x.csv", 10, 1) is None
        assert ledger.ingested_batch_for("aa") == "b0"
    finally:
        ledger.dispose()


def test_a_rejected_file_moved_to_the_right_folder_is_read(desk, tmp_path):
    """The rejection of some bytes in one place (a ratings export dropped among payments) does not follow the same
    bytes to the right folder."""
    good = desk.inbox / desk.entry("danhgia_2023_2025.csv")["path"]
    wrong = tmp_path / "in" / "dvc_portal" / "payments" / "danhgia.csv"
    wrong.parent.mkdir(parents=True)
    shutil.copyfile(good, wrong)
    (f,) = ingest.discover(tmp_path / "in")
    assert desk.take(f, "r1").status == "rejected"
    right = tmp_path / "in2" / "dvc_portal" / "ratings" / "danhgia.csv"
    right.parent.mkdir(parents=True)
    shutil.copyfile(good, right)
    (f2,) = ingest.discover(tmp_path / "in2")
    out = desk.take(f2, "r2")
    assert out.status == "staged", out.error
