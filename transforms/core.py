"""Staging -> core: one row per business record (latest version), with the derived fields of docs/kpis.md.

Tables written (``<warehouse>/<table>/data.parquet``, replaced atomically):
- ``core_agencies``: agencies.csv typed, with the procedure level an agency's level maps to (settled detail 8).
- ``core_procedures``: every dated catalogue version (not only the latest), with ``in_force_from`` /
  ``in_force_to`` so the catalogue in force on any date can be read: the latest version with
  ``date(updated_at) <= day``, else the earliest one (settled details 8 and 15).
- ``core_dossiers``: latest version per dossier (latest ``updated_at``; tie: later ``_ingested_at``, then greater
  ``_batch_id``, then greater ``_source_row``), with the received flag, the due date (``date(due_at)``, else
  ``add_working_days(date(received_at), Thời hạn giải quyết)`` of the catalogue version in force on the received
  date), the end date (``date(finished_at)``, else ``date(returned_at)`` for statuses 7-10), the field code/name
  (the dossier's, else its procedure's), the paper-result flag (unknown counts as paper, settled detail 12), the
  supplement rule's format (settled detail 5) and the owner agency on the received date (rule 9, first step).
  No personal data: only ``applicant_pseudonym``.
- ``core_feedback``, ``core_ratings``, ``core_payments``, ``core_e_certifications``: latest version per record
  (ratings: latest ``rated_at``, settled detail 17), with dates and the owner on the record's date.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import yaml

from transforms.calendar import FIRST_YEAR, LAST_YEAR, get_calendar
from warehouse.store import copy_query_to_table, table_dir, table_exists, table_files, table_glob, validator_for

EXPECTATIONS = Path(__file__).resolve().parent.parent / "expectations" / "tables"

STAGED = {
    "dossiers": "stg_one_stop__dossiers",
    "procedures": "stg_dvc_portal__procedures",
    "payments": "stg_dvc_portal__payments",
    "ratings": "stg_dvc_portal__ratings",
    "feedback": "stg_dvc_portal__feedback",
    "e_certifications": "stg_dvc_portal__e_certifications",
}
NUMERIC_CODE_LISTS = {"dossier_status", "channel", "online_payment", "payment_channel", "online_level", "rating"}
LINEAGE = {"_batch_id": "VARCHAR", "_source_file": "VARCHAR", "_source_row": "BIGINT",
           "_ingested_at": "TIMESTAMP", "_format": "VARCHAR"}
# "the file ingested later wins" on an updated_at tie
LATER_INGEST = "_ingested_at DESC NULLS LAST, _batch_id DESC NULLS LAST, _source_row DESC NULLS LAST"


def duck(warehouse: Path | None = None, memory_limit: str | None = None, threads: int | None = None):
    """A DuckDB connection with bounded memory (spills to ``<warehouse>/.duckdb_tmp``)."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET memory_limit='{memory_limit or os.environ.get('TTHC_DUCKDB_MEMORY', '1GB')}'")
    con.execute(f"SET threads={threads or min(4, os.cpu_count() or 1)}")
    con.execute("SET preserve_insertion_order=false")
    con.execute("SET enable_progress_bar=false")
    if warehouse is not None:
        tmp = Path(warehouse) / ".duckdb_tmp"
        con.execute(f"SET temp_directory='{tmp}'")
    return con


def _duck_type(col: dict) -> str:
    t = col["type"]
    if t in ("string", "agency", "code_list"):
        return "VARCHAR"
    if t in ("int", "money"):
        return "BIGINT"
    if t == "bool":
        return "BOOLEAN"
    if t == "timestamp":
        return "TIMESTAMP"
    if t == "date":
        return "DATE"
    if t == "code":
        return "BIGINT" if col.get("codes") in NUMERIC_CODE_LISTS else "VARCHAR"
    if t == "supplement_list":
        return "STRUCT(requested_at TIMESTAMP, received_at TIMESTAMP)[]"
    raise ValueError(f"unknown contract type {t!r}")


def staged_columns(table: str) -> dict[str, str]:
    """Column -> DuckDB type of a staged table (contract columns without dropped personal data + lineage)."""
    spec = yaml.safe_load((EXPECTATIONS / f"{table}.yaml").read_text(encoding="utf-8"))
    cols: dict[str, str] = {}
    for c in spec["columns"]:
        if c.get("pii") == "drop":
            continue
        if c.get("pii") == "pseudonym":
            cols[c.get("pseudonym", "applicant_pseudonym")] = "VARCHAR"
            continue
        cols[c["name"]] = _duck_type(c)
    cols.update(LINEAGE)
    return cols


def staged_relation(con, warehouse: Path, table: str, files: list[Path] | None = None,
                    types: dict[str, str] | None = None) -> str:
    """SQL for a staged table (or only its ``files``) with every contract column present and typed (missing ones
    as typed NULLs); ``types`` overrides the type of some columns (``dossier_enums``)."""
    cols = {c: (types or {}).get(c, t) for c, t in staged_columns(table).items()}
    if not table_exists(warehouse, table) or files == []:
        sel = ", ".join(f"CAST(NULL AS {t}) AS {c}" for c, t in cols.items())
        return f"(SELECT {sel} WHERE false)"
    where = f"'{table_glob(warehouse, table)}'" if files is None else repr([str(f) for f in files])
    src = f"read_parquet({where}, union_by_name=true)"
    have = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()}
    sel = ", ".join(f"CAST({c} AS {t}) AS {c}" if c in have else f"CAST(NULL AS {t}) AS {c}"
                    for c, t in cols.items())
    return f"(SELECT {sel} FROM {src})"


