"""From an inbox file (or pulled records) to raw + staging + quarantine, with the ledger kept honest.

Prefect-free: the nightly flow wraps these functions in tasks. One batch per file; the same content (SHA-256)
is ingested once whatever its name; inbox files are only read, never changed or moved.

Crash safety: a batch is recorded as ``running`` before any file is written and ``staged`` only after its raw,
staging and quarantine files are all in place. Each file is published atomically (written aside, renamed). A
run that finds ``running`` batches left by a killed process deletes their files and ingests the input again.
"""

from __future__ import annotations

import csv
import hashlib
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from transforms.contracts import ENTITY_SOURCE, quarantine_table, raw_table, stg_table
from transforms.staging import StageResult, stage_raw_file
from warehouse import store
from warehouse.ledger import Ledger

KINDS = {".csv": "csv", ".xlsx": "xlsx", ".json": "json", ".jsonl": "jsonl"}
AGENCY_COLUMNS = ["agency_code", "agency_name", "level", "parent_code", "valid_from", "valid_to",
                  "successor_code", "legal_basis"]
AGENCY_LEVELS = {"province", "district", "commune", "department"}
# rows per chunk (and raw row group): at 5M rows 128k-256k ran equally fast (18.0-18.9 s), peak RSS grew with it
# (980 MB at 128k, 1.0 GB at 160k, 1.44 GB at 256k once staged writes overlap the next chunk)
ROW_GROUP_ROWS = 160_000


@dataclass
class InboxFile:
    path: Path
    rel: str
    source: str | None
    entity: str | None
    kind: str | None
    problem: str | None = None  # why it cannot be ingested (unknown folder or extension)


@dataclass
class FileOutcome:
    rel: str
    status: str  # staged | duplicate | rejected | rejected_before (unchanged since its rejection: not read) | failed
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

    def as_dict(self) -> dict:
        return asdict(self)


