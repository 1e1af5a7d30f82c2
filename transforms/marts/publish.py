"""Publish the three KPI marts as one generation (``warehouse.generations.GenerationWriter``), merged with the rows kept
from the published one when only some periods were rebuilt, and the record of what they were built from."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from transforms.marts.form06 import check_form06
from transforms.marts.names import DEFAULT_TARGETS, KEYS, MART_F06
from warehouse.generations import GenerationWriter, current_generation, generation_manifest, published_manifest
from warehouse.store import crash_point, table_dir


def read_parquet(path: Path) -> pa.Table:
    """One Parquet file as a table (not ``pq.read_table``: its dataset layer imports pandas, 0.2 s of every build)."""
    with pq.ParquetFile(path) as f:
        return f.read()


def merge(old_file: Path | None, new: pa.Table, periods: set[str] | None, keys: list[str]) -> pa.Table:
    """The new rows, plus (incremental build) the published rows of the periods not rebuilt, sorted by ``keys``."""
    merged = new
    if periods is not None and old_file is not None:
        old = read_parquet(old_file)
        keep = old.filter(pc.invert(pc.is_in(old.column("period"), value_set=pa.array(sorted(periods)))))
        merged = pa.concat_tables([keep.cast(new.schema), new])
    idx = pc.sort_indices(merged, options=pc.SortOptions([(k, "ascending", "at_start") for k in keys]))
    return merged.take(idx)


def built_from(wh: Path, as_of: date, targets_csv: Path | None = None) -> dict:
    """What marts built now are built from, recorded in their generation's manifest (``transforms.plan`` decides
    "nothing new" against it): as_of, core's inputs as core's meta records them (the staged batches, the digests of
    agencies.csv and of the extra days-off file) and the digest of targets.csv."""
    from transforms.core import _digest, read_core_meta

    core = {k: v for k, v in read_core_meta(wh).items() if k != "state"}
    return {"as_of": as_of.isoformat(), "core": core, "targets_sha256": _digest(targets_csv or DEFAULT_TARGETS)}


def marts_as_of(warehouse: Path) -> date | None:
    """The as_of of the published marts (their generation's manifest); None when none was published."""
    as_of = published_manifest(warehouse).get("built_from", {}).get("as_of")
    return date.fromisoformat(as_of) if as_of else None


def published_file(wh: Path, gen: Path | None, table: str) -> Path | None:
    """The published file of a mart: in the current generation, else in the older single-file layout."""
    if gen is not None and (gen / table / "data.parquet").is_file():
        return gen / table / "data.parquet"
    legacy = table_dir(wh, table)
    if gen is None and not legacy.is_symlink() and (legacy / "data.parquet").is_file():
        return legacy / "data.parquet"
    return None


def _unchanged(old: Path | None, new: pa.Table) -> bool:
    if old is None:
        return False
    o = read_parquet(old)
    return o.schema.equals(new.schema) and o.equals(new)


def publish_marts(wh: Path, tables: dict[str, pa.Table], periods: set[str] | None = None, *,
                  built_from: dict | None = None) -> dict[str, int]:
    """Merge with the rows kept from the published generation (incremental) and publish the marts as one new
    generation: a reader sees the three marts of the previous build or the three of this one, never a mix; a mart
    whose content did not change is carried over as is (hard link). The generation records ``built_from``; when
    neither the marts nor that changed, nothing is published."""
    wh = Path(wh)
    prev = current_generation(wh)
    old = {name: published_file(wh, prev, name) for name in tables}
    final = {name: merge(old[name], t, periods, KEYS[name]) for name, t in tables.items()}
    check_form06(final[MART_F06])
    rows = {name: t.num_rows for name, t in final.items()}
    same = {name for name in final if _unchanged(old[name], final[name])}
    if prev is not None and same == set(final) and generation_manifest(prev).get("built_from") == built_from:
        return rows  # nothing to publish: the marts stay byte-identical
    with GenerationWriter(wh) as gen:
        for i, (name, t) in enumerate(final.items()):
            if i:
                crash_point("between_mart_writes")
            if name in same:
                gen.keep(name, old[name])
            else:
                gen.write(name, t)  # checked against its contract first: a violation publishes nothing
        gen.publish({"built_from": built_from or {}, "rows": rows})
    for stale in ("_marts_meta.json", "_build_meta.json"):  # the older layout's records, replaced by the manifest
        (wh / stale).unlink(missing_ok=True)
    return rows