# ---------------------------------------------------------------------------------------------------------------
# agencies and the owner rule
# ---------------------------------------------------------------------------------------------------------------
def load_agencies(con, agencies_csv: Path) -> None:
    """Temp table ``agencies`` (typed agencies.csv) and ``agency_chain`` (code, pos, member): the successor chain."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE agencies AS
        SELECT trim(agency_code) AS agency_code, trim(agency_name) AS agency_name, lower(trim(level)) AS level,
               nullif(trim(parent_code), '') AS parent_code,
               CAST(nullif(trim(valid_from), '') AS DATE) AS valid_from,
               CAST(nullif(trim(valid_to), '') AS DATE) AS valid_to,
               nullif(trim(successor_code), '') AS successor_code,
               nullif(trim(legal_basis), '') AS legal_basis,
               CASE lower(trim(level)) WHEN 'commune' THEN 'commune' WHEN 'district' THEN 'district'
                    ELSE 'province' END AS procedure_level
        FROM read_csv('{Path(agencies_csv)}', all_varchar=true, header=true)
        WHERE nullif(trim(agency_code), '') IS NOT NULL
    """)
    make_agency_chain(con)


def make_agency_chain(con) -> None:
    """Temp tables ``agency_chain`` and ``agency_chain_v`` from the temp table ``agencies``."""
    rows = con.execute("SELECT agency_code, successor_code FROM agencies").fetchall()
    succ = dict(rows)
    chain_rows = []
    for code in succ:
        seen, cur, pos = set(), code, 0
        while cur is not None and cur not in seen:
            chain_rows.append((code, pos, cur))
            seen.add(cur)
            cur = succ.get(cur)
            pos += 1
    con.execute("CREATE OR REPLACE TEMP TABLE agency_chain (agency_code VARCHAR, pos INTEGER, member VARCHAR)")
    if chain_rows:
        con.executemany("INSERT INTO agency_chain VALUES (?, ?, ?)", chain_rows)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE agency_chain_v AS
        SELECT c.agency_code, c.pos, c.member, a.valid_from, a.valid_to
        FROM agency_chain c JOIN agencies a ON a.agency_code = c.member
    """)


def owner_on_date_sql(pairs_sql: str) -> str:
    """Rule 9, first step, for distinct (agency_code, day) pairs: follow successors while the agency is not valid on
    the day; a chain ending in an agency not valid on the day keeps that last agency (settled detail 16)."""
    return f"""
        SELECT p.agency_code, p.day,
               coalesce(arg_min(c.member, c.pos) FILTER (WHERE c.valid_from <= p.day
                                                        AND (c.valid_to IS NULL OR p.day <= c.valid_to)),
                        arg_max(c.member, c.pos), p.agency_code) AS owner_code
        FROM ({pairs_sql}) p LEFT JOIN agency_chain_v c ON c.agency_code = p.agency_code
        GROUP BY p.agency_code, p.day
    """


def load_calendar(con, extra_days_off: Path | None) -> None:
    """Temp tables ``cal_days`` (day, wd_index, is_working) and ``cal_wd`` (wd_index -> working day)."""
    cal = get_calendar(extra_days_off)
    t = cal.working_day_table(date(FIRST_YEAR, 1, 1), date(LAST_YEAR, 12, 31))
    con.register("_cal_arrow", t)
    con.execute("CREATE OR REPLACE TEMP TABLE cal_days AS SELECT * FROM _cal_arrow")
    con.execute("CREATE OR REPLACE TEMP TABLE cal_wd AS SELECT wd_index, day FROM cal_days WHERE is_working")
    con.unregister("_cal_arrow")


def add_wd_sql(day_expr: str, n_expr: str, alias: str) -> tuple[str, str]:
    """(joins, expression) adding n working days to a date column in SQL using the calendar tables."""
    joins = (f" LEFT JOIN cal_days {alias}_c ON {alias}_c.day = {day_expr}"
             f" LEFT JOIN cal_wd {alias}_w ON {alias}_w.wd_index = {alias}_c.wd_index + {n_expr}")
    expr = f"CASE WHEN {n_expr} = 0 THEN {day_expr} WHEN {n_expr} > 0 THEN {alias}_w.day END"
    return joins, expr


# ---------------------------------------------------------------------------------------------------------------
# the build
# ---------------------------------------------------------------------------------------------------------------
def _latest(src: str, key: str, order: str = "updated_at DESC NULLS LAST") -> str:
    return (f"SELECT * FROM {src} WHERE {key} IS NOT NULL "
            f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY {order}, {LATER_INGEST}) = 1")


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


def _write(con, warehouse: Path, table: str, sql: str, order_by: str | None) -> int:
    copy_query_to_table(con, f"SELECT * FROM ({sql})" + (f" ORDER BY {order_by}" if order_by else ""),
                        warehouse, table)
    return _count(con, warehouse, table)


def _count(con, warehouse: Path, table: str) -> int:
    return con.execute(f"SELECT count(*) FROM read_parquet('{table_glob(warehouse, table)}')").fetchone()[0]


def _build_core(con, wh: Path, agencies_csv: Path, extra_days_off: Path | None) -> dict[str, int]:
    load_agencies(con, agencies_csv)
    load_calendar(con, extra_days_off)
    counts: dict[str, int] = {}
    S = {k: staged_relation(con, wh, v) for k, v in STAGED.items()}

    counts["core_agencies"] = _write(con, wh, "core_agencies", """
        SELECT agency_code, agency_name, level, procedure_level, parent_code, valid_from, valid_to,
               successor_code, legal_basis FROM agencies""", "agency_code")

    # --- procedures: every dated version (exact duplicates of a version collapse to the later ingest) -------
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE procs AS
        WITH v AS (
            SELECT * FROM {S['procedures']} WHERE procedure_code IS NOT NULL AND updated_at IS NOT NULL
            QUALIFY row_number() OVER (PARTITION BY procedure_code, updated_at ORDER BY {LATER_INGEST}) = 1
        )
        SELECT procedure_code, procedure_name, field_code, field_name, levels, online_level, is_online_eligible,
               is_full_online_eligible, has_sample_dossier, is_paper_result, legal_days, publication_decision_no,
               publication_decision_date, publication_state, has_simplification_plan, updated_at,
               CAST(updated_at AS DATE) AS version_date,
               CAST(row_number() OVER w AS BIGINT) AS version_no,
               CASE WHEN row_number() OVER w > 1 THEN CAST(updated_at AS DATE) END AS in_force_from,
               lead(CAST(updated_at AS DATE)) OVER w AS in_force_to,
               lead(updated_at) OVER w IS NULL AS is_latest_version,
               _batch_id, _source_file, _source_row
        FROM v
        WINDOW w AS (PARTITION BY procedure_code ORDER BY updated_at)
    """)
    counts["core_procedures"] = _write(con, wh, "core_procedures", "SELECT * FROM procs",
                                       "procedure_code, version_no")
    # the small tables first: core_dossiers reads payments and linked feedback from them
    for entity in SMALL:
        counts[f"core_{entity}"] = _write_small(con, wh, entity, S)
    enums = dossier_enums(con, S["dossiers"])
    src = staged_relation(con, wh, STAGED["dossiers"], types=enums)
    load_dossier_owner(con, owner_pairs_sql(src), enums.get("agency_code", "VARCHAR"))
    counts["core_dossiers"] = _write_dossier_parts(con, wh, core_dossiers_sql(src, wh, enums=enums), None)
    return counts


