"""``core_dossiers``: the latest version of each dossier with the fields the KPI rules derive from it.

The received flag, the due date (``date(due_at)``, else ``add_working_days(date(received_at), Thời hạn giải
quyết)`` of the catalogue version in force on the dossier's first date), the end date (``date(finished_at)``, else
``date(returned_at)`` for statuses 7-10), the field code/name (the dossier's, else its procedure's), the
paper-result flag (unknown counts as paper, settled detail 12), the supplement rule's format (settled detail 5) and
the owner agency on the dossier's first date (rule 9, first step). No personal data: only ``applicant_pseudonym``.
The latest version: latest ``updated_at``; tie: later ``_ingested_at``, then greater ``_batch_id``, then greater
``_source_row``.
"""

from __future__ import annotations

from pathlib import Path

from transforms.core.agencies import add_wd_sql, owner_on_date_sql
from transforms.core.tables import LATER_INGEST
from warehouse.store import table_glob

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
# the core_dossiers file a row lives in: yyyymm of its first date as an INTEGER (DuckDB's partitioned writer costs
# a third less CPU with an integer key than with the same months as strings: 13 vs 20 CPU-s for the 3.85M rows of
# the 5M-version bench)
PART_SQL = "CAST(year(dossier.owner_day) * 100 + month(dossier.owner_day) AS INTEGER)"


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


def owner_day_sql(alias: str = "") -> str:
    """A dossier version's first date (received, else submitted, else updated): the day its owner is looked up on
    and the month of the core_dossiers file it lives in. ``alias``: the relation's, with its dot."""
    return f"CAST(coalesce({alias}received_at, {alias}submitted_at, {alias}updated_at) AS DATE)"


def latest_versions_sql(src: str, cols: str = "version.*") -> str:
    """``cols`` of each dossier's winning version in ``src``: every version but the losers (``losers_sql``); an
    anti join, whose hash table holds the losers, fewer than the winners."""
    return (f"SELECT {cols} FROM {src} version ANTI JOIN ({losers_sql(src)}) loser "
            f"ON loser._batch_id = version._batch_id AND loser._source_row = version._source_row "
            f"WHERE version.dossier_id IS NOT NULL")


def winners_sql(src: str) -> str:
    """The winning row of each dossier in ``src`` (an incremental build: the versions of the touched dossiers),
    with the agency and day its owner is looked up by."""
    return latest_versions_sql(src, f"version._batch_id, version._source_row, version.agency_code, "
                                    f"{owner_day_sql('version.')} AS owner_day")


