"""The Parquet layout of the warehouse and its atomic writes.

Layout: every table is a folder named after the table under the warehouse root.
- Append-only layers (raw_, stg_, quarantine_): one file per batch, ``<table>/<batch_id>.parquet``. A batch
  file is written aside under a dot-name and renamed into place, so a reader sees a batch whole or not at all.
- Rebuilt tables (core_, mart_): one file, ``<table>/data.parquet``, replaced with ``os.replace`` after the new
  file is complete and validated; readers see the old table or the new one, never half of either
  (``core_dossiers`` is split by month, see transforms/core/parts.py).
- Tables published together (the three KPI marts): one generation folder per publish,
  ``_marts/<generation>/<table>/data.parquet`` with ``_generation.json`` (what the tables were built from), and
  ``_marts/current``, a symlink to the published generation, replaced by one rename: the tables change together.
  ``<table>`` at the root is a fixed symlink to ``_marts/current/<table>``, so ``<table>/data.parquet`` keeps
  working; a reader that wants one generation across tables resolves ``current`` once (``published_dirs``).
Files whose names start with ``.`` are work in progress and are never read (globs use ``[!.]*.parquet``).
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from warehouse.state import read_state, write_state

PARQUET_GLOB = "[!.]*.parquet"
GENERATIONS = "_marts"  # generations of the tables published together
CURRENT = "current"  # _marts/current -> the published generation
GENERATION_MANIFEST = "_generation.json"
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
# Generations: tables published together (the three KPI marts)
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


def generations_root(warehouse: Path) -> Path:
    return Path(warehouse) / GENERATIONS


def current_generation(warehouse: Path) -> Path | None:
    """The published generation's folder (``_marts/current`` read once), or None when none was published."""
    root = generations_root(warehouse)
    try:
        name = os.readlink(root / CURRENT)
    except OSError:  # no generation yet (or ``current`` is not a link: a copy that followed links)
        return None
    gen = root / name
    return gen if (gen / GENERATION_MANIFEST).is_file() else None


def generation_manifest(gen: Path | None) -> dict:
    """``_generation.json`` of a generation: its name, tables, rows and ``built_from``; {} for None."""
    if gen is None:
        return {}
    return read_state(Path(gen) / GENERATION_MANIFEST)


def published_manifest(warehouse: Path) -> dict:
    """The manifest of the published generation ({} when none was published)."""
    return generation_manifest(current_generation(warehouse))


def published_dirs(warehouse: Path) -> dict[str, Path]:
    """Every table of the warehouse -> the folder to read it from. ``_marts/current`` is resolved once, so a reader
    using these folders sees the tables published together from one generation, whatever is published meanwhile
    (the previous generation is kept, so a reader that started on it can finish)."""
    wh = Path(warehouse)
    gen = current_generation(wh)
    out: dict[str, Path] = {}
    for t in list_tables(wh):
        d = table_dir(wh, t)
        if gen is not None and d.is_symlink() and (gen / t).is_dir():
            d = gen / t
        out[t] = d
    return out


def link_tables(warehouse: Path, tables: Iterable[str]) -> None:
    """``<table>`` -> ``_marts/current/<table>`` for each table (created once; a folder of the older single-file
    layout is replaced by the link, its file being in the generation already)."""
    wh = Path(warehouse)
    for t in tables:
        p = table_dir(wh, t)
        target = f"{GENERATIONS}/{CURRENT}/{t}"
        if p.is_symlink() and os.readlink(p) == target:
            continue
        tmp = wh / f".{t}.{uuid.uuid4().hex[:8]}.lnk"
        os.symlink(target, tmp)
        old = None
        if p.is_dir() and not p.is_symlink():  # the older layout: moved aside, then the link takes its place
            old = wh / f".{t}.{uuid.uuid4().hex[:8]}.old"
            os.rename(p, old)
        os.replace(tmp, p)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(wh)


def prune_generations(warehouse: Path, keep: Iterable[str | None]) -> list[str]:
    """Remove every generation but ``keep`` (the current one and the previous one) and work left by killed
    publishes; returns the names removed."""
    root = generations_root(warehouse)
    if not root.is_dir():
        return []
    keep = {k for k in keep if k} | {CURRENT}
    removed = []
    for e in root.iterdir():
        if e.name in keep:
            continue
        if e.is_dir() and not e.is_symlink():
            shutil.rmtree(e, ignore_errors=True)
        else:
            e.unlink(missing_ok=True)
        removed.append(e.name)
    return removed


