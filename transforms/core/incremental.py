"""An incremental core build: core brought up to date with the staged batches it has not seen. The small tables
with a new batch are rebuilt; core_dossiers is merged (rows of untouched dossiers kept, touched ones recomputed
from all their staged versions), rewriting only the month files concerned. When that cannot be done
(``incremental_blocker``) core is rebuilt in full."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from transforms.core.agencies import load_agencies, load_calendar
from transforms.core.build import build_core
from transforms.core.dossiers import core_dossiers_sql, load_dossier_owner, owner_day_sql, winners_sql
from transforms.core.meta import (
    _digest,
    _set_meta_state,
    _write_core_meta,
    new_staged_batches,
    read_core_meta,
    staged_batches,
)
from transforms.core.parts import DOSSIERS, FILE_PART_SQL, part_of, write_dossier_parts
from transforms.core.small_tables import LINKED_TO_DOSSIER, SMALL, SMALL_DATE, SMALL_KEY, write_small_table
from transforms.core.tables import STAGED, count_rows, duck, staged_relation, staged_relations
from warehouse.store import table_dir, table_exists, table_files, table_glob


def _inputs_changed(wh: Path, meta: dict, agencies_csv: Path, extra_days_off: Path | None) -> str | None:
    """Why the recorded build no longer matches its inputs: reference files changed, built batches gone, a new
    catalogue batch (None when it matches)."""
    if meta.get("agencies_sha256") != _digest(agencies_csv):
        return "agencies.csv changed"
    if meta.get("extra_days_off_sha256") != _digest(extra_days_off):
        return "the extra days-off file changed"
    present = staged_batches(wh)
    for t, ids in meta.get("staged", {}).items():
        gone = set(ids) - set(present.get(t, []))
        if gone:
            return f"{len(gone)} batch(es) of {t} built before are gone (held or removed)"
    if new_staged_batches(wh).get(STAGED["procedures"]):
        return "a new procedure catalogue batch"
    return None


def _tables_missing(wh: Path) -> str | None:
    for t in ("core_agencies", "core_procedures", *(f"core_{e}" for e in SMALL)):
        if not table_exists(wh, t):
            return f"{t} is missing"
    files = table_files(wh, DOSSIERS)
    if not files or any(part_of(f) is None for f in files):
        return "core_dossiers is missing or in the single-file layout"
    return None


def incremental_blocker(wh: Path, agencies_csv: Path, extra_days_off: Path | None = None) -> str | None:
    """Why core cannot be updated incrementally (None when it can)."""
    meta = read_core_meta(wh)
    if not meta:
        return "no core build recorded"
    if meta.get("state") != "ok":
        return f"the last core build did not finish (state {meta.get('state')!r})"
    return _inputs_changed(wh, meta, agencies_csv, extra_days_off) or _tables_missing(wh)


@dataclass
class CoreUpdate:
    """What an incremental core build did: rows per core table, whether it fell back to a full build, and the
    earliest date a changed record carries, old version or new (the marts rebuild periods from there on)."""
    counts: dict[str, int]
    full: bool
    reason: str
    first_date: date | None = None
    touched: dict[str, int] = field(default_factory=dict)


def update_core(warehouse: Path, agencies_csv: Path, *, extra_days_off: Path | None = None,
                con=None) -> CoreUpdate:
    """Bring core up to date with the staged batches it has not seen: the small tables with a new batch are
    rebuilt, core_dossiers is merged (rows of untouched dossiers kept, touched ones recomputed from all their
    staged versions) rewriting only the month files concerned. Falls back to ``build_core`` when a full rebuild
    is needed (see ``incremental_blocker``)."""
    wh = Path(warehouse)
    blocker = incremental_blocker(wh, Path(agencies_csv), extra_days_off)
    if blocker:
        return CoreUpdate(build_core(wh, agencies_csv, extra_days_off=extra_days_off, con=con), True, blocker)
    own = con is None
    con = con or duck(wh)
    try:
        return _update_core(con, wh, Path(agencies_csv), extra_days_off)
    finally:
        if own:
            con.close()


def _update_core(con, wh: Path, agencies_csv: Path, extra_days_off: Path | None) -> CoreUpdate:
    new = new_staged_batches(wh)
    present = staged_batches(wh)
    counts = {t: count_rows(con, wh, t) for t in ("core_agencies", "core_procedures")}
    if not any(new.values()):
        counts.update({f"core_{e}": count_rows(con, wh, f"core_{e}") for e in (*SMALL, "dossiers")})
        return CoreUpdate(counts, False, "no new staged batch")
    load_agencies(con, agencies_csv)
    load_calendar(con, extra_days_off)
    con.execute(f"CREATE OR REPLACE TEMP TABLE procs AS "
                f"SELECT * FROM read_parquet('{table_glob(wh, 'core_procedures')}')")
    staged = staged_relations(con, wh)
    con.execute("CREATE OR REPLACE TEMP TABLE touched (dossier_id VARCHAR)")
    _set_meta_state(wh, "building")
    firsts, touched = _update_small_tables(con, wh, new, staged, counts)
    if new[STAGED["dossiers"]]:
        con.execute(f"INSERT INTO touched SELECT dossier_id FROM {_new_rows_sql(wh, new, 'dossiers', 'dossier_id')} "
                    f"WHERE dossier_id IS NOT NULL")
    con.execute("CREATE OR REPLACE TEMP TABLE touched AS SELECT DISTINCT dossier_id FROM touched")
    if con.execute("SELECT count(*) FROM touched").fetchone()[0]:
        counts["core_dossiers"], first, touched["core_dossiers"] = _merge_touched_dossiers(con, wh, staged)
        if first is not None:
            firsts.append(first)
    else:
        counts["core_dossiers"] = count_rows(con, wh, DOSSIERS)
    _write_core_meta(wh, agencies_csv, extra_days_off, present)
    return CoreUpdate(counts, False, f"{sum(len(v) for v in new.values())} new staged batch(es)",
                      min(firsts) if firsts else None, touched)


def _new_rows_sql(wh: Path, new: dict[str, list[str]], entity: str, cols: str) -> str:
    """``cols`` of the rows of the entity's new staged batches."""
    files = [str(table_dir(wh, STAGED[entity]) / f"{b}.parquet") for b in new[STAGED[entity]]]
    return f"(SELECT {cols} FROM read_parquet({files!r}, union_by_name=true))"


