"""The Parquet layout of the warehouse and its atomic writes.

Layout: every table is a folder named after the table under the warehouse root.
- Append-only layers (raw_, stg_, quarantine_): one file per batch, ``<table>/<batch_id>.parquet``. A batch
  file is written aside under a dot-name and renamed into place, so a reader sees a batch whole or not at all.
- Rebuilt tables (core_, mart_): one file, ``<table>/data.parquet``, replaced with ``os.replace`` after the new
  file is complete and validated; readers see the old table or the new one, never half of either
  (``core_dossiers`` is split by month, see transforms/core/parts.py).
- Tables published together (the three KPI marts): generations, see warehouse/generations.py.
Files whose names start with ``.`` are work in progress and are never read (globs use ``[!.]*.parquet``).
"""

from __future__ import annotations

import os
import signal
import stat
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

PARQUET_GLOB = "[!.]*.parquet"
# owner-only permissions for layers that hold personal data (raw_, quarantine_)
PRIVATE_PREFIXES = ("raw_", "quarantine_")


# Contract checks of rebuilt tables: while a ``validation(factory)`` block is active, every table write asks
# ``factory(table)`` for a hook and runs it on the file written aside, before it replaces the published one.
Validator = Callable[[Path | list[Path]], None]
_VALIDATION: ContextVar[Callable[[str], Validator | None] | None] = ContextVar("tthc_validation", default=None)


@contextmanager
def validation(factory: Callable[[str], Validator | None]) -> Iterator[None]:
    token = _VALIDATION.set(factory)
    try:
        yield
    finally:
        _VALIDATION.reset(token)


def validator_for(table: str) -> Validator | None:
    factory = _VALIDATION.get()
    return factory(table) if factory is not None else None


def table_dir(warehouse: Path, table: str) -> Path:
    return Path(warehouse) / table


def table_glob(warehouse: Path, table: str) -> str:
    return str(table_dir(warehouse, table) / PARQUET_GLOB)


def table_files(warehouse: Path, table: str) -> list[Path]:
    d = table_dir(warehouse, table)
    if not d.is_dir():
        return []
    return sorted(p for p in d.glob(PARQUET_GLOB))


def table_exists(warehouse: Path, table: str) -> bool:
    return bool(table_files(warehouse, table))


# The modes the warehouse is written with, whatever the operator's umask (a umask of 000 made the root, stg_,
# core_ and _reports world-writable): folders 0755 and files 0644 (analysts read them), and owner-only
# (0700/0600) for what holds personal data (raw_, quarantine_, _secrets).
WAREHOUSE_UMASK = 0o022


def use_warehouse_umask() -> int:
    """Set the process umask the warehouse is written with; returns the previous one."""
    return os.umask(WAREHOUSE_UMASK)


def is_private(table: str) -> bool:
    return table.startswith(PRIVATE_PREFIXES)


def _ensure_dir(d: Path, private: bool) -> None:
    d.mkdir(parents=True, exist_ok=True)
    if private:
        os.chmod(d, stat.S_IRWXU)


def _tmp_path(final: Path) -> Path:
    return final.with_name(f".{final.stem}.{uuid.uuid4().hex[:8]}.tmp")


def _publish(tmp: Path, final: Path, private: bool) -> None:
    os.chmod(tmp, 0o600 if private else 0o644)
    with open(tmp, "rb") as fh:  # durable before it becomes visible
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    _fsync_dir(final.parent)