# ---------------------------------------------------------------------------------------------------------------
# A full build carries core_dossiers' low-cardinality text columns (codes, names, lineage) as DuckDB ENUM types:
# the Parquet writer dictionary-encodes an ENUM from its codes instead of hashing every string (for the 3.85M rows
# of the 5M-version bench, ~1.8 CPU-s less, a fifth of the build's biggest step), and the joins carry 1-2 byte
# codes. The files hold the same strings either way (Parquet has no ENUM of DuckDB's kind). Each type's values
# are sorted, so the codes compare and sort as the strings do (the later-ingest rule orders by _batch_id).
# ---------------------------------------------------------------------------------------------------------------
# staged column -> values its type must hold beside the column's own: the catalogue's (joined in and coalesced
# with), the agencies' (owners are agencies.csv codes), '' (compared with)
ENUM_EXTRA = {
    "procedure_code": "SELECT procedure_code FROM procs",
    "procedure_name": None,
    "field_code": "SELECT field_code FROM procs UNION ALL SELECT ''",
    "field_name": "SELECT field_name FROM procs UNION ALL SELECT ''",
    "agency_code": "SELECT member FROM agency_chain",
    "_format": None,
    "_batch_id": None,
    "_source_file": None,
}
# core columns derived from fixed values in core_dossiers_sql
FIXED_ENUMS = {"due_date_source": ("due_at", "legal_days"), "supplement_rule": ("flat", "list")}


def dossier_enums(con, src: str) -> dict[str, str]:
    """Create the ENUM types of ``ENUM_EXTRA``'s columns from the staged dossier versions ``src`` (one scan: the
    distinct values of a dictionary-encoded Parquet column cost little) and of ``FIXED_ENUMS``; needs the temp
    tables ``procs`` and ``agency_chain``. Returns column -> type name."""
    con.execute("CREATE OR REPLACE TEMP TABLE enum_values AS SELECT "
                + ", ".join(f"list(DISTINCT {c}) AS {c}" for c in ENUM_EXTRA) + f" FROM {src}")
    types = {}
    for c, extra in ENUM_EXTRA.items():
        t = types[c] = f"core_enum_{c.strip('_')}"
        values = f"SELECT unnest({c}) AS v FROM enum_values" + (f" UNION ALL {extra}" if extra else "")
        con.execute(f"CREATE OR REPLACE TYPE {t} AS ENUM "
                    f"(SELECT DISTINCT v FROM ({values}) WHERE v IS NOT NULL ORDER BY v)")
    for c, values in FIXED_ENUMS.items():
        t = types[c] = f"core_enum_{c}"
        con.execute(f"CREATE OR REPLACE TYPE {t} AS ENUM ({', '.join(repr(v) for v in sorted(values))})")
    return types