def _update_small_tables(con, wh: Path, new: dict[str, list[str]], staged: dict[str, str],
                         counts: dict[str, int]) -> tuple[list[date], dict[str, int]]:
    """Rebuild each small table with a new batch; its changed records (old and new versions) give the earliest
    date changed, and those linked to a dossier go to the temp table ``touched``. Returns (first dates, records
    changed per table); fills ``counts``."""
    firsts: list[date] = []
    touched: dict[str, int] = {}
    for entity in SMALL:
        table = f"core_{entity}"
        if not new[STAGED[entity]]:
            counts[table] = count_rows(con, wh, table)
            continue
        key = SMALL_KEY[entity]
        link = "dossier_id" if entity in LINKED_TO_DOSSIER else "NULL"
        changed = (f"SELECT {link} AS dossier_id, {SMALL_DATE[entity]} AS day "
                   f"FROM read_parquet('{table_glob(wh, table)}') "
                   f"WHERE {key} IN {_new_rows_sql(wh, new, entity, key)}")
        con.execute(f"CREATE OR REPLACE TEMP TABLE changed_records AS {changed}")  # old versions
        counts[table] = write_small_table(con, wh, entity, staged)
        con.execute(f"INSERT INTO changed_records {changed}")  # new versions
        touched[table] = con.execute("SELECT count(*) FROM changed_records").fetchone()[0]
        first = con.execute("SELECT min(day) FROM changed_records").fetchone()[0]
        if first is not None:
            firsts.append(first)
        if link != "NULL":
            con.execute("INSERT INTO touched SELECT dossier_id FROM changed_records WHERE dossier_id IS NOT NULL")
    return firsts, touched


