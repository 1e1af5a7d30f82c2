"""Staging -> core: one row per business record (latest version), with the derived fields of docs/kpis.md.

Tables written (``<warehouse>/<table>/``, replaced atomically), and the module that writes each:
- ``core_agencies``: agencies.csv typed, with the procedure level an agency's level maps to (settled detail 8)
  (``agencies``: the list, successor chains and rule 9's owner on a day; ``small_tables`` writes it).
- ``core_procedures``: every dated catalogue version (not only the latest), with ``in_force_from`` /
  ``in_force_to`` so the catalogue in force on any date can be read: the latest version with
  ``date(updated_at) <= day``, else the earliest one (settled details 8 and 15) (``small_tables``).
- ``core_feedback``, ``core_ratings``, ``core_payments``, ``core_e_certifications``: latest version per record
  (ratings: latest ``rated_at``, settled detail 17), with dates and the owner on the record's date
  (``small_tables``).
- ``core_dossiers``: latest version per dossier with the derived fields (``dossiers``), one file per month
  (``parts``).
A full build is ``build.build_core``; ``incremental.update_core`` takes only the staged batches core has not seen
(``meta``: the build state in ``_core_meta.json``). ``tables``: the DuckDB session and the staged tables as core
reads them. Every name below is importable from ``transforms.core``.
"""

from transforms.core.agencies import (
    add_wd_sql,
    load_agencies,
    load_calendar,
    make_agency_chain,
    owner_on_date_sql,
    successor_chains,
)
from transforms.core.build import build_core
from transforms.core.dossiers import (
    ENUM_EXTRA,
    FIXED_ENUMS,
    PART_SQL,
    core_dossiers_sql,
    dossier_enums,
    latest_versions_sql,
    load_dossier_owner,
    losers_sql,
    owner_day_sql,
    owner_pairs_sql,
    winners_sql,
)
from transforms.core.incremental import CoreUpdate, incremental_blocker, update_core
from transforms.core.meta import (
    CORE_META,
    _digest,
    _set_meta_state,
    _write_core_meta,
    new_staged_batches,
    read_core_meta,
    staged_batches,
)
from transforms.core.parts import DOSSIERS, FILE_PART_SQL, part_of, write_dossier_parts
from transforms.core.small_tables import SMALL, SMALL_DATE, SMALL_KEY, write_small_table
from transforms.core.tables import (
    EXPECTATIONS,
    LATER_INGEST,
    LINEAGE,
    STAGED,
    count_rows,
    duck,
    latest_version_sql,
    staged_columns,
    staged_relation,
    write_table,
)

__all__ = [
    "CORE_META", "DOSSIERS", "ENUM_EXTRA", "EXPECTATIONS", "FILE_PART_SQL", "FIXED_ENUMS", "LATER_INGEST", "LINEAGE",
    "PART_SQL", "SMALL", "SMALL_DATE", "SMALL_KEY", "STAGED", "CoreUpdate", "_digest", "_set_meta_state",
    "_write_core_meta", "add_wd_sql", "build_core", "core_dossiers_sql", "count_rows", "dossier_enums", "duck",
    "incremental_blocker", "latest_version_sql", "latest_versions_sql", "load_agencies", "load_calendar",
    "load_dossier_owner", "losers_sql", "make_agency_chain", "new_staged_batches", "owner_day_sql",
    "owner_on_date_sql", "owner_pairs_sql", "part_of", "read_core_meta", "staged_batches", "staged_columns",
    "staged_relation", "successor_chains", "update_core", "winners_sql", "write_dossier_parts", "write_small_table",
    "write_table",
]