# the small core tables (one file each, rebuilt whole when a new batch of theirs arrives)
SMALL = ("payments", "feedback", "ratings", "e_certifications")
SMALL_KEY = {"payments": "payment_id", "feedback": "feedback_id", "ratings": "rating_id",
             "e_certifications": "transaction_id"}
# the date each small record is placed in time by (its periods), and whether it links to a dossier
SMALL_DATE = {"payments": "paid_date", "feedback": "received_date", "ratings": "rated_date",
              "e_certifications": "certified_date"}


def _write_small(con, wh: Path, entity: str, S: dict[str, str]) -> int:
    if entity == "payments":
        return _write(con, wh, "core_payments", f"""
            SELECT payment_id, dossier_id, amount_vnd, paid_at, CAST(paid_at AS DATE) AS paid_date, payment_channel,
                   status, status = 'success' AS is_success, updated_at, _batch_id, _source_file, _source_row
            FROM ({_latest(S['payments'], 'payment_id')})
        """, "payment_id")
    if entity == "feedback":
        fb = f"({_latest(S['feedback'], 'feedback_id')})"
        fjoins, deadline = add_wd_sql("f.received_date", "15", "dl")
        return _write(con, wh, "core_feedback", f"""
            WITH f AS (SELECT *, CAST(received_at AS DATE) AS received_date FROM {fb}),
            o AS ({owner_on_date_sql("SELECT DISTINCT agency_code, CAST(received_at AS DATE) AS day FROM " + fb)})
            SELECT f.feedback_id, f.agency_code, o.owner_code AS owner_agency_code, f.category, f.channel,
                   f.sent_at, f.received_at, f.received_date, f.answered_at,
                   CAST(f.answered_at AS DATE) AS answered_date,
                   f.published_at, f.status, coalesce(f.likes, 0) AS likes, coalesce(f.dislikes, 0) AS dislikes,
                   coalesce(f.is_re_complaint, false) AS is_re_complaint, nullif(f.dossier_id, '') AS dossier_id,
                   {deadline} AS deadline_date, f.updated_at, f._batch_id, f._source_file, f._source_row
            FROM f {fjoins}
            LEFT JOIN o ON o.agency_code = f.agency_code AND o.day = f.received_date
        """, "feedback_id")
    if entity == "ratings":
        return _write(con, wh, "core_ratings", f"""
            SELECT rating_id, dossier_id, rating, rating = 1 AS is_dissatisfied, rated_at,
                   CAST(rated_at AS DATE) AS rated_date, _batch_id, _source_file, _source_row
            FROM ({_latest(S['ratings'], 'rating_id', 'rated_at DESC NULLS LAST')})
        """, "rating_id")
    ec = f"({_latest(S['e_certifications'], 'transaction_id')})"
    return _write(con, wh, "core_e_certifications", f"""
        WITH e AS (SELECT *, CAST(certified_at AS DATE) AS certified_date FROM {ec}),
        o AS ({owner_on_date_sql("SELECT DISTINCT agency_code, CAST(certified_at AS DATE) AS day FROM " + ec)})
        SELECT e.transaction_id, e.agency_code, o.owner_code AS owner_agency_code, e.certified_at,
               e.certified_date, e.copies, e.updated_at, e._batch_id, e._source_file, e._source_row
        FROM e LEFT JOIN o ON o.agency_code = e.agency_code AND o.day = e.certified_date
    """, "transaction_id")


def owner_day_sql(alias: str = "") -> str:
    """A dossier version's first date (received, else submitted, else updated): the day its owner is looked up on
    and the month of the core_dossiers file it lives in. ``alias``: the relation's, with its dot."""
    return f"CAST(coalesce({alias}received_at, {alias}submitted_at, {alias}updated_at) AS DATE)"


def _latest_sql(src: str, cols: str = "s.*") -> str:
    """``cols`` of each dossier's winning version in ``src``: every version but the losers (``losers_sql``); an
    anti join, whose hash table holds the losers, fewer than the winners."""
    return (f"SELECT {cols} FROM {src} s ANTI JOIN ({losers_sql(src)}) l "
            f"ON l._batch_id = s._batch_id AND l._source_row = s._source_row WHERE s.dossier_id IS NOT NULL")


def _winners_sql(src: str) -> str:
    """The winning row of each dossier in ``src`` (an incremental build: the versions of the touched dossiers),
    with the agency and day its owner is looked up by."""
    return _latest_sql(src, f"s._batch_id, s._source_row, s.agency_code, {owner_day_sql('s.')} AS owner_day")