def losers_sql(src: str) -> str:
    """The staged dossier versions that lose (all but each dossier's latest), as (_batch_id, _source_row).

    The same rows as ranking every version by ``updated_at DESC NULLS LAST`` then the later ingest and keeping ranks
    above 1, found with hash aggregation instead of a sort of every version (5M versions: 1.4 s instead of 2.6 s on
    the bench machine): only a dossier with several versions has a loser; of its versions, one older than its
    latest ``updated_at`` loses outright, and only versions tied on the latest are ranked by the later ingest."""
    versions = (f"SELECT dossier_id, updated_at, _ingested_at, _batch_id, _source_row FROM {src} "
                f"WHERE dossier_id IS NOT NULL")
    return f"""
        WITH several AS (
            SELECT dossier_id, max(updated_at) AS latest FROM ({versions}) GROUP BY dossier_id HAVING count(*) > 1
        ), candidate AS MATERIALIZED (  -- on_top: carries its dossier's latest updated_at (all NULL: all tie)
            SELECT version.*, coalesce(version.updated_at = several.latest, several.latest IS NULL) AS on_top
            FROM ({versions}) version JOIN several USING (dossier_id)
        ), tied AS (
            SELECT dossier_id FROM candidate WHERE on_top GROUP BY dossier_id HAVING count(*) > 1
        )
        SELECT _batch_id, _source_row FROM candidate WHERE NOT on_top
        UNION ALL
        SELECT _batch_id, _source_row FROM candidate SEMI JOIN tied USING (dossier_id) WHERE on_top
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


def _inputs_sql(src: str, wh: Path, touched: str | None, win: str | None, catalogue: str) -> str:
    """The CTEs of ``core_dossiers_sql``: each dossier's latest version, dated, with its catalogue version in
    force, its first successful payment and its first linked feedback."""
    only = f" AND dossier_id IN (SELECT dossier_id FROM {touched})" if touched else ""
    payments = f"read_parquet('{table_glob(wh, 'core_payments')}')"
    feedback = f"read_parquet('{table_glob(wh, 'core_feedback')}')"
    if win is None:
        latest = latest_versions_sql(src)
    else:
        latest = (f"SELECT version.* FROM {src} version SEMI JOIN {win} winner "
                  f"ON winner._batch_id = version._batch_id AND winner._source_row = version._source_row")
    return f"""
        WITH latest_version AS ({latest}),
        dated AS (
            SELECT version.*, CAST(version.received_at AS DATE) AS received_date,
                   {owner_day_sql('version.')} AS owner_day
            FROM latest_version version
        ), dossier AS (
            SELECT dated.*, catalogue.legal_days, catalogue.is_paper_result AS proc_is_paper_result,
                   catalogue.field_code AS proc_field_code, catalogue.field_name AS proc_field_name,
                   catalogue.version_no AS proc_version_no
            FROM dated LEFT JOIN {catalogue} catalogue
              ON catalogue.procedure_code = dated.procedure_code
             AND (catalogue.in_force_from IS NULL OR dated.owner_day >= catalogue.in_force_from)
             AND (catalogue.in_force_to IS NULL OR dated.owner_day < catalogue.in_force_to)
        ), paid AS (
            SELECT dossier_id, min(paid_date) AS first_paid_date FROM {payments}
            WHERE status = 'success' AND paid_at IS NOT NULL{only} GROUP BY dossier_id
        ), linked AS (
            SELECT dossier_id, min(received_date) AS first_feedback_date FROM {feedback}
            WHERE dossier_id IS NOT NULL AND received_at IS NOT NULL{only} GROUP BY dossier_id
        )"""


def _columns_sql(enums: dict[str, str]) -> str:
    """The select list of ``core_dossiers_sql`` (relation ``dossier``, the owner as ``owner``)."""
    def lit(col: str, value: str) -> str:
        return f"CAST('{value}' AS {enums[col]})" if col in enums else f"'{value}'"

    _joins, due_by_legal_days = add_wd_sql("dossier.received_date", "dossier.legal_days", "due")
    return f"""
        dossier.dossier_id, dossier.procedure_code, dossier.procedure_name,
        coalesce(nullif(dossier.field_code, {lit('field_code', '')}), dossier.proc_field_code) AS field_code,
        coalesce(nullif(dossier.field_name, {lit('field_name', '')}), dossier.proc_field_name) AS field_name,
        dossier.agency_code, owner.owner_code AS owner_agency_code,
        coalesce(dossier.channel, 1) AS channel, dossier.status,
        (dossier.status NOT IN (1, 3) AND dossier.received_at IS NOT NULL) AS is_received,
        dossier.submitted_at, dossier.received_at, dossier.received_date, dossier.due_at, dossier.finished_at,
        dossier.returned_at, dossier.legal_days, dossier.proc_version_no AS procedure_version_no,
        coalesce(CAST(dossier.due_at AS DATE), {due_by_legal_days}) AS due_date,
        CASE WHEN dossier.due_at IS NOT NULL THEN {lit('due_date_source', 'due_at')}
             WHEN dossier.legal_days IS NOT NULL AND dossier.received_date IS NOT NULL
             THEN {lit('due_date_source', 'legal_days')} END
          AS due_date_source,
        coalesce(CAST(dossier.finished_at AS DATE),
                 CASE WHEN dossier.status BETWEEN 7 AND 10 THEN CAST(dossier.returned_at AS DATE) END) AS end_date,
        coalesce(dossier.proc_is_paper_result, true) AS is_paper_result,
        CASE WHEN dossier._format = 'national_sync' THEN {lit('supplement_rule', 'list')}
             ELSE {lit('supplement_rule', 'flat')} END AS supplement_rule,
        coalesce(dossier.supplement_count, 0) AS supplement_count,
        dossier.supplement_requested_at, dossier.supplement_received_at,
        CASE WHEN dossier._format = 'national_sync' THEN dossier.supplement_requests END AS supplement_requests,
        coalesce(dossier.has_digitized_components, false) AS has_digitized_components,
        coalesce(dossier.has_e_result, false) AS has_e_result,
        coalesce(dossier.reused_digitized_data, false) AS reused_digitized_data,
        dossier.online_payment, dossier.fee_vnd,
        paid.first_paid_date AS first_successful_payment_date,
        linked.first_feedback_date AS first_linked_feedback_date,
        dossier.applicant_pseudonym, dossier.updated_at,
        dossier._format AS source_format, dossier._batch_id, dossier._source_file, dossier._source_row,
        {PART_SQL} AS _part"""


def core_dossiers_sql(src: str, wh: Path, touched: str | None = None, win: str | None = None,
                      enums: dict[str, str] | None = None) -> str:
    """core_dossiers rows (plus ``_part``, the file they live in) from the staged dossier versions ``src``. A full
    build (``win`` None) reads every staged row once and drops the losing versions (``losers_sql``); an incremental
    one passes ``win``, a table of the winning rows of the ``touched`` dossiers (``winners_sql``), and fetches
    only those. The owner is read from ``dossier_owner`` (``load_dossier_owner``, for the pairs of these rows);
    payments and linked feedback from the core tables (written first). With ``enums`` (``dossier_enums``; ``src``
    typed with them) the catalogue's text columns and the derived ones take the same ENUM types."""
    enums = enums or {}
    catalogue = "procs"
    if enums:
        typed = ", ".join(f"CAST({c} AS {enums[c]}) AS {c}" for c in ("procedure_code", "field_code", "field_name"))
        catalogue = f"(SELECT * REPLACE ({typed}) FROM procs)"
    due_joins, _expr = add_wd_sql("dossier.received_date", "dossier.legal_days", "due")
    return f"""{_inputs_sql(src, wh, touched, win, catalogue)}
        SELECT {_columns_sql(enums)}
        FROM dossier {due_joins}
        LEFT JOIN dossier_owner owner ON owner.agency_code = dossier.agency_code AND owner.day = dossier.owner_day
        LEFT JOIN paid ON paid.dossier_id = dossier.dossier_id
        LEFT JOIN linked ON linked.dossier_id = dossier.dossier_id
    """