def _load_touched_versions(con, wh: Path, staged_dossiers: str) -> None:
    """A narrow pass over every staged version of the touched dossiers: temp tables ``touched_versions`` and
    ``touched_winners`` (whole rows are then read only from the batch files that hold a winner, usually the
    night's own), and ``old_rows``, the touched dossiers' current core rows, read only from the month files they
    can live in (a core row's file is the month of its winning version's first date, one of these versions)."""
    con.execute(f"""CREATE OR REPLACE TEMP TABLE touched_versions AS
                    SELECT dossier_id, updated_at, _ingested_at, _batch_id, _source_row, agency_code,
                           received_at, submitted_at, strftime({owner_day_sql()}, '%Y%m') AS version_month
                    FROM {staged_dossiers} WHERE dossier_id IN (SELECT dossier_id FROM touched)""")
    con.execute(f"CREATE OR REPLACE TEMP TABLE touched_winners AS {winners_sql('touched_versions')}")
    months = {r[0] for r in con.execute("SELECT DISTINCT version_month FROM touched_versions").fetchall()}
    candidates = [str(f) for f in table_files(wh, DOSSIERS) if part_of(f) in months]
    old = (f"read_parquet({candidates!r}, filename=true)" if candidates
           else f"(SELECT * FROM read_parquet('{table_glob(wh, DOSSIERS)}', filename=true) LIMIT 0)")
    con.execute(f"""CREATE OR REPLACE TEMP TABLE old_rows AS
                    SELECT * EXCLUDE (filename), {FILE_PART_SQL} AS _part FROM {old}
                    WHERE dossier_id IN (SELECT dossier_id FROM touched)""")


def _load_new_rows(con, wh: Path) -> None:
    """Temp table ``new_rows``: the touched dossiers' core rows recomputed from their winning versions."""
    winner_batches = [r[0] for r in con.execute("SELECT DISTINCT _batch_id FROM touched_winners").fetchall()]
    src = staged_relation(con, wh, STAGED["dossiers"],
                          files=[table_dir(wh, STAGED["dossiers"]) / f"{b}.parquet" for b in winner_batches])
    load_dossier_owner(con, "SELECT DISTINCT agency_code, owner_day AS day FROM touched_winners")
    con.execute(f"CREATE OR REPLACE TEMP TABLE new_rows AS "
                f"{core_dossiers_sql(src, wh, 'touched', 'touched_winners')}")


def _keep_changed_only(con) -> int:
    """Only dossiers whose row really changed stay touched (an older version or an unrelated payment changes
    nothing); returns how many."""
    con.execute("""CREATE OR REPLACE TEMP TABLE touched AS
                   SELECT DISTINCT dossier_id FROM (
                       SELECT * FROM (SELECT * FROM new_rows EXCEPT ALL SELECT * FROM old_rows)
                       UNION ALL SELECT * FROM (SELECT * FROM old_rows EXCEPT ALL SELECT * FROM new_rows))""")
    con.execute("DELETE FROM new_rows WHERE dossier_id NOT IN (SELECT dossier_id FROM touched)")
    con.execute("DELETE FROM old_rows WHERE dossier_id NOT IN (SELECT dossier_id FROM touched)")
    return con.execute("SELECT count(*) FROM touched").fetchone()[0]


def _merge_touched_dossiers(con, wh: Path, staged: dict[str, str]) -> tuple[int, date | None, int]:
    """Recompute the touched dossiers and rewrite the month files their old or new rows live in. Returns
    (core_dossiers rows, earliest received date of a changed row, dossiers changed)."""
    _load_touched_versions(con, wh, staged["dossiers"])
    _load_new_rows(con, wh)
    n_changed = _keep_changed_only(con)
    months = {str(r[0]) for r in
              con.execute("SELECT _part FROM new_rows UNION SELECT _part FROM old_rows").fetchall()}
    files = [str(f) for f in table_files(wh, DOSSIERS) if part_of(f) in months]
    sql = "SELECT * FROM new_rows"
    if files:
        sql = (f"SELECT * EXCLUDE (filename), {FILE_PART_SQL} AS _part "
               f"FROM read_parquet({files!r}, filename=true) "
               f"WHERE dossier_id NOT IN (SELECT dossier_id FROM touched) UNION ALL BY NAME {sql}")
    rows = write_dossier_parts(con, wh, sql, months) if n_changed else count_rows(con, wh, DOSSIERS)
    first = con.execute("SELECT min(received_date) FROM (SELECT received_date FROM old_rows UNION ALL "
                        "SELECT received_date FROM new_rows)").fetchone()[0]
    return rows, first, n_changed