def losers_sql(src: str) -> str:
    """The staged dossier versions that lose (all but each dossier's latest), as (_batch_id, _source_row).

    The same rows as ranking every version by ``updated_at DESC NULLS LAST`` then the later ingest and keeping ranks
    above 1, found with hash aggregation instead of a sort of every version (5M versions: 1.4 s instead of 2.6 s on
    the bench machine): only a dossier with several versions has a loser; of its versions, one older than its
    latest ``updated_at`` loses outright, and only versions tied on the latest are ranked by the later ingest."""
    v = f"SELECT dossier_id, updated_at, _ingested_at, _batch_id, _source_row FROM {src} WHERE dossier_id IS NOT NULL"
    return f"""
        WITH multi AS (
            SELECT dossier_id, max(updated_at) AS latest FROM ({v}) GROUP BY dossier_id HAVING count(*) > 1
        ), cand AS MATERIALIZED (  -- top: carries its dossier's latest updated_at (all NULL: every version ties)
            SELECT v.*, coalesce(v.updated_at = m.latest, m.latest IS NULL) AS top
            FROM ({v}) v JOIN multi m USING (dossier_id)
        ), tie AS (
            SELECT dossier_id FROM cand WHERE top GROUP BY dossier_id HAVING count(*) > 1
        )
        SELECT _batch_id, _source_row FROM cand WHERE NOT top
        UNION ALL
        SELECT _batch_id, _source_row FROM cand SEMI JOIN tie USING (dossier_id) WHERE top
        QUALIFY row_number() OVER (PARTITION BY dossier_id ORDER BY {LATER_INGEST}) > 1
    """


def load_dossier_owner(con, pairs_sql: str, owner_type: str = "VARCHAR") -> None:
    """Temp table ``dossier_owner`` (agency_code, day, owner_code): rule 9's owner for the (agency_code, day) pairs
    of ``pairs_sql``. A table of its own, built before the dossier rows stream past it: a few thousand pairs, which
    the planner, left to estimate them inside the big query, took for millions and hashed the dossier rows instead."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE dossier_owner AS SELECT * REPLACE "
                f"(CAST(owner_code AS {owner_type}) AS owner_code) FROM ({owner_on_date_sql(pairs_sql)})")


def owner_pairs_sql(src: str) -> str:
    """The (agency_code, day) pairs of every staged version in ``src``: a superset of the winners' pairs (the owner
    is looked up by pair, so extra pairs change nothing), read without knowing the winners."""
    return f"SELECT DISTINCT agency_code, {owner_day_sql()} AS day FROM {src} WHERE dossier_id IS NOT NULL"


def core_dossiers_sql(src: str, wh: Path, touched: str | None = None, win: str | None = None,
                      enums: dict[str, str] | None = None) -> str:
    """core_dossiers rows (plus ``_part``, the file they live in) from the staged dossier versions ``src``. A full
    build (``win`` None) reads every staged row once and drops the losing versions (``losers_sql``); an incremental
    one passes ``win``, a table of the winning rows of the ``touched`` dossiers (``_winners_sql``), and fetches
    only those. The owner is read from ``dossier_owner`` (``load_dossier_owner``, for the pairs of these rows);
    payments and linked feedback from the core tables (written first). With ``enums`` (``dossier_enums``; ``src``
    typed with them) the catalogue's text columns and the derived ones take the same ENUM types."""
    enums = enums or {}

    def lit(col: str, value: str) -> str:
        return f"CAST('{value}' AS {enums[col]})" if col in enums else f"'{value}'"

    procs = "procs"
    if enums:
        procs = ("(SELECT * REPLACE (" + ", ".join(f"CAST({c} AS {enums[c]}) AS {c}" for c in
                                                   ("procedure_code", "field_code", "field_name")) + ") FROM procs)")
    only = f" AND dossier_id IN (SELECT dossier_id FROM {touched})" if touched else ""
    joins, due_fallback = add_wd_sql("x.received_date", "x.legal_days", "due")
    pay, fb = f"read_parquet('{table_glob(wh, 'core_payments')}')", f"read_parquet('{table_glob(wh, 'core_feedback')}')"
    if win is None:
        latest = _latest_sql(src)
    else:
        latest = f"SELECT s.* FROM {src} s SEMI JOIN {win} w ON w._batch_id = s._batch_id AND w._source_row = s._source_row"
    return f"""
        WITH d_latest AS ({latest}),
        base AS (
            SELECT d.*, CAST(d.received_at AS DATE) AS received_date,
                   {owner_day_sql('d.')} AS owner_day
            FROM d_latest d
        ), x AS (
            SELECT b.*, p.legal_days, p.is_paper_result AS proc_is_paper_result,
                   p.field_code AS proc_field_code, p.field_name AS proc_field_name, p.version_no AS proc_version_no
            FROM base b LEFT JOIN {procs} p
              ON p.procedure_code = b.procedure_code
             AND (p.in_force_from IS NULL OR b.owner_day >= p.in_force_from)
             AND (p.in_force_to IS NULL OR b.owner_day < p.in_force_to)
        ), paid AS (
            SELECT dossier_id, min(paid_date) AS first_paid_date FROM {pay}
            WHERE status = 'success' AND paid_at IS NOT NULL{only} GROUP BY dossier_id
        ), linked AS (
            SELECT dossier_id, min(received_date) AS first_feedback_date FROM {fb}
            WHERE dossier_id IS NOT NULL AND received_at IS NOT NULL{only} GROUP BY dossier_id
        )
        SELECT x.dossier_id, x.procedure_code, x.procedure_name,
               coalesce(nullif(x.field_code, {lit('field_code', '')}), x.proc_field_code) AS field_code,
               coalesce(nullif(x.field_name, {lit('field_name', '')}), x.proc_field_name) AS field_name,
               x.agency_code, o.owner_code AS owner_agency_code,
               coalesce(x.channel, 1) AS channel, x.status,
               (x.status NOT IN (1, 3) AND x.received_at IS NOT NULL) AS is_received,
               x.submitted_at, x.received_at, x.received_date, x.due_at, x.finished_at, x.returned_at,
               x.legal_days, x.proc_version_no AS procedure_version_no,
               coalesce(CAST(x.due_at AS DATE), {due_fallback}) AS due_date,
               CASE WHEN x.due_at IS NOT NULL THEN {lit('due_date_source', 'due_at')}
                    WHEN x.legal_days IS NOT NULL AND x.received_date IS NOT NULL
                    THEN {lit('due_date_source', 'legal_days')} END
                 AS due_date_source,
               coalesce(CAST(x.finished_at AS DATE),
                        CASE WHEN x.status BETWEEN 7 AND 10 THEN CAST(x.returned_at AS DATE) END) AS end_date,
               coalesce(x.proc_is_paper_result, true) AS is_paper_result,
               CASE WHEN x._format = 'national_sync' THEN {lit('supplement_rule', 'list')}
                    ELSE {lit('supplement_rule', 'flat')} END AS supplement_rule,
               coalesce(x.supplement_count, 0) AS supplement_count,
               x.supplement_requested_at, x.supplement_received_at,
               CASE WHEN x._format = 'national_sync' THEN x.supplement_requests END AS supplement_requests,
               coalesce(x.has_digitized_components, false) AS has_digitized_components,
               coalesce(x.has_e_result, false) AS has_e_result,
               coalesce(x.reused_digitized_data, false) AS reused_digitized_data,
               x.online_payment, x.fee_vnd,
               paid.first_paid_date AS first_successful_payment_date,
               linked.first_feedback_date AS first_linked_feedback_date,
               x.applicant_pseudonym, x.updated_at,
               x._format AS source_format, x._batch_id, x._source_file, x._source_row,
               {PART_SQL} AS _part
        FROM x {joins}
        LEFT JOIN dossier_owner o ON o.agency_code = x.agency_code AND o.day = x.owner_day
        LEFT JOIN paid ON paid.dossier_id = x.dossier_id
        LEFT JOIN linked ON linked.dossier_id = x.dossier_id
    """


