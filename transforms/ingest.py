"""From an inbox file (or pulled records) to raw + staging + quarantine, with the ledger kept honest.

Prefect-free: the nightly flow wraps these functions in tasks. One batch per file; the same content (SHA-256)
is ingested once whatever its name; inbox files are only read, never changed or moved.

Crash safety: a batch is recorded as ``running`` before any file is written and ``staged`` only after its raw,
staging and quarantine files are all in place. Each file is published atomically (written aside, renamed). A
run that finds ``running`` batches left by a killed process deletes their files and ingests the input again.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from transforms import agencies as agency_list
from transforms.contracts import ENTITY_SOURCE, quarantine_table, raw_table, stg_table
from transforms.staging import StageResult, stage_raw_file
from warehouse import store
from warehouse.ledger import Ledger

KINDS = {".csv": "csv", ".xlsx": "xlsx", ".json": "json", ".jsonl": "jsonl"}
AGENCY_COLUMNS = agency_list.COLUMNS
AGENCY_LEVELS = agency_list.LEVELS
# rows per chunk (and raw row group): at 5M rows 128k-256k ran equally fast (18.0-18.9 s), peak RSS grew with it
# (980 MB at 128k, 1.0 GB at 160k, 1.44 GB at 256k once staged writes overlap the next chunk)
ROW_GROUP_ROWS = 160_000


@dataclass
class InboxFile:
    path: Path
    rel: str  # the path under the inbox as shown to people (control characters and non-UTF-8 bytes escaped)
    source: str | None
    entity: str | None
    kind: str | None
    problem: str | None = None  # why it is not ingested as data (the reason it is listed with)
    # None: the file is opened (read, or hashed and rejected for its ``problem``). Else it is listed without its
    # bytes being touched, with this ledger status: ``skipped`` (hidden, temporary, not data: only listed),
    # ``rejected`` (a link leading outside the inbox, not a regular file: the run fails), ``failed`` (a folder
    # that cannot be listed: the run fails)
    listed: str | None = None



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


# inbox discovery: what is only listed, what is refused (see README, "the inbox")
ROOT_FILES = ("agencies.csv", "manifest.json", "README.md")  # configuration and documentation at the inbox root
TEMP_SUFFIXES = {".tmp", ".temp", ".swp", ".swo", ".part", ".partial", ".crdownload", ".download", ".filepart",
                 ".bak", ".old"}
SYSTEM_FILES = {"thumbs.db", "ehthumbs.db", "desktop.ini", "icon\r"}
NOT_DATA_SUFFIXES = {".pdf", ".doc", ".docx", ".odt", ".rtf", ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif",
                     ".tiff", ".heic", ".webp", ".msg", ".eml", ".url", ".ini"}
LAYOUT = ("not under <source>/<entity>/ (expected e.g. one_stop/dossiers/ or dvc_portal/payments/); move it to "
          "its folder")


def shown(name: str) -> str:
    """A file or folder name as it can be printed and stored: control characters and bytes that are not UTF-8
    (kept by the OS as lone surrogates) as ``\\xNN``."""
    out = []
    for ch in name:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:
            out.append(f"\\x{o - 0xDC00:02x}")
        elif o < 0x20 or 0x7F <= o <= 0x9F:
            out.append(f"\\x{o:02x}")
        else:
            out.append(ch)
    return "".join(out)


def _name_problem(parts: tuple[str, ...]) -> str | None:
    name = parts[-1]
    if name.casefold() in SYSTEM_FILES:
        return None
    for p in parts:
        if any(0xDC80 <= ord(ch) <= 0xDCFF for ch in p):
            return "its name is not valid UTF-8 text; rename it (letters, digits, '-', '_')"
        if any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in p):
            return "its name holds control characters (shown as \\xNN); rename it (letters, digits, '-', '_')"
        if "\\" in p:
            return ("its name holds backslashes, a Windows path kept as a name (a zip made on Windows?): where it "
                    "belongs is unclear; rename it and put it in its <source>/<entity>/ folder")
    return None


def _only_listed(name: str) -> str | None:
    """Why a file is only listed, not read (hidden, temporary, system or not a data file); None: look further."""
    low = name.casefold()
    suffix = Path(low).suffix
    if low.startswith(".~lock.") and low.endswith("#"):
        return "LibreOffice lock file (the file is open in LibreOffice): not read"
    if low.startswith("._"):
        return "macOS resource copy ('._' file written on a USB drive or network share): not read"
    if low == ".ds_store":
        return "macOS folder settings file: not read"
    if low.startswith("."):
        return "hidden file (name starts with '.'): not read; if it holds data, remove the leading '.'"
    if low.startswith("~$"):
        return "Office lock or temporary file ('~$', the workbook is open in Excel): not read"
    if low.endswith("~") or suffix in TEMP_SUFFIXES:
        return ("temporary, backup or partly downloaded file: not read; the finished export is read once it is "
                "saved under its own name")
    if low in SYSTEM_FILES:
        return "Windows or macOS system file: not read"
    if suffix in NOT_DATA_SUFFIXES:
        return "not a data file (documents and images are not read)"
    return None


def _kind_of(mode: int) -> str:
    return ("named pipe (FIFO)" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode)
            else "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special file")


def _count_files(path: Path) -> int:
    n = 0
    for _dir, _dirs, names in os.walk(path):
        n += len(names)
    return n


def discover(inbox: Path) -> list[InboxFile]:
    """Every entry under the inbox, each either to be read or listed with its reason (never silently left out):
    files under ``<inbox>/<source>/<entity>/`` are read; hidden, temporary, system and document files are only
    listed; files elsewhere, of an unsupported type or with a broken name are rejected (the run fails); links
    leading outside the inbox are not followed, and special files (pipes, sockets) and folders that cannot be
    listed are refused without being opened. Only agencies.csv, manifest.json and README.md at the inbox root
    are left out: they are configuration and documentation."""
    inbox = Path(inbox)
    if not inbox.is_dir():
        return []
    root = Path(os.path.realpath(inbox))
    out: list[InboxFile] = []

    def listed(path: Path, parts: tuple[str, ...], status: str, why: str, *, folder: bool = False) -> None:
        rel = ("/".join(shown(p) for p in parts) or ".") + ("/" if folder else "")
        src, ent = (parts[0], parts[1]) if len(parts) >= 2 and ENTITY_SOURCE.get(parts[1]) == parts[0] else (None,
                                                                                                          None)
        out.append(InboxFile(path, rel, src, ent, None, problem=why, listed=status))

    def visit(folder: Path, parts: tuple[str, ...]) -> None:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            why = ("cannot list this folder: permission denied; ask the operator to fix its permissions"
                   if isinstance(exc, PermissionError) else f"cannot list this folder: {exc.strerror or exc}")
            listed(folder, parts, "failed", why, folder=True)
            return
        for e in entries:
            p, ps = Path(e.path), (*parts, e.name)
            is_link = e.is_symlink()
            try:
                is_dir = e.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                if e.name.startswith("."):
                    listed(p, ps, "skipped", f"hidden folder (name starts with '.'): its {_count_files(p)} "
                                             f"file(s) are not read", folder=True)
                else:
                    visit(p, ps)
                continue
            why = _only_listed(e.name)
            if why is not None and _name_problem(ps) is None:
                listed(p, ps, "skipped", why)
                continue
            if is_link:
                target = os.path.realpath(p)
                inside = target == str(root) or target.startswith(str(root) + os.sep)
                if not os.path.exists(target):
                    listed(p, ps, "rejected", f"broken link (leads to {shown(os.readlink(p))}, which does not "
                                              f"exist); replace it with the file itself")
                    continue
                if not inside:
                    listed(p, ps, "rejected", f"link leading outside the inbox (to {shown(target)}): not followed; "
                                              f"copy the file itself into the inbox")
                    continue
                if os.path.isdir(target):
                    listed(p, ps, "skipped", f"link to the inbox folder {shown(os.path.relpath(target, root))}: "
                                             f"its files are read there", folder=True)
                    continue
            try:
                st = p.stat()
            except OSError as exc:
                listed(p, ps, "failed", f"cannot read its details: {exc.strerror or exc}")
                continue
            if not stat.S_ISREG(st.st_mode):
                listed(p, ps, "rejected", f"not a regular file but a {_kind_of(st.st_mode)}: not opened")
                continue
            if len(ps) == 1 and e.name in ROOT_FILES:
                continue  # configuration and documentation at the inbox root
            rel = "/".join(shown(x) for x in ps)
            kind = KINDS.get(Path(e.name).suffix.lower())
            bad_name = _name_problem(ps)
            if bad_name:
                out.append(InboxFile(p, rel, None, None, kind, problem=bad_name))
            elif len(ps) != 3 or ENTITY_SOURCE.get(ps[1]) != ps[0]:
                out.append(InboxFile(p, rel, None, None, kind, problem=LAYOUT))
            elif Path(e.name).suffix.lower() == ".lnk":
                out.append(InboxFile(p, rel, ps[0], ps[1], None, problem=(
                    "a Windows shortcut: shortcuts are not followed; copy the file itself into this folder")))
            elif kind is None:
                suffix = Path(e.name).suffix
                out.append(InboxFile(p, rel, ps[0], ps[1], None, problem=(
                    f"unsupported file type '{suffix}' (expected .xlsx, .csv, .json, .jsonl); save the export in "
                    f"one of these")))
            else:
                out.append(InboxFile(p, rel, ps[0], ps[1], kind))

    visit(inbox, ())
    out.sort(key=lambda f: f.rel)
    return out


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def new_batch_id(sha256: str | None = None, now: datetime | None = None) -> str:
    """``b<UTC time to the microsecond>-<10 hex>``: the content hash's first digits when it is known up front,
    else random ones (the file is hashed while it is read)."""
    import secrets

    now = now or datetime.now(UTC)
    return f"b{now:%Y%m%dT%H%M%S%f}-{sha256[:10] if sha256 else secrets.token_hex(5)}"


# the file's SHA-256 on a thread while the file is read and staged (hashlib releases the GIL on large blocks)
_HASHING = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ingest-sha256")


def load_agencies(path: Path) -> list[dict]:
    """agencies.csv (sources.md section 4) read like any input and checked (``transforms.agencies``); raises
    ``agency_list.AgenciesError`` with one line per problem (file, line, column, what was expected)."""
    return agency_list.read_agencies(path)


def _with_lineage(batches: Iterable[pa.RecordBatch], batch_id: str, source_file: str, ingested_at: datetime,
                  fmt: str) -> Iterator[pa.Table]:
    for b in batches:
        n = b.num_rows
        t = pa.Table.from_batches([b])
        t = t.append_column("_batch_id", pa.repeat(pa.scalar(batch_id, pa.string()), n))
        t = t.append_column("_source_file", pa.repeat(pa.scalar(source_file, pa.string()), n))
        t = t.append_column("_ingested_at", pa.repeat(pa.scalar(ingested_at, pa.timestamp("us")), n))
        t = t.append_column("_format", pa.repeat(pa.scalar(fmt, pa.string()), n))
        yield t


def raw_schema_with_lineage(source: str, entity: str) -> pa.Schema:
    from transforms.readers import raw_schema

    s = raw_schema(source, entity)
    for name, typ in (("_batch_id", pa.string()), ("_source_file", pa.string()),
                      ("_ingested_at", pa.timestamp("us")), ("_format", pa.string())):
        s = s.append(pa.field(name, typ))
    return s


def ingest_raw(batches: Iterable[pa.RecordBatch], *, warehouse: Path, source: str, entity: str, fmt: str,
               source_file: str, batch_id: str, agencies: Iterable[str], pseudonym_key: bytes,
               ingested_at: datetime | None = None) -> StageResult:
    """Raw batches (reader schema) -> the raw table's batch file and, in the same pass, staging + quarantine.

    Used by files and pulls alike. A reader thread reads and prepares chunks of about ROW_GROUP_ROWS rows one
    ahead; DuckDB types each chunk while it is written to raw on a writer thread, and its staged rows are written
    on a second writer thread while the next chunk is typed: the data is read once and both cores work. All three
    files are published only when complete; on any error every file of the batch is removed by the caller.
    """
    from concurrent.futures import ThreadPoolExecutor

    from transforms.staging import ChunkStager, raw_writer

    ingested_at = ingested_at or datetime.now(UTC).replace(tzinfo=None)
    schema = raw_schema_with_lineage(source, entity)
    writer = raw_writer(warehouse, raw_table(source, entity), batch_id, schema)
    stager = ChunkStager(warehouse=warehouse, source=source, entity=entity, fmt=fmt, batch_id=batch_id,
                         agency_codes=sorted(set(agencies)), pseudonym_key=pseudonym_key)
    # two writer threads, each keeping its files' order: raw, and staging + quarantine. A write waits only for the
    # previous write of its own thread, so DuckDB stages chunk N while chunk N-1's staged rows are still encoded
    raw_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-raw")
    stg_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-stg")
    pending: dict = {raw_pool: [], stg_pool: []}
    # memory stays bounded: one pending raw chunk; one chunk's staged and quarantined rows
    limit = {raw_pool: 1, stg_pool: 2}

    def write(w, table) -> None:
        pool = raw_pool if w is writer else stg_pool
        queue = pending[pool]
        while len(queue) >= limit[pool]:
            queue.pop(0).result()
        queue.append(pool.submit(w.write, table))

    def drain() -> None:
        for queue in pending.values():
            while queue:
                queue.pop(0).result()

    chunks = _Prefetch(_chunks(_with_lineage(batches, batch_id, source_file, ingested_at, fmt), schema),
                       prepare=stager.prepare, close=getattr(batches, "close", None))
    try:
        for chunk, prepared in chunks:
            write(writer, chunk)
            stager.add(chunk, write, prepared)
            del chunk, prepared
        drain()
        raw_path = writer.close()
        result = stager.finish(schema.empty_table())
    except BaseException:
        chunks.stop()
        raw_pool.shutdown(wait=True)
        stg_pool.shutdown(wait=True)
        writer.abort()
        stager.abort()
        raise
    chunks.stop()
    raw_pool.shutdown(wait=True)
    stg_pool.shutdown(wait=True)
    if stager.needs_restage:  # an 'x'-marked yes/no column appeared after the first chunk: redo from raw
        store.remove_batch_files(warehouse, [batch_id], tables=[stg_table(source, entity),
                                                                 quarantine_table(source, entity)])
        result = stage_raw_file(raw_path, warehouse=warehouse, source=source, entity=entity, fmt=fmt,
                                batch_id=batch_id, agency_codes=sorted(set(agencies)),
                                pseudonym_key=pseudonym_key)
    return result


class _Prefetch:
    """Iterates ``items`` on a reader thread, one item ahead of the consumer, yielding ``(item, prepare(item))``.

    The CSV parse (pyarrow) and the chunk preparation release the GIL, so the next chunk is read while DuckDB
    stages this one: on two cores the three steps (read, stage, write) overlap. An exception of the reader thread
    is raised in the consumer; ``stop()`` ends the thread (and closes the reader) when the consumer gives up.
    """

    _END = object()

    def __init__(self, items: Iterator, prepare, close=None, depth: int = 1):
        import queue
        import threading

        self._items, self._prepare, self._close = items, prepare, close
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest-reader", daemon=True)
        self._thread.start()

    def _put(self, x) -> bool:
        import queue

        while not self._stop.is_set():
            try:
                self._q.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._items:
                if not self._put((item, self._prepare(item))):
                    break
                del item
            self._put(self._END)
        except BaseException as exc:  # handed to the consumer
            self._put(exc)
        finally:
            for closer in (getattr(self._items, "close", None), self._close):
                if closer is not None:
                    try:
                        closer()
                    except Exception:  # noqa: S110 - best effort: the reader's own finally cleans up
                        pass

    def __iter__(self):
        while True:
            x = self._q.get()
            if x is self._END:
                return
            if isinstance(x, BaseException):
                raise x
            yield x

    def stop(self) -> None:
        import queue

        self._stop.set()
        while self._thread.is_alive():
            try:
                self._q.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()


def _chunks(tables: Iterable[pa.Table], schema: pa.Schema) -> Iterator[pa.Table]:
    """Readers hand small blocks; regroup them into chunks of about ROW_GROUP_ROWS rows."""
    pending: list[pa.Table] = []
    rows = 0
    for t in tables:
        pending.append(t)
        rows += t.num_rows
        if rows >= ROW_GROUP_ROWS:
            yield pa.concat_tables(pending).cast(schema)
            pending, rows = [], 0
    if pending:
        yield pa.concat_tables(pending).cast(schema)


def recover(warehouse: Path, ledger: Ledger, current_run_id: str | None = None) -> list[str]:
    """Remove what a killed run left half-done; return the batch ids that were rolled back.

    Batches still ``running`` lose their files and are marked failed (their input is ingested again); runs still
    ``running`` are marked failed. Batches the killed run had already staged stay, and the next run gates them
    (``Ledger.ungated_batches``).
    """
    crashed = ledger.crashed_batches()
    store.remove_batch_files(warehouse, crashed)
    ledger.mark_crashed(crashed)
    if current_run_id is not None:
        ledger.close_interrupted_runs(current_run_id)
    return crashed


# what decides whether a file can be read: a file rejected before is read again once one of these is newer than
# the rejection (a column alias added to a mapping, a code list extended, a new release of the readers)
_ROOT = Path(__file__).resolve().parent.parent
READING_RULES = ("transforms/mappings/*.yaml", "expectations/tables/*.yaml", "expectations/codes.yaml",
                 "transforms/readers/*.py", "transforms/contracts.py", "transforms/staging/*.py",
                 "transforms/ingest.py")


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


def ingest_file(f: InboxFile, *, warehouse: Path, ledger: Ledger, run_id: str, agency_codes: Iterable[str],
                pseudonym_key: bytes, batch_rows: int = 500_000) -> FileOutcome:
    """Ingest one inbox file as one batch. Never raises for bad input: the outcome says what happened. An input
    that cannot be read (permission denied, gone) is that file's failure; only transient I/O and trouble of the
    warehouse or the machine (a full disk) are raised."""
    from transforms.readers import FileRejected, read_file

    t0 = time.perf_counter()
    out = FileOutcome(rel=f.rel, status="failed", source=f.source, entity=f.entity, file_kind=f.kind)
    if f.listed:
        return _listed_only(f, out, ledger, run_id)
    try:
        st = f.path.stat()
    except OSError as exc:
        return _unreadable(exc, f, out, ledger, run_id, t0)
    size, mtime_ns = st.st_size, st.st_mtime_ns
    known = ledger.known_file(f.rel, size, mtime_ns)
    if known:  # the very file a batch already took: no need to read it again
        out.status, out.duplicate_of, out.sha256 = "duplicate", known[0], known[1]
        return out
    if _still_rejected(out, ledger.rejection_for(path=f.rel, size=size, mtime_ns=mtime_ns)):
        return out
    cannot_open = _open_error(f.path)  # (the readers would name it a broken workbook or an encoding problem)
    if cannot_open is not None:
        return _unreadable(cannot_open, f, out, ledger, run_id, t0)
    # The same content is ingested once. A copy of a file already taken has that file's size, so a file of a size
    # the ledger knows (or one rejected unread) is hashed before anything else: a renamed copy then costs one read.
    # Any other file cannot be an earlier file's copy: it is hashed on a thread while it is read and staged
    # (measured at 5M rows, 2 GB: the ingest took 1.3 s less than with the hash first), and checked again once
    # the hash is known.
    sha: str | None = None
    hashing: Future[str] | None = None
    if f.problem or ledger.size_seen(size):
        try:
            sha = out.sha256 = sha256_file(f.path)
        except OSError as exc:
            return _unreadable(exc, f, out, ledger, run_id, t0)
        prior = ledger.ingested_batch_for(sha)
        if prior:
            return _copy_of(prior, f, out, ledger, run_id, size, mtime_ns)
        if _still_rejected(out, ledger.rejection_for(sha256=sha, where=(f.source, f.entity, f.kind))):
            return out
        if not f.problem:
            ledger.record_file(sha, size, f.rel, f.source, f.entity, f.kind)
    else:
        hashing = _HASHING.submit(sha256_file, f.path)
    batch_id = new_batch_id(sha)
    out.batch_id = batch_id
    ledger.begin_batch(batch_id, run_id, sha256=sha, path=f.rel, size_bytes=size, mtime_ns=mtime_ns,
                       source=f.source, entity=f.entity, file_kind=f.kind)
    if f.problem:
        ledger.finish_batch(batch_id, "rejected", error=f"{f.rel}: {f.problem}")
        out.status, out.error = "rejected", f"{f.rel}: {f.problem}"
        return out

    def content_hash() -> str:
        """The file's SHA-256 (waiting for the hashing thread), recorded in the ledger."""
        nonlocal sha
        if sha is None:
            sha = out.sha256 = hashing.result()
            ledger.record_file(sha, size, f.rel, f.source, f.entity, f.kind)
            ledger.update_batch(batch_id, sha256=sha)
        return sha

    def undo(status: str, error: str, *, hashed: bool = True) -> None:
        """The batch's files removed and its ledger row closed with ``status`` (after recording the content hash,
        unless ``hashed`` is false: the file could not be read)."""
        store.remove_batch_files(warehouse, [batch_id])
        if hashed:
            try:
                content_hash()
            except OSError:  # the file went or became unreadable meanwhile: recorded without its hash
                pass
        ledger.finish_batch(batch_id, status, error=error)

    try:
        result = read_file(f.path, f.source, f.entity, batch_rows=batch_rows)
        out.unknown_columns = list(result.unknown_columns)
        ledger.update_batch(batch_id, format=result.format, encoding=result.encoding,
                            unknown_columns=out.unknown_columns)
        t_read = time.perf_counter()
        stage = ingest_raw(result.batches, warehouse=warehouse, source=f.source, entity=f.entity,
                           fmt=result.format, source_file=f.rel, batch_id=batch_id, agencies=agency_codes,
                           pseudonym_key=pseudonym_key)
    except FileRejected as exc:
        out.status, out.error = "rejected", str(exc)
        undo("rejected", out.error)
        out.seconds = time.perf_counter() - t0
        return out
    except Exception as exc:  # an unexpected failure: recorded, files rolled back, other files go on
        out.status, out.error = "failed", f"{f.rel}: {type(exc).__name__}: {exc}"
        if isinstance(exc, OSError):
            # the input's own problem is its failure; transient I/O (a network share) is raised for the flow's
            # task to retry the file, trouble of the warehouse (a full disk) to fail the run
            store.remove_batch_files(warehouse, [batch_id])
            return _unreadable(exc, f, out, ledger, run_id, t0, batch_id)
        undo("failed", out.error)
        out.seconds = time.perf_counter() - t0
        return out
    if hashing is not None:
        try:
            prior = ledger.ingested_batch_for(content_hash())
        except OSError as exc:  # the file could not be read to the end for its hash
            store.remove_batch_files(warehouse, [batch_id])
            return _unreadable(exc, f, out, ledger, run_id, t0, batch_id)
        if prior and prior != batch_id:  # the same content got in meanwhile: this batch is undone
            undo("duplicate", f"{f.rel}: same content as batch {prior}")
            out.status, out.duplicate_of, out.batch_id = "duplicate", prior, None
            out.seconds = time.perf_counter() - t0
            return out
    out.status = "staged"
    out.notes = list(getattr(result, "notes", []) or [])  # complete once the batches were read to the end
    if out.notes:
        ledger.update_batch(batch_id, notes=out.notes)
    out.rows_raw, out.rows_staged, out.rows_quarantined = stage.rows_raw, stage.rows_staged, stage.rows_quarantined
    out.rules = stage.rules
    out.seconds = time.perf_counter() - t0
    ledger.finish_batch(batch_id, "staged", rows_raw=stage.rows_raw, rows_staged=stage.rows_staged,
                        rows_quarantined=stage.rows_quarantined, read_seconds=t_read - t0,
                        stage_seconds=stage.seconds, min_updated_at=stage.min_updated_at,
                        max_updated_at=stage.max_updated_at)
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


