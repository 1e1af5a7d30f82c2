"""Tables published together (the three KPI marts): generations.

One generation folder per publish, ``_marts/<generation>/<table>/data.parquet`` with ``_generation.json`` (what the
tables were built from), and ``_marts/current``, a symlink to the published generation, replaced by one rename:
the tables change together. ``<table>`` at the root is a fixed symlink to ``_marts/current/<table>``, so
``<table>/data.parquet`` keeps working; a reader that wants one generation across tables resolves ``current`` once
(``published_dirs``). A publish killed at any point is finished or undone by ``recover_generations`` under the
warehouse lock.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from warehouse.state import read_state, write_state
from warehouse.store import (
    _fsync_dir,
    _mkdir_public,
    _tmp_path,
    crash_point,
    list_tables,
    table_dir,
    validator_for,
)

GENERATIONS = "_marts"  # generations of the tables published together
CURRENT = "current"  # _marts/current -> the published generation
GENERATION_MANIFEST = "_generation.json"


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
