"""Dossiers by period, the plain way: one row per dossier (``dossier_rows``) and one classified row per (dossier,
period) pair (``classified_sql``), as ``explain`` lists them and as the reference count (``pairs_reference_agg``)
the fast counters of ``dossier_counters`` must equal (tests/unit/marts/test_dossier_agg_equivalence.py).

A dossier is in the population of period P when it was received by E (P's evaluation date) and had not ended
before P starts. Its timeliness class at E (kpis.md, timeliness): resolved (end date <= E) -> early / on_time /
late against the due date; in progress -> within_time / overdue; two or more supplement requests by E -> late or
overdue; paused for a supplement at E -> judged on the date of the request.
"""

from __future__ import annotations

from datetime import date

from transforms.kpis import registry as kpis
from transforms.marts.queries import query
from transforms.marts.scope import month_index

# per (dossier, period) pair, the condition of every dossier counter (numerators and denominators)
DOSSIER_CONDITIONS = {c.column: c.condition for c in kpis.counters_of("dossier")}
# the columns explain lists besides those every counter reads
LISTING_COLUMNS = ("d.dossier_id, d.procedure_code, d.status, d.channel, d.field_code, d.field_name,")


def load_keys_and_ratings(con, dossiers: str, ratings: str) -> None:
    """``field_keys`` and ``dissatisfied_spans``, read by ``dossier_rows_sql``."""
    con.execute(query("field_keys", dossiers=dossiers))
    con.execute(query("dissatisfied_spans", ratings=ratings))


def dossier_rows_sql(dossiers: str, as_of: date, *, listing: bool = False) -> str:
    """SELECT of one row per dossier alive in a selected period (``sql/dossier_rows.sql``); with ``listing``, also
    the columns explain lists (ids, procedure, status, channel, field)."""
    return query("dossier_rows", dossiers=dossiers, as_of=as_of, listing_columns=LISTING_COLUMNS if listing else "",
                 last_month_calendar=month_index("last_day", "calendar"),
                 last_month_cutoff=month_index("last_day", "cutoff_15"),
                 received_month_calendar=month_index("d.received_date", "calendar"),
                 received_month_cutoff=month_index("d.received_date", "cutoff_15"))


def load_dossier_rows(con, dossiers: str, ratings: str, as_of: date) -> None:
    """``dossier_rows``: one row per dossier with the listed columns, read pair by pair by ``classified_sql``."""
    load_keys_and_ratings(con, dossiers, ratings)
    con.execute(f"CREATE OR REPLACE TEMP TABLE dossier_rows AS {dossier_rows_sql(dossiers, as_of, listing=True)}")


def alive_pairs_ctes(rows: str, bases: str) -> str:
    """CTEs ``expanded`` and ``pairs``: each row of ``rows`` with every selected period it is alive in (received by
    E, not ended before the period starts), with ``period_id``, ``period_start`` and ``evaluation_date``."""
    return f"""expanded AS (
            SELECT x.*, b.basis, b.months,
                   unnest(range(greatest(CASE WHEN b.cut_off THEN x.received_month_cutoff
                                              ELSE x.received_month_calendar END // b.months, b.first_index),
                                CASE WHEN b.cut_off THEN x.last_month_cutoff
                                     ELSE x.last_month_calendar END // b.months + 1)) AS period_index
            FROM {rows} x CROSS JOIN (VALUES {bases}) b(basis, months, cut_off, first_index)
        ), pairs AS (
            SELECT x.*, p.period_id, p.period_start, p.evaluation_date
            FROM expanded x JOIN periods p
              ON p.basis = x.basis AND p.months = x.months AND p.period_index = x.period_index
            WHERE p.selected AND x.received_date <= p.evaluation_date
              AND (x.end_date IS NULL OR x.end_date >= p.period_start)
        )"""