# ---------------------------------------------------------------------------------------------------------------
# core_dossiers is split into one file per month of the dossier's first date (received, else submitted, else
# updated): p<yyyymm>-<n>.parquet. A night's new versions touch a few recent months, so an incremental build
# rewrites those files only. Readers glob the folder as for any table; the swap of several files is guarded by
# the core meta's state ("swapping" until every file is in place; a plan seeing it rebuilds everything).
# ---------------------------------------------------------------------------------------------------------------
# yyyymm as an INTEGER: DuckDB's partitioned writer costs a third less CPU with an integer key than with the
# same months as strings (13 vs 20 CPU-s for the 3.85M rows of the 5M-version bench)
PART_SQL = "CAST(year(x.owner_day) * 100 + month(x.owner_day) AS INTEGER)"
# the part of a row read back from its file p<yyyymm>-<n>.parquet (the ``filename`` column of read_parquet)
FILE_PART_SQL = "CAST(substr(parse_filename(filename), 2, 6) AS INTEGER)"
CORE_META = "_core_meta.json"
DOSSIERS = "core_dossiers"


def _part_of(path: Path) -> str | None:
    n = path.name
    return n[1:7] if n.startswith("p") and len(n) > 8 and n[7] == "-" else None


def _write_dossier_parts(con, wh: Path, sql: str, parts: set[str] | None) -> int:
    """COPY ``sql`` (rows with ``_part``) into one file set per part, then swap in: every file of the table
    (``parts`` None) or only the files of ``parts`` (incremental)."""
    d = table_dir(wh, DOSSIERS)
    d.mkdir(parents=True, exist_ok=True)
    tmp = Path(wh) / f".{DOSSIERS}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        # a partitioned COPY buffers rows per open part until this many: keep it low or every month of a
        # whole build sits in memory at once
        con.execute("SET partitioned_write_flush_threshold = 8192")
        # Parquet v2 pages and zstd level 1: the writer is a third of a full build; this writes it ~35% faster
        # than v1 + zstd 3 at about the same size (every reader here, DuckDB and pyarrow, reads v2)
        con.execute(f"COPY ({sql}) TO '{tmp}' (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1, "
                    f"PARQUET_VERSION v2, PARTITION_BY (_part), WRITE_PARTITION_COLUMNS false)")
        new: dict[str, Path] = {}
        if tmp.is_dir():
            for pd in sorted(tmp.iterdir()):
                part = pd.name.split("=", 1)[1]
                for i, f in enumerate(sorted(pd.glob("*.parquet"))):
                    new[f"p{part}-{i}.parquet"] = f
        if parts is None and not new:  # no dossier at all: an empty table with the right columns
            empty = tmp / "_part=empty"
            empty.mkdir(parents=True, exist_ok=True)
            con.execute(f"COPY (SELECT * EXCLUDE (_part) FROM ({sql}) LIMIT 0) TO '{empty / 'x.parquet'}' "
                        f"(FORMAT parquet)")
            new["p000000-0.parquet"] = empty / "x.parquet"
        old = table_files(wh, DOSSIERS)
        drop = [f for f in old if f.name not in new and (parts is None or _part_of(f) in parts)]
        hook = validator_for(DOSSIERS)
        if hook is not None:  # the whole table as it will be: new parts plus the parts kept
            hook(list(new.values()) + [f for f in old if f not in drop and f.name not in new])
        _set_meta_state(wh, "swapping")
        for name, f in new.items():
            os.chmod(f, 0o644)
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(f, d / name)
        for f in drop:
            f.unlink(missing_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _count(con, wh, DOSSIERS)


def staged_batches(wh: Path) -> dict[str, list[str]]:
    """Batch ids present in every staged table (what a full build would read)."""
    return {t: sorted(p.stem for p in table_files(wh, t)) for t in STAGED.values()}


def _digest(path: Path | None) -> str | None:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path and Path(path).exists() else None


def read_core_meta(wh: Path) -> dict:
    p = Path(wh) / CORE_META
    return json.loads(p.read_text()) if p.exists() else {}


def _save_core_meta(wh: Path, meta: dict) -> None:
    p = Path(wh) / CORE_META
    tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(meta, sort_keys=True))
    tmp.replace(p)