def discover(inbox: Path) -> list[InboxFile]:
    """Every file under ``<inbox>/<source>/<entity>/``; anything else under the inbox is reported, not ignored."""
    inbox = Path(inbox)
    out: list[InboxFile] = []
    for p in sorted(inbox.rglob("*")):
        if not p.is_file() or p.name.startswith("."):
            continue
        rel = p.relative_to(inbox).as_posix()
        parts = p.relative_to(inbox).parts
        if len(parts) == 1 and p.name in ("agencies.csv", "manifest.json", "README.md"):
            continue  # configuration and documentation at the inbox root
        kind = KINDS.get(p.suffix.lower())
        if len(parts) != 3 or ENTITY_SOURCE.get(parts[1]) != parts[0]:
            out.append(InboxFile(p, rel, None, None, kind,
                                 problem="not under <source>/<entity>/ (expected e.g. one_stop/dossiers/ or "
                                         "dvc_portal/payments/)"))
            continue
        if kind is None:
            out.append(InboxFile(p, rel, parts[0], parts[1], None,
                                 problem=f"unsupported file type '{p.suffix}' (expected .xlsx, .csv, .json, .jsonl)"))
            continue
        out.append(InboxFile(p, rel, parts[0], parts[1], kind))
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
    """agencies.csv (sources.md section 4), checked: a broken configuration stops the run with a clear message."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"agencies file not found: {path} (put agencies.csv at the inbox root or set "
                                f"TTHC_AGENCIES_PATH)")
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in AGENCY_COLUMNS[:6] if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(AGENCY_COLUMNS)}")
        rows = [{k: (v or "").strip() or None for k, v in r.items()} for r in reader]
    seen = set()
    for i, r in enumerate(rows, start=2):
        code = r.get("agency_code")
        if not code:
            raise ValueError(f"{path}, line {i}: agency_code is empty")
        if code in seen:
            raise ValueError(f"{path}, line {i}: agency_code {code} is listed twice")
        seen.add(code)
        if r.get("level") not in AGENCY_LEVELS:
            raise ValueError(f"{path}, line {i}, column level: '{r.get('level')}' is not one of "
                             f"{', '.join(sorted(AGENCY_LEVELS))}")
        for c in ("valid_from", "valid_to"):
            if r.get(c):
                try:
                    datetime.strptime(r[c], "%Y-%m-%d")
                except ValueError:
                    raise ValueError(f"{path}, line {i}, column {c}: '{r[c]}' is not a date YYYY-MM-DD") from None
    for i, r in enumerate(rows, start=2):
        for c in ("parent_code", "successor_code"):
            if r.get(c) and r[c] not in seen:
                raise ValueError(f"{path}, line {i}, column {c}: {r[c]} is not an agency of this file")
    return rows


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
                 "transforms/readers/*.py", "transforms/contracts.py", "transforms/staging.py",
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


def ingest_file(f: InboxFile, *, warehouse: Path, ledger: Ledger, run_id: str, agency_codes: Iterable[str],
                pseudonym_key: bytes, batch_rows: int = 500_000) -> FileOutcome:
    """Ingest one inbox file as one batch. Never raises for bad input: the outcome says what happened."""
    from transforms.readers import FileRejected, read_file

    t0 = time.perf_counter()
    out = FileOutcome(rel=f.rel, status="failed", source=f.source, entity=f.entity, file_kind=f.kind)
    st = f.path.stat()
    size, mtime_ns = st.st_size, st.st_mtime_ns
    known = ledger.known_file(f.rel, size, mtime_ns)
    if known:  # the very file a batch already took: no need to read it again
        out.status, out.duplicate_of, out.sha256 = "duplicate", known[0], known[1]
        return out
    if _still_rejected(out, ledger.rejection_for(path=f.rel, size=size, mtime_ns=mtime_ns)):
        return out
    # The same content is ingested once. A copy of a file already taken has that file's size, so a file of a size
    # the ledger knows (or one rejected unread) is hashed before anything else: a renamed copy then costs one read.
    # Any other file cannot be an earlier file's copy: it is hashed on a thread while it is read and staged
    # (measured at 5M rows, 2 GB: the ingest took 1.3 s less than with the hash first), and checked again once
    # the hash is known.
    sha: str | None = None
    hashing: Future[str] | None = None
    if f.problem or ledger.size_seen(size):
        sha = out.sha256 = sha256_file(f.path)
        prior = ledger.ingested_batch_for(sha)
        if prior:
            out.status, out.duplicate_of = "duplicate", prior
            return out
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
            content_hash()
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
        undo("failed", out.error, hashed=not isinstance(exc, OSError))
        if isinstance(exc, OSError):
            raise  # I/O trouble (disk, network share): the flow's task retries the whole file
        out.seconds = time.perf_counter() - t0
        return out
    if hashing is not None:
        try:
            prior = ledger.ingested_batch_for(content_hash())
        except OSError as exc:  # the file could not be read to the end for its hash: the task retries it
            undo("failed", f"{f.rel}: {type(exc).__name__}: {exc}", hashed=False)
            raise
        if prior and prior != batch_id:  # the same content got in meanwhile: this batch is undone
            undo("duplicate", f"{f.rel}: same content as batch {prior}")
            out.status, out.duplicate_of, out.batch_id = "duplicate", prior, None
            out.seconds = time.perf_counter() - t0
            return out
    out.status = "staged"
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
         "rows_raw": 0, "rows_staged": 0, "rows_quarantined": 0}
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


def release_batch(warehouse: Path, ledger: Ledger, batch_id: str, reason: str) -> Path:
    """An operator's decision that a held batch is right after all: its staged file goes back to staging, the
    ledger records who-knows-why as ``reason``, and the next run takes it into core and marts."""
    matches = [p for p in held_batches(warehouse) if p.stem == batch_id]
    if not matches:
        raise FileNotFoundError(f"batch {batch_id} is not held in {Path(warehouse) / HELD_DIR}")
    src = matches[0]
    dst = store.table_dir(warehouse, src.parent.name) / src.name
    dst.parent.mkdir(parents=True, exist_ok=True)
    src.replace(dst)
    ledger.finish_batch(batch_id, "passed", error=f"released by an operator after the quality gate held it: {reason}")
    return dst