# supplement requests made by E: the JSON list's requests dated <= E; a flat export's count, less one when its
# (latest) request is dated after E
SUPPLEMENTS_BY_E = """CASE WHEN pair.supplements_listed THEN
                            CASE WHEN pair.supplements IS NULL THEN 0
                                 ELSE len(list_filter(pair.supplements,
                                                      lambda s: s.requested <= pair.evaluation_date)) END
                        ELSE pair.flat_supplement_count
                             - CASE WHEN pair.supplement_requested > pair.evaluation_date THEN 1 ELSE 0 END END"""
# the dossier's rating at E is 1 (Không hài lòng)
RATED_DISSATISFIED = """CASE WHEN pair.dissatisfied_spans IS NULL THEN false
                        ELSE len(list_filter(pair.dissatisfied_spans,
                                             lambda s: s.rated <= pair.evaluation_date
                                                       AND (s.until IS NULL OR pair.evaluation_date < s.until))) > 0
                        END"""
RESOLVED_BY_E = "pair.end_date IS NOT NULL AND pair.end_date <= pair.evaluation_date"


def paused_at_e(item: str, flat: str) -> str:
    """Paused for a supplement at E (latest request by E not yet supplied by E): that list item's ``item`` field,
    or ``flat`` for a flat export; null when not paused."""
    return f"""CASE WHEN pair.supplements_listed THEN
                            CASE WHEN pair.supplements IS NOT NULL THEN
                                 list_filter(list_filter(pair.supplements,
                                                         lambda s: s.requested <= pair.evaluation_date)[-1:],
                                             lambda s: s.received IS NULL
                                                       OR s.received > pair.evaluation_date)[1].{item} END
                        WHEN pair.supplement_requested <= pair.evaluation_date
                             AND (pair.supplement_received IS NULL
                                  OR pair.supplement_received > pair.evaluation_date) THEN {flat} END"""


def classified_sql(bases: str) -> str:
    """(dossier, period) pairs of the selected periods from ``dossier_rows``, each with its state at E:
    resolved_in_period, received_in_period, timeliness (early, on_time, late, within_time, overdue),
    rated_dissatisfied, supplement_requests_by_e, paused_since."""
    return f"""
        WITH {alive_pairs_ctes("dossier_rows", bases)}, at_e AS (
            SELECT pair.*,
                   {RESOLVED_BY_E} AS resolved_in_period,
                   {SUPPLEMENTS_BY_E} AS supplement_requests_by_e,
                   {paused_at_e("requested", "pair.supplement_requested")} AS paused_since,
                   {RATED_DISSATISFIED} AS rated_dissatisfied
            FROM pairs pair
        )
        SELECT *,
               CASE WHEN supplement_requests_by_e >= 2 THEN
                         CASE WHEN resolved_in_period THEN 'late' ELSE 'overdue' END
                    WHEN resolved_in_period THEN
                         CASE WHEN due_date IS NULL OR end_date = due_date THEN 'on_time'
                              WHEN end_date < due_date THEN 'early' ELSE 'late' END
                    WHEN paused_since IS NOT NULL THEN
                         CASE WHEN due_date IS NULL OR paused_since <= due_date THEN 'within_time' ELSE 'overdue' END
                    WHEN due_date IS NULL OR due_date >= evaluation_date THEN 'within_time'
                    ELSE 'overdue' END AS timeliness,
               received_date >= period_start AS received_in_period
        FROM at_e"""


def pairs_reference_agg(con, bases: str, table: str = "dossier_counts_reference") -> None:
    """The dossier counters the plain way, one classified row per (dossier, period) pair, from ``dossier_rows``:
    the reference the fast ``dossier_counts`` must equal (tests only)."""
    counts = ", ".join(f"count(*) FILTER ({cond}) AS {name}" for name, cond in DOSSIER_CONDITIONS.items())
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {table} AS
        SELECT owner_code, period_id, field_key, {counts}
        FROM ({classified_sql(bases)}) c GROUP BY ALL
    """)
