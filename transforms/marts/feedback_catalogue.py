"""Feedback, e-certification and catalogue counters (the counters of records other than dossiers), each counted
by its condition in the KPI registry.

Temp tables: ``feedback_counts`` and ``e_certification_counts`` by owner (owner_code, period_id), to be moved to
the agency each owner counts for; ``procedure_counts`` by agency (agency_code, period_id); ``feedback_rows`` the
(item, period) pairs explain lists.
"""

from __future__ import annotations

from transforms.kpis import registry as kpis
from transforms.marts.queries import query


def feedback_pairs_sql(feedback: str, *, listing: bool = False) -> str:
    """SELECT of the (feedback item, period) pairs with their state at E; with ``listing`` also the item's ids."""
    return query("feedback_pairs", feedback=feedback,
                 listing_columns="f.feedback_id, f.dossier_id," if listing else "")


def count_feedback(con, feedback: str) -> None:
    """``feedback_counts``: every feedback counter by owner and period."""
    counts = ", ".join(f"count(*) FILTER ({c.condition}) AS {c.column}" for c in kpis.counters_of("feedback"))
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE feedback_counts AS
        SELECT owner_code, period_id, {counts} FROM ({feedback_pairs_sql(feedback)}) GROUP BY ALL
    """)


def load_feedback_rows(con, feedback: str) -> None:
    """``feedback_rows``: the (item, period) pairs, as explain lists them."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE feedback_rows AS {feedback_pairs_sql(feedback, listing=True)}")


def count_e_certifications(con, e_certifications: str) -> None:
    """``e_certification_counts``: copies certified by owner and calendar period."""
    (copies,) = kpis.counters_of("e_certification")
    con.execute(query("e_certification_counts", e_certifications=e_certifications, copies=copies.column))


def count_procedures(con, procedures: str) -> None:
    """``procedure_counts``: every procedure counter by agency and selected calendar period."""
    counts = ", ".join(f"count(*) FILTER ({c.condition}) AS {c.column}" for c in kpis.counters_of("procedure"))
    con.execute(query("procedure_counts", procedures=procedures, counts=counts))
