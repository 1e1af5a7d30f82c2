"""The small core tables, each one file rebuilt whole: ``core_agencies``, ``core_procedures`` (every dated version
of the catalogue) and the records beside the dossiers (``core_payments``, ``core_feedback``, ``core_ratings``,
``core_e_certifications``: latest version per record, with its date and, for feedback and e-certifications, the
owner agency on that date)."""

from __future__ import annotations

from pathlib import Path

from transforms.core.agencies import add_wd_sql, owner_on_date_sql
from transforms.core.tables import LATER_INGEST, latest_version_sql, write_table

# the records beside the dossiers (rebuilt whole when a new batch of theirs arrives), in the order they are built:
# core_dossiers reads payments and linked feedback from them
SMALL = ("payments", "feedback", "ratings", "e_certifications")
SMALL_KEY = {"payments": "payment_id", "feedback": "feedback_id", "ratings": "rating_id",
             "e_certifications": "transaction_id"}
# the date each small record is placed in time by (its periods)
SMALL_DATE = {"payments": "paid_date", "feedback": "received_date", "ratings": "rated_date",
              "e_certifications": "certified_date"}
# the small records that link to a dossier (a new version of theirs changes the dossier's core row)
LINKED_TO_DOSSIER = ("payments", "feedback")


def write_core_agencies(con, warehouse: Path) -> int:
    """``core_agencies`` from the temp table ``agencies`` (``load_agencies``)."""
    return write_table(con, warehouse, "core_agencies", """
        SELECT agency_code, agency_name, level, procedure_level, parent_code, valid_from, valid_to,
               successor_code, legal_basis FROM agencies""", "agency_code")


def load_procedure_versions(con, staged_procedures: str) -> None:
    """Temp table ``procs``: every dated catalogue version with the dates it is in force (exact duplicates of a
    version collapse to the later ingest)."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE procs AS
        WITH version AS (
            SELECT * FROM {staged_procedures} WHERE procedure_code IS NOT NULL AND updated_at IS NOT NULL
            QUALIFY row_number() OVER (PARTITION BY procedure_code, updated_at ORDER BY {LATER_INGEST}) = 1
        )
        SELECT procedure_code, procedure_name, field_code, field_name, levels, online_level, is_online_eligible,
               is_full_online_eligible, has_sample_dossier, is_paper_result, legal_days, publication_decision_no,
               publication_decision_date, publication_state, has_simplification_plan, updated_at,
               CAST(updated_at AS DATE) AS version_date,
               CAST(row_number() OVER by_procedure AS BIGINT) AS version_no,
               CASE WHEN row_number() OVER by_procedure > 1 THEN CAST(updated_at AS DATE) END AS in_force_from,
               lead(CAST(updated_at AS DATE)) OVER by_procedure AS in_force_to,
               lead(updated_at) OVER by_procedure IS NULL AS is_latest_version,
               _batch_id, _source_file, _source_row
        FROM version
        WINDOW by_procedure AS (PARTITION BY procedure_code ORDER BY updated_at)
    """)


def write_core_procedures(con, warehouse: Path, staged_procedures: str) -> int:
    load_procedure_versions(con, staged_procedures)
    return write_table(con, warehouse, "core_procedures", "SELECT * FROM procs", "procedure_code, version_no")


def _payments_sql(staged: dict[str, str]) -> str:
    return f"""
        SELECT payment_id, dossier_id, amount_vnd, paid_at, CAST(paid_at AS DATE) AS paid_date, payment_channel,
               status, status = 'success' AS is_success, updated_at, _batch_id, _source_file, _source_row
        FROM ({latest_version_sql(staged['payments'], 'payment_id')})
    """


def _feedback_sql(staged: dict[str, str]) -> str:
    """Feedback with its answer deadline (15 working days after it was received) and its owner on that day."""
    latest = f"({latest_version_sql(staged['feedback'], 'feedback_id')})"
    deadline_joins, deadline = add_wd_sql("feedback.received_date", "15", "dl")
    owner_pairs = f"SELECT DISTINCT agency_code, CAST(received_at AS DATE) AS day FROM {latest}"
    return f"""
        WITH feedback AS (SELECT *, CAST(received_at AS DATE) AS received_date FROM {latest}),
        owner AS ({owner_on_date_sql(owner_pairs)})
        SELECT feedback.feedback_id, feedback.agency_code, owner.owner_code AS owner_agency_code,
               feedback.category, feedback.channel, feedback.sent_at, feedback.received_at, feedback.received_date,
               feedback.answered_at, CAST(feedback.answered_at AS DATE) AS answered_date,
               feedback.published_at, feedback.status,
               coalesce(feedback.likes, 0) AS likes, coalesce(feedback.dislikes, 0) AS dislikes,
               coalesce(feedback.is_re_complaint, false) AS is_re_complaint,
               nullif(feedback.dossier_id, '') AS dossier_id,
               {deadline} AS deadline_date, feedback.updated_at,
               feedback._batch_id, feedback._source_file, feedback._source_row
        FROM feedback {deadline_joins}
        LEFT JOIN owner ON owner.agency_code = feedback.agency_code AND owner.day = feedback.received_date
    """


def _ratings_sql(staged: dict[str, str]) -> str:
    """Ratings: the latest ``rated_at`` wins (settled detail 17)."""
    return f"""
        SELECT rating_id, dossier_id, rating, rating = 1 AS is_dissatisfied, rated_at,
               CAST(rated_at AS DATE) AS rated_date, _batch_id, _source_file, _source_row
        FROM ({latest_version_sql(staged['ratings'], 'rating_id', 'rated_at DESC NULLS LAST')})
    """


def _e_certifications_sql(staged: dict[str, str]) -> str:
    latest = f"({latest_version_sql(staged['e_certifications'], 'transaction_id')})"
    owner_pairs = f"SELECT DISTINCT agency_code, CAST(certified_at AS DATE) AS day FROM {latest}"
    return f"""
        WITH certification AS (SELECT *, CAST(certified_at AS DATE) AS certified_date FROM {latest}),
        owner AS ({owner_on_date_sql(owner_pairs)})
        SELECT certification.transaction_id, certification.agency_code, owner.owner_code AS owner_agency_code,
               certification.certified_at, certification.certified_date, certification.copies,
               certification.updated_at, certification._batch_id, certification._source_file,
               certification._source_row
        FROM certification
        LEFT JOIN owner ON owner.agency_code = certification.agency_code AND owner.day = certification.certified_date
    """


SMALL_SQL = {"payments": _payments_sql, "feedback": _feedback_sql, "ratings": _ratings_sql,
             "e_certifications": _e_certifications_sql}


def write_small_table(con, warehouse: Path, entity: str, staged: dict[str, str]) -> int:
    """Rebuild ``core_<entity>`` of a small table from its staged versions (``staged``: entity -> relation)."""
    return write_table(con, warehouse, f"core_{entity}", SMALL_SQL[entity](staged), SMALL_KEY[entity])