def _set_meta_state(wh: Path, state: str) -> None:
    Path(wh).mkdir(parents=True, exist_ok=True)
    meta = read_core_meta(wh)
    meta["state"] = state
    _save_core_meta(wh, meta)


def _write_core_meta(wh: Path, agencies_csv: Path, extra_days_off: Path | None,
                     batches: dict[str, list[str]]) -> None:
    _save_core_meta(wh, {"state": "ok", "agencies_sha256": _digest(agencies_csv),
                         "extra_days_off_sha256": _digest(extra_days_off), "staged": batches})


def new_staged_batches(wh: Path) -> dict[str, list[str]]:
    """Staged batches not yet in core (per staged table), as the core meta records it."""
    built = read_core_meta(wh).get("staged", {})
    return {t: [b for b in ids if b not in set(built.get(t, []))] for t, ids in staged_batches(wh).items()}


def incremental_blocker(wh: Path, agencies_csv: Path, extra_days_off: Path | None = None) -> str | None:
    """Why core cannot be updated incrementally (None when it can)."""
    meta = read_core_meta(wh)
    if not meta:
        return "no core build recorded"
    if meta.get("state") != "ok":
        return f"the last core build did not finish (state {meta.get('state')!r})"
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
    for t in ("core_agencies", "core_procedures", *(f"core_{e}" for e in SMALL)):
        if not table_exists(wh, t):
            return f"{t} is missing"
    files = table_files(wh, DOSSIERS)
    if not files or any(_part_of(f) is None for f in files):
        return "core_dossiers is missing or in the single-file layout"
    return None


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
    counts = {t: _count(con, wh, t) for t in ("core_agencies", "core_procedures")}
    if not any(new.values()):
        counts.update({f"core_{e}": _count(con, wh, f"core_{e}") for e in (*SMALL, "dossiers")})
        return CoreUpdate(counts, False, "no new staged batch")
    load_agencies(con, agencies_csv)
    load_calendar(con, extra_days_off)
    con.execute(f"CREATE OR REPLACE TEMP TABLE procs AS SELECT * FROM read_parquet('{table_glob(wh, 'core_procedures')}')")
    S = {k: staged_relation(con, wh, v) for k, v in STAGED.items()}
    con.execute("CREATE OR REPLACE TEMP TABLE touched (dossier_id VARCHAR)")
    firsts: list[date] = []
    touched: dict[str, int] = {}

    def new_rows(entity: str, cols: str) -> str:
        files = [str(table_dir(wh, STAGED[entity]) / f"{b}.parquet") for b in new[STAGED[entity]]]
        return f"(SELECT {cols} FROM read_parquet({files!r}, union_by_name=true))"

    _set_meta_state(wh, "building")
    for entity in SMALL:
        if not new[STAGED[entity]]:
            counts[f"core_{entity}"] = _count(con, wh, f"core_{entity}")
            continue
        key, dcol, table = SMALL_KEY[entity], SMALL_DATE[entity], f"core_{entity}"
        ids = new_rows(entity, key)
        link = "dossier_id" if entity in ("payments", "feedback") else "NULL"
        sel = f"SELECT {link} AS dossier_id, {dcol} AS d FROM read_parquet('{table_glob(wh, table)}') " \
              f"WHERE {key} IN {ids}"
        con.execute(f"CREATE OR REPLACE TEMP TABLE chg AS {sel}")  # old versions
        counts[table] = _write_small(con, wh, entity, S)
        con.execute(f"INSERT INTO chg {sel}")  # new versions
        touched[table] = con.execute("SELECT count(*) FROM chg").fetchone()[0]
        d = con.execute("SELECT min(d) FROM chg").fetchone()[0]
        if d is not None:
            firsts.append(d)
        if link != "NULL":
            con.execute("INSERT INTO touched SELECT dossier_id FROM chg WHERE dossier_id IS NOT NULL")
    if new[STAGED["dossiers"]]:
        con.execute(f"INSERT INTO touched SELECT dossier_id FROM {new_rows('dossiers', 'dossier_id')} "
                    f"WHERE dossier_id IS NOT NULL")
    con.execute("CREATE OR REPLACE TEMP TABLE touched AS SELECT DISTINCT dossier_id FROM touched")
    n_touched = con.execute("SELECT count(*) FROM touched").fetchone()[0]
    if n_touched:
        # narrow pass over every staged version of the touched dossiers: the winners (whole rows are then read
        # only from the batch files that hold one, usually the night's own) and the month files their current
        # core rows can live in (a core row's file is the month of its winning version's first date, and that
        # version is one of these)
        con.execute(f"""CREATE OR REPLACE TEMP TABLE tv AS
                        SELECT dossier_id, updated_at, _ingested_at, _batch_id, _source_row, agency_code,
                               received_at, submitted_at,
                               strftime({owner_day_sql()}, '%Y%m') AS vp
                        FROM {S['dossiers']} WHERE dossier_id IN (SELECT dossier_id FROM touched)""")
        con.execute(f"CREATE OR REPLACE TEMP TABLE win_t AS {_winners_sql('tv')}")
        vparts = {r[0] for r in con.execute("SELECT DISTINCT vp FROM tv").fetchall()}
        cand = [str(f) for f in table_files(wh, DOSSIERS) if _part_of(f) in vparts]
        old = (f"read_parquet({cand!r}, filename=true)" if cand
               else f"(SELECT * FROM read_parquet('{table_glob(wh, DOSSIERS)}', filename=true) LIMIT 0)")
        con.execute(f"""CREATE OR REPLACE TEMP TABLE old_t AS
                        SELECT * EXCLUDE (filename), {FILE_PART_SQL} AS _part FROM {old}
                        WHERE dossier_id IN (SELECT dossier_id FROM touched)""")
        wb = [r[0] for r in con.execute("SELECT DISTINCT _batch_id FROM win_t").fetchall()]
        src = staged_relation(con, wh, STAGED["dossiers"],
                              files=[table_dir(wh, STAGED["dossiers"]) / f"{b}.parquet" for b in wb])
        load_dossier_owner(con, "SELECT DISTINCT agency_code, owner_day AS day FROM win_t")
        con.execute(f"CREATE OR REPLACE TEMP TABLE new_d AS {core_dossiers_sql(src, wh, 'touched', 'win_t')}")
        # only dossiers whose row really changed (an older version or an unrelated payment changes nothing)
        con.execute("""CREATE OR REPLACE TEMP TABLE touched AS
                       SELECT DISTINCT dossier_id FROM (
                           SELECT * FROM (SELECT * FROM new_d EXCEPT ALL SELECT * FROM old_t)
                           UNION ALL SELECT * FROM (SELECT * FROM old_t EXCEPT ALL SELECT * FROM new_d))""")
        n_touched = con.execute("SELECT count(*) FROM touched").fetchone()[0]
        con.execute("DELETE FROM new_d WHERE dossier_id NOT IN (SELECT dossier_id FROM touched)")
        con.execute("DELETE FROM old_t WHERE dossier_id NOT IN (SELECT dossier_id FROM touched)")
        parts = {str(r[0]) for r in con.execute("SELECT _part FROM new_d UNION SELECT _part FROM old_t").fetchall()}
        files = [str(f) for f in table_files(wh, DOSSIERS) if _part_of(f) in parts]
        sql = "SELECT * FROM new_d"
        if files:
            sql = (f"SELECT * EXCLUDE (filename), {FILE_PART_SQL} AS _part "
                   f"FROM read_parquet({files!r}, filename=true) "
                   f"WHERE dossier_id NOT IN (SELECT dossier_id FROM touched) UNION ALL BY NAME {sql}")
        counts["core_dossiers"] = (_write_dossier_parts(con, wh, sql, parts) if n_touched
                                   else _count(con, wh, DOSSIERS))
        d = con.execute("SELECT min(received_date) FROM (SELECT received_date FROM old_t UNION ALL "
                        "SELECT received_date FROM new_d)").fetchone()[0]
        if d is not None:
            firsts.append(d)
        touched["core_dossiers"] = n_touched
    else:
        counts["core_dossiers"] = _count(con, wh, DOSSIERS)
    _write_core_meta(wh, agencies_csv, extra_days_off, present)
    return CoreUpdate(counts, False, f"{sum(len(v) for v in new.values())} new staged batch(es)",
                      min(firsts) if firsts else None, touched)