HELD_DIR = "_held"


def hold_batch(warehouse: Path, source: str, entity: str, batch_id: str) -> Path | None:
    """Keep a batch that failed a critical quality check out of core and marts without losing it.

    Its staged file moves to ``<warehouse>/_held/stg_<source>__<entity>/`` (raw and quarantine stay where they
    are); an operator can inspect it there and move it back once the export is understood to be right.
    """
    from transforms.contracts import stg_table

    src = store.table_dir(warehouse, stg_table(source, entity)) / f"{batch_id}.parquet"
    if not src.exists():
        return None
    dst_dir = Path(warehouse) / HELD_DIR / stg_table(source, entity)
    dst_dir.mkdir(parents=True, exist_ok=True)
    dst = dst_dir / src.name
    src.replace(dst)
    return dst


def held_batches(warehouse: Path) -> list[Path]:
    """Staged files a critical quality check is holding out of core and marts."""
    root = Path(warehouse) / HELD_DIR
    return sorted(root.glob("stg_*/*.parquet")) if root.is_dir() else []


class ReleaseRefused(RuntimeError):
    """A held batch whose row rules cannot be applied stays held (its rows would reach core unchecked)."""


def release_batch(warehouse: Path, ledger: Ledger, batch_id: str, reason: str) -> Path:
    """An operator's decision that a held batch is right after all: its clean rows go back to staging, the ledger
    records who-knows-why as ``reason``, and the next run takes them into core and marts.

    The row rules are applied again first: a row breaking a critical one is set aside to the batch's quarantine
    (the gate already did so before holding; a batch held before it did, or one whose checks crashed, is cleaned
    here), so a release never brings a bad row into core. When they cannot be applied, the batch stays held
    (``ReleaseRefused``)."""
    from transforms.quality import setaside
    from transforms.quality.gate import _machine_trouble

    matches = [p for p in held_batches(warehouse) if p.stem == batch_id]
    if not matches:
        raise FileNotFoundError(f"batch {batch_id} is not held in {Path(warehouse) / HELD_DIR}")
    src = matches[0]
    try:
        moved = setaside.apply_row_rules(warehouse, src.parent.name, batch_id, src)
    except Exception as exc:
        if _machine_trouble(exc):
            raise
        raise ReleaseRefused(f"batch {batch_id} stays held: its rows cannot be checked again before release "
                             f"({type(exc).__name__}: {exc})") from exc
    dst = store.table_dir(warehouse, src.parent.name) / src.name
    dst.parent.mkdir(parents=True, exist_ok=True)
    src.replace(dst)
    aside = f"; {moved.moved:,} rows breaking a rule set aside at release" if moved.moved else ""
    ledger.finish_batch(batch_id, "passed", rows_staged=moved.rows_staged, rows_quarantined=moved.rows_quarantined,
                        error=f"released by an operator after the quality gate held it: {reason}{aside}")
    return dst