class BatchFileWriter:
    """Streams record batches into ``<table>/<name>.parquet`` and publishes the file atomically on close."""

    def __init__(self, warehouse: Path, table: str, name: str, schema: pa.Schema, **options):
        """``options`` go to ``pyarrow.parquet.ParquetWriter`` (default: zstd level 1)."""
        self.private = is_private(table)
        d = table_dir(warehouse, table)
        _ensure_dir(d, self.private)
        self.final = d / f"{name}.parquet"
        self.tmp = _tmp_path(self.final)
        self.schema = schema
        self.rows = 0
        options.setdefault("compression", "zstd")
        if options["compression"] == "zstd":
            options.setdefault("compression_level", 1)
        self._writer = pq.ParquetWriter(self.tmp, schema, **options)

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        if batch.num_rows == 0:
            return
        if isinstance(batch, pa.RecordBatch):
            batch = pa.Table.from_batches([batch])
        self._writer.write_table(batch.cast(self.schema) if batch.schema != self.schema else batch)
        self.rows += batch.num_rows

    def close(self) -> Path:
        self._writer.close()
        _publish(self.tmp, self.final, self.private)
        return self.final

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            self.tmp.unlink(missing_ok=True)


@contextmanager
def _atomic_file(warehouse: Path, table: str, name: str) -> Iterator[Path]:
    """Yield a temp path beside ``<table>/<name>.parquet``; publish it there on success, delete it on error."""
    private = is_private(table)
    d = table_dir(warehouse, table)
    _ensure_dir(d, private)
    final = d / f"{name}.parquet"
    tmp = _tmp_path(final)
    try:
        yield tmp
        _publish(tmp, final, private)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_table(warehouse: Path, table: str, data: pa.Table, name: str = "data",
                validate: Callable[[Path], None] | None = None) -> Path:
    """Write ``data`` as ``<table>/<name>.parquet`` atomically: write aside, validate, then swap in."""
    validate = validate or validator_for(table)
    with _atomic_file(warehouse, table, name) as tmp:
        pq.write_table(data, tmp, compression="zstd")
        if validate is not None:
            validate(tmp)
    return table_dir(warehouse, table) / f"{name}.parquet"


def copy_query_to_table(con, sql: str, warehouse: Path, table: str, name: str = "data",
                        params: list | dict | None = None,
                        validate: Callable[[Path], None] | None = None) -> Path:
    """Run a DuckDB query and publish its result as ``<table>/<name>.parquet`` atomically (no pandas hop)."""
    validate = validate or validator_for(table)
    with _atomic_file(warehouse, table, name) as tmp:
        con.execute(f"COPY ({sql}) TO '{tmp}' (FORMAT parquet, COMPRESSION zstd)", params)
        if validate is not None:
            validate(tmp)
    return table_dir(warehouse, table) / f"{name}.parquet"


def remove_batch_files(warehouse: Path, batch_ids: Iterable[str], tables: Iterable[str] | None = None) -> list[Path]:
    """Delete files of batches that never completed (crash recovery) and stale temp files (of ``tables`` only,
    when given)."""
    ids = set(batch_ids)
    only = set(tables) if tables is not None else None
    removed: list[Path] = []
    root = Path(warehouse)
    if not root.is_dir():
        return removed
    for d in root.iterdir():
        if not d.is_dir() or d.name.startswith(("_", ".")) or (only is not None and d.name not in only):
            continue
        for f in d.iterdir():
            if f.name.startswith(".") and f.name.endswith(".tmp"):
                f.unlink(missing_ok=True)
                removed.append(f)
            elif f.suffix == ".parquet" and f.stem in ids:
                f.unlink(missing_ok=True)
                removed.append(f)
    return removed


def list_tables(warehouse: Path) -> list[str]:
    root = Path(warehouse)
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir()
                  if d.is_dir() and not d.name.startswith(("_", ".")) and any(d.glob(PARQUET_GLOB)))


# ---------------------------------------------------------------------------------------------------------------
# Helpers of atomic publishing (used here and by warehouse/generations.py)
# ---------------------------------------------------------------------------------------------------------------
def crash_point(name: str) -> None:
    """Tests only: ``TTHC_TEST_KILL_AT=<name>`` kills this process with SIGKILL right here (a real kill -9 at a
    named point of a run, so a test can check what the next run finds). A no-op otherwise."""
    if os.environ.get("TTHC_TEST_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _fsync_dir(d: Path) -> None:
    try:
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - some filesystems refuse directory fsync
        pass


def _mkdir_public(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o755)  # whatever the umask: analysts read the marts
