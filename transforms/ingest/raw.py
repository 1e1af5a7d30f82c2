"""Raw batches (reader schema) to the raw table's batch file and, in the same pass, staging + quarantine: the
data is read once and both cores work (a reader thread, DuckDB, two writer threads)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from transforms.contracts import quarantine_table, raw_table, stg_table
from transforms.staging import ChunkStager, StageResult, raw_writer, stage_raw_file
from warehouse import store

# rows per chunk (and raw row group): at 5M rows 128k-256k ran equally fast (18.0-18.9 s), peak RSS grew with it
# (980 MB at 128k, 1.0 GB at 160k, 1.44 GB at 256k once staged writes overlap the next chunk)
ROW_GROUP_ROWS = 160_000


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


class _WriterThreads:
    """Two writer threads, each keeping its files' order: raw, and staging + quarantine. A write waits only for the
    previous write of its own thread, so DuckDB stages chunk N while chunk N-1's staged rows are still encoded.
    Memory stays bounded: one pending raw chunk; one chunk's staged and quarantined rows."""

    def __init__(self, raw_writer_):
        self.raw_writer = raw_writer_
        self.raw_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-raw")
        self.stg_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-stg")
        self.pending: dict = {self.raw_pool: [], self.stg_pool: []}
        self.limit = {self.raw_pool: 1, self.stg_pool: 2}

    def write(self, w, table) -> None:
        pool = self.raw_pool if w is self.raw_writer else self.stg_pool
        queue = self.pending[pool]
        while len(queue) >= self.limit[pool]:
            queue.pop(0).result()
        queue.append(pool.submit(w.write, table))

    def drain(self) -> None:
        for queue in self.pending.values():
            while queue:
                queue.pop(0).result()

    def shutdown(self) -> None:
        self.raw_pool.shutdown(wait=True)
        self.stg_pool.shutdown(wait=True)


def ingest_raw(batches: Iterable[pa.RecordBatch], *, warehouse: Path, source: str, entity: str, fmt: str,
               source_file: str, batch_id: str, agencies: Iterable[str], pseudonym_key: bytes,
               ingested_at: datetime | None = None) -> StageResult:
    """Raw batches (reader schema) -> the raw table's batch file and, in the same pass, staging + quarantine.

    Used by files and pulls alike. A reader thread reads and prepares chunks of about ROW_GROUP_ROWS rows one
    ahead; DuckDB types each chunk while it is written to raw on a writer thread, and its staged rows are written
    on a second writer thread while the next chunk is typed: the data is read once and both cores work. All three
    files are published only when complete; on any error every file of the batch is removed by the caller.
    """
    ingested_at = ingested_at or datetime.now(UTC).replace(tzinfo=None)
    schema = raw_schema_with_lineage(source, entity)
    writer = raw_writer(warehouse, raw_table(source, entity), batch_id, schema)
    stager = ChunkStager(warehouse=warehouse, source=source, entity=entity, fmt=fmt, batch_id=batch_id,
                         agency_codes=sorted(set(agencies)), pseudonym_key=pseudonym_key)
    threads = _WriterThreads(writer)
    chunks = _Prefetch(_chunks(_with_lineage(batches, batch_id, source_file, ingested_at, fmt), schema),
                       prepare=stager.prepare, close=getattr(batches, "close", None))
    try:
        for chunk, prepared in chunks:
            threads.write(writer, chunk)
            stager.add(chunk, threads.write, prepared)
            del chunk, prepared
        threads.drain()
        raw_path = writer.close()
        result = stager.finish(schema.empty_table())
    except BaseException:
        chunks.stop()
        threads.shutdown()
        writer.abort()
        stager.abort()
        raise
    chunks.stop()
    threads.shutdown()
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