class GenerationWriter:
    """One new generation of the tables published together. Tables are written aside in ``_marts/.<name>/``
    (each checked against its contract before it is final); ``publish`` writes the manifest, renames the folder
    to ``_marts/<name>`` and then replaces ``_marts/current`` with a link to it: one rename makes every table of
    the generation visible at once. Leaving the ``with`` block without publishing removes the work."""

    def __init__(self, warehouse: Path):
        from datetime import UTC, datetime

        self.wh = Path(warehouse)
        self.root = generations_root(self.wh)
        self.name = f"g{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:6]}"
        self.work = self.root / f".{self.name}"
        self.tables: list[str] = []
        self.published: Path | None = None

    def __enter__(self) -> GenerationWriter:
        _mkdir_public(self.root)
        _mkdir_public(self.work)
        return self

    def __exit__(self, *exc) -> None:
        if self.published is None:
            shutil.rmtree(self.work, ignore_errors=True)

    def _final(self, table: str) -> Path:
        d = self.work / table
        _mkdir_public(d)
        self.tables.append(table)
        return d / "data.parquet"

    def write(self, table: str, data: pa.Table) -> Path:
        """``data`` as the generation's ``<table>/data.parquet``, validated by the table's contract hook first."""
        final = self._final(table)
        tmp = _tmp_path(final)
        pq.write_table(data, tmp, compression="zstd")
        hook = validator_for(table)
        if hook is not None:
            hook(tmp)
        os.chmod(tmp, 0o644)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        return final

    def keep(self, table: str, src: Path) -> Path:
        """A table unchanged since the previous generation: its file, hard-linked (same bytes, no copy)."""
        final = self._final(table)
        try:
            os.link(src, final)
        except OSError:  # another filesystem, or links refused
            shutil.copyfile(src, final)
            os.chmod(final, 0o644)
        return final

    def publish(self, manifest: dict) -> Path:
        """Make this generation the published one; returns its folder. The previous one is kept, older ones go."""
        write_state(self.work / GENERATION_MANIFEST,
                    {**manifest, "generation": self.name, "tables": sorted(self.tables)}, indent=1, mode=0o644)
        for t in self.tables:
            _fsync_dir(self.work / t)
        _fsync_dir(self.work)
        gen = self.root / self.name
        os.rename(self.work, gen)
        _fsync_dir(self.root)
        crash_point("before_publish_swap")
        prev = current_generation(self.wh)
        link = self.root / f".{CURRENT}.{uuid.uuid4().hex[:8]}.lnk"
        os.symlink(self.name, link)
        cur = self.root / CURRENT
        if cur.is_dir() and not cur.is_symlink():  # a copy of the warehouse that followed the link
            shutil.rmtree(cur)
        os.replace(link, cur)  # the publish: every table of the generation at once
        _fsync_dir(self.root)
        self.published = gen
        crash_point("after_publish_swap")
        link_tables(self.wh, self.tables)
        prune_generations(self.wh, keep=(self.name, prev.name if prev is not None else None))
        return gen


def recover_generations(warehouse: Path) -> list[str]:
    """What a publish killed midway left (run under the warehouse lock before a run writes): its work folder or a
    complete generation that never became current, temporary links, a table link not yet made; keeps the current
    generation and the one published before it. Returns what was removed."""
    wh = Path(warehouse)
    root = generations_root(wh)
    if not root.is_dir():
        return []
    removed = [p.name for p in wh.iterdir() if p.name.startswith(".") and p.name.endswith((".lnk", ".old"))]
    for name in removed:
        p = wh / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    gen = current_generation(wh)
    if gen is None:
        return removed
    link_tables(wh, generation_manifest(gen).get("tables", []))
    older = sorted(p.name for p in root.iterdir() if p.name.startswith("g") and p.name < gen.name and p.is_dir())
    return removed + prune_generations(wh, keep=(gen.name, older[-1] if older else None))
