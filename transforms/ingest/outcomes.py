"""What became of an inbox file (``FileOutcome``) and the ledger rows that say so: a file rejected before and not
read again, a copy of content already taken, an input that cannot be read; the run's summary."""

from __future__ import annotations

import errno
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from transforms.ingest.discovery import InboxFile
from warehouse.ledger import Ledger


@dataclass
class FileOutcome:
    rel: str
    # staged | duplicate | rejected | rejected_before (unchanged since its rejection: not read) | failed |
    # skipped (only listed: hidden, temporary, not data) | skipped_before (listed so before, unchanged)
    status: str
    batch_id: str | None = None
    sha256: str | None = None
    source: str | None = None
    entity: str | None = None
    file_kind: str | None = None
    rows_raw: int = 0
    rows_staged: int = 0
    rows_quarantined: int = 0
    rules: dict[str, int] = field(default_factory=dict)
    unknown_columns: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    duplicate_of: str | None = None
    notes: list[str] = field(default_factory=list)  # what the reader saw and did not take as data

    def as_dict(self) -> dict:
        return asdict(self)


def new_batch_id(sha256: str | None = None, now: datetime | None = None) -> str:
    """``b<UTC time to the microsecond>-<10 hex>``: the content hash's first digits when it is known up front,
    else random ones (the file is hashed while it is read)."""
    import secrets

    now = now or datetime.now(UTC)
    return f"b{now:%Y%m%dT%H%M%S%f}-{sha256[:10] if sha256 else secrets.token_hex(5)}"


# what decides whether a file can be read: a file rejected before is read again once one of these is newer than
# the rejection (a column alias added to a mapping, a code list extended, a new release of the readers)
_ROOT = Path(__file__).resolve().parents[2]
READING_RULES = ("transforms/mappings/*.yaml", "expectations/tables/*.yaml", "expectations/codes.yaml",
                 "transforms/readers/*.py", "transforms/contracts.py", "transforms/staging/*.py",
                 "transforms/ingest/*.py")


def reading_rules_changed_at() -> datetime:
    """The latest modification (naive UTC, as the ledger's times) of the files in ``READING_RULES``."""
    newest = max(p.stat().st_mtime for pattern in READING_RULES for p in _ROOT.glob(pattern))
    return datetime.fromtimestamp(newest, UTC).replace(tzinfo=None)


def _still_rejected(out: FileOutcome, rej: dict | None) -> bool:
    """Whether ``rej`` (the ledger's earlier rejection of this file or content) still stands: then the file is not
    read again, ``out`` says so (status ``rejected_before``) and the run is not failed again for it. It no longer
    stands once the reading rules changed after it: the file is then read again."""
    if rej is None or rej["finished_at"] is None or reading_rules_changed_at() > rej["finished_at"]:
        return False  # (a rejection without its time, e.g. from a restored ledger, is not trusted: read again)
    why = str(rej["error"] or "").removeprefix(f"{out.rel}: ")
    out.status, out.duplicate_of, out.sha256 = "rejected_before", rej["batch_id"], rej["sha256"]
    out.error = (f"{out.rel}: not read again: rejected as batch {rej['batch_id']} ({why}); neither the file nor the "
                 f"reading rules (transforms/mappings, expectations) changed since")
    return True


# reading an input file failed in a way a retry cannot fix: that file's failure, and the night goes on
_FILE_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOENT, errno.EISDIR, errno.ENOTDIR, errno.ELOOP,
                errno.ENAMETOOLONG, errno.ENXIO, errno.ENODEV, errno.EINVAL, errno.EFBIG, errno.EOVERFLOW}
# trouble of the warehouse or the machine: no file is to blame, the run fails
MACHINE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EMFILE, errno.ENFILE, errno.ENOMEM}


