"""A full core build: every core table from all staged tables."""

from __future__ import annotations

from pathlib import Path

from transforms.core import dossiers
from transforms.core.agencies import load_agencies, load_calendar
from transforms.core.dossiers import core_dossiers_sql, load_dossier_owner, owner_pairs_sql
from transforms.core.meta import _set_meta_state, _write_core_meta, staged_batches
from transforms.core.parts import write_dossier_parts
from transforms.core.small_tables import SMALL, write_core_agencies, write_core_procedures, write_small_table
from transforms.core.tables import STAGED, duck, staged_relation, staged_relations


def build_core(warehouse: Path, agencies_csv: Path, *, extra_days_off: Path | None = None,
               con=None) -> dict[str, int]:
    """Build every core table from all staged tables (full rebuild); returns rows per core table."""
    warehouse = Path(warehouse)
    own = con is None
    con = con or duck(warehouse)
    try:
        _set_meta_state(warehouse, "building")
        counts = _build_core(con, warehouse, Path(agencies_csv), extra_days_off)
        _write_core_meta(warehouse, Path(agencies_csv), extra_days_off, staged_batches(warehouse))
        return counts
    finally:
        if own:
            con.close()


def _build_core(con, wh: Path, agencies_csv: Path, extra_days_off: Path | None) -> dict[str, int]:
    load_agencies(con, agencies_csv)
    load_calendar(con, extra_days_off)
    staged = staged_relations(con, wh)
    counts = {"core_agencies": write_core_agencies(con, wh),
              "core_procedures": write_core_procedures(con, wh, staged["procedures"])}
    # the small tables first: core_dossiers reads payments and linked feedback from them
    for entity in SMALL:
        counts[f"core_{entity}"] = write_small_table(con, wh, entity, staged)
    counts["core_dossiers"] = _write_all_dossiers(con, wh, staged["dossiers"])
    return counts


def _write_all_dossiers(con, wh: Path, staged_dossiers: str) -> int:
    """core_dossiers in full, its text columns typed as ENUMs (``dossier_enums``) to write faster."""
    enums = dossiers.dossier_enums(con, staged_dossiers)
    src = staged_relation(con, wh, STAGED["dossiers"], types=enums)
    load_dossier_owner(con, owner_pairs_sql(src), enums.get("agency_code", "VARCHAR"))
    return write_dossier_parts(con, wh, core_dossiers_sql(src, wh, enums=enums), None)