def _open_error(path: Path) -> OSError | None:
    """What opening ``path`` for reading raises now (None: it opens). Non-blocking: a pipe never hangs it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        return exc
    os.close(fd)
    return None


def input_error(exc: BaseException, f: InboxFile) -> str | None:
    """The operator's sentence when ``exc`` is the input file's own problem that a retry cannot fix (permission
    denied, the file gone, not something that can be read); None for anything else: transient I/O (the flow's
    task retries the file) or trouble of the warehouse or the machine, such as a full disk (the run fails)."""
    if not isinstance(exc, OSError) or exc.errno in MACHINE_ERRNOS:
        return None
    if exc.filename is not None:
        if str(os.fspath(exc.filename)) != str(f.path):
            return None  # another file: the warehouse's, a temporary one
    else:  # raised without a name (pyarrow, a thread): the input is to blame only if it cannot be opened now
        probe = _open_error(f.path)
        if probe is None:
            return None
        exc = probe
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"cannot read file {f.rel}: permission denied; ask the operator to fix its permissions"
    if exc.errno == errno.ENOENT:
        return (f"cannot read file {f.rel}: it disappeared while the run was reading it (moved or deleted); it is "
                f"read at the next run if it is back")
    if exc.errno in _FILE_ERRNOS:
        return f"cannot read file {f.rel}: {exc.strerror or exc}; it is tried again at the next run"
    return None


def _listed_only(f: InboxFile, out: FileOutcome, ledger: Ledger, run_id: str) -> FileOutcome:
    """An entry discovery decided on without opening it: recorded with its reason (a skipped one once, as long
    as it does not change)."""
    try:
        st = os.lstat(f.path)
        size, mtime_ns = st.st_size, st.st_mtime_ns
    except OSError:
        size = mtime_ns = None
    out.error = f"{f.rel}: {f.problem}"
    if f.listed == "skipped":
        before = ledger.skipped_before(f.rel, size, mtime_ns)
        if before is not None:
            out.status, out.duplicate_of = "skipped_before", before
            return out
    out.status, out.batch_id = f.listed, new_batch_id()
    ledger.record_batch(out.batch_id, run_id, f.listed, path=f.rel, size_bytes=size, mtime_ns=mtime_ns,
                        source=f.source, entity=f.entity, file_kind=f.kind, error=out.error)
    return out


def _copy_of(prior: str, f: InboxFile, out: FileOutcome, ledger: Ledger, run_id: str, size: int,
             mtime_ns: int) -> FileOutcome:
    """A file whose content a batch of another file already took (a renamed or re-sent copy): not read again, and
    named once (ledger row ``duplicate``, run summary, report) so the office knows why it added nothing; later
    nights pass over it like any file already taken."""
    out.status, out.duplicate_of = "duplicate", prior
    if ledger.copy_listed(f.rel, size, mtime_ns) is not None:
        return out
    original = ledger.batch_path(prior) or prior
    out.error = (f"{f.rel}: same content as {original} (batch {prior}), already ingested: this copy adds nothing "
                 f"and is not read again")
    ledger.record_batch(new_batch_id(out.sha256), run_id, "duplicate", path=f.rel, size_bytes=size,
                        mtime_ns=mtime_ns, sha256=out.sha256, source=f.source, entity=f.entity, file_kind=f.kind,
                        error=out.error)
    return out


def _unreadable(exc: OSError, f: InboxFile, out: FileOutcome, ledger: Ledger, run_id: str, t0: float,
                batch_id: str | None = None) -> FileOutcome:
    """The input could not be read before its batch began (``batch_id`` None) or while it was read: its failure
    is recorded and returned when a retry cannot fix it; anything else is raised again."""
    why = input_error(exc, f)
    if why is None:
        if batch_id is not None:
            ledger.finish_batch(batch_id, "failed", error=f"{f.rel}: {type(exc).__name__}: {exc}")
        raise exc
    out.status, out.error, out.seconds = "failed", why, time.perf_counter() - t0
    if batch_id is None:
        out.batch_id = new_batch_id()
        ledger.record_batch(out.batch_id, run_id, "failed", path=f.rel, source=f.source, entity=f.entity,
                            file_kind=f.kind, error=why)
    else:
        ledger.finish_batch(batch_id, "failed", error=why)
    return out



def summarize(outcomes: list[FileOutcome]) -> dict:
    s = {"files": len(outcomes), "staged": 0, "duplicate": 0, "rejected": 0, "rejected_before": 0, "failed": 0,
         "skipped": 0, "skipped_before": 0, "rows_raw": 0, "rows_staged": 0, "rows_quarantined": 0}
    for o in outcomes:
        s[o.status] = s.get(o.status, 0) + 1
        s["rows_raw"] += o.rows_raw
        s["rows_staged"] += o.rows_staged
        s["rows_quarantined"] += o.rows_quarantined
    return s
