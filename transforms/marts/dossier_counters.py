"""The dossier counters per (owner, period, field) without one row per (dossier, period) pair per dossier; equal,
pair by pair, to the plain count of ``dossier_pairs`` (tests/unit/marts/test_dossier_agg_equivalence.py).

1. Every date a pair compares only with E or with period_start - 1 (received, end, flat supplement dates,
   payment, linked feedback) is replaced by its ceiling among those cut dates (``sql/cut_dates.sql``): x <= c and
   x > c give the same answer for x and its ceiling for every cut c, so each pair's flags are unchanged; the due
   date, compared only as due >= E, by its floor. Comparisons between two dates of one dossier (end vs due,
   pausing request vs due) are taken on the real dates first. So a counter's condition in the registry may compare
   a dossier's date with ``evaluation_date`` but not with another of its dates.
2. Dossiers equal on every (ceiled) input collapse into one row of ``dossier_groups`` with a weight ``dossiers``;
   only those rows are expanded into (row, period) pairs.
3. The counters split by the periods they need: a counter of dossiers received in P (condition
   ``received_in_period AND ...``) only the period holding the received date, one of dossiers resolved in P only
   the one holding the end date; the population and timeliness counters every period a dossier is alive in; a
   counter whose condition is ``NOT <another's>`` is the population less that one (carried over, in progress).
"""

from __future__ import annotations

from datetime import date

from transforms.kpis import registry as kpis
from transforms.marts.dossier_pairs import (RATED_DISSATISFIED, RESOLVED_BY_E, SUPPLEMENTS_BY_E,
                                            alive_pairs_ctes, dossier_rows_sql, load_keys_and_ratings, paused_at_e)
from transforms.marts.queries import query
from transforms.marts.scope import bases_sql, month_index

DOSSIER_COUNTERS = [c.column for c in kpis.counters_of("dossier")]
_CONDITION = {c.column: c.condition for c in kpis.counters_of("dossier")}
# the inputs the population and timeliness counters read, and those the received / resolved ones read
POPULATION_KEY = ("owner_code, field_key, received_month_calendar, received_month_cutoff, last_month_calendar, "
                  "last_month_cutoff, received_date, end_date, due_date, end_vs_due, supplement_requested, "
                  "supplement_received, requested_by_due, supplements_listed, flat_supplement_count, supplements, "
                  "dissatisfied_spans, feedback_date")
EVENT_KEY = ("owner_code, field_key, received_month_calendar, received_month_cutoff, end_month_calendar, "
             "end_month_cutoff, received_date, end_date, paid_date, online, status_9_or_10, digitized, reused_data, "
             "e_result, paper_result, has_fee")
GROUP_COLUMNS = ", ".join(dict.fromkeys((POPULATION_KEY + ", " + EVENT_KEY).split(", ")))
# dates replaced by their ceiling among the cut dates (the due date by its floor)
CEILED = ("received_date", "end_date", "supplement_requested", "supplement_received", "paid_date", "feedback_date")


def counted_on(column: str) -> str:
    """Which pairs a dossier counter is counted on: received, resolved, population, or complement (the population
    less the counter its condition negates)."""
    cond = _CONDITION[column]
    for step in ("received", "resolved"):
        if cond == f"{step}_in_period" or cond.startswith(f"{step}_in_period AND "):
            return step
    if cond.startswith("NOT ") and cond[4:] in _CONDITION.values():
        return "complement"
    if "received_in_period" in cond or "resolved_in_period" in cond:
        raise ValueError(f"dossier counter {column}: condition {cond!r} must start with received_in_period or "
                         f"resolved_in_period (or be NOT another counter's condition)")
    return "population"


def _on(step: str) -> dict[str, str]:
    return {c: _CONDITION[c] for c in DOSSIER_COUNTERS if counted_on(c) == step}


def count_dossiers(con, dossiers: str, ratings: str, as_of: date) -> None:
    """``dossier_counts`` (owner_code, period_id, field_key, one column per dossier counter) of the selected
    periods; ``field_keys`` names the fields."""
    load_keys_and_ratings(con, dossiers, ratings)
    bases = bases_sql(con)
    con.execute(query("cut_dates"))
    _group_dossiers(con, dossier_rows_sql(dossiers, as_of))
    _count_population(con, bases)
    _count_received_and_resolved(con, bases)
    _combine(con)


def _ceiled(column: str, floor: bool = False) -> tuple[str, str]:
    """(join, expression): ``d.<column>`` replaced by its ceiling among the cut dates, or with ``floor`` its floor."""
    x, cut = f"d.{column}", f"cut_{column}"
    bound = "(SELECT {} FROM cut_bounds)"
    join = f" LEFT JOIN day_cut {cut} ON {cut}.day = {x}"
    if floor:
        return join, (f"CASE WHEN {x} IS NULL THEN NULL WHEN {x} < {bound.format('first_cut')} THEN DATE '0001-01-01' "
                      f"WHEN {x} >= {bound.format('last_cut')} THEN {bound.format('last_cut')} ELSE {cut}.floor END")
    return join, (f"CASE WHEN {x} IS NULL THEN NULL WHEN {x} <= {bound.format('first_cut')} THEN "
                  f"{bound.format('first_cut')} WHEN {x} > {bound.format('last_cut')} THEN DATE '9999-12-31' "
                  f"ELSE {cut}.ceiling END")


def _group_dossiers(con, rows: str) -> None:
    """``dossier_groups``: dossiers equal on the population inputs (population_key) or on the received/resolved
    inputs, with their number ``dossiers``; both collapses in one pass."""
    ceiled = [_ceiled(c) for c in CEILED] + [_ceiled("due_date", floor=True)]
    dates = ", ".join(f"{expr} AS {name}" for (_, expr), name in zip(ceiled, [*CEILED, "due_date"], strict=True))
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE dossier_groups AS
        SELECT {GROUP_COLUMNS}, GROUPING(supplements) = 0 AS population_key, count(*) AS dossiers FROM (
        SELECT d.owner_code, d.field_key, d.received_month_calendar, d.received_month_cutoff,
               d.last_month_calendar, d.last_month_cutoff,
               CASE WHEN d.end_date IS NULL THEN NULL ELSE {month_index("d.end_date", "calendar")} END
                   AS end_month_calendar,
               CASE WHEN d.end_date IS NULL THEN NULL ELSE {month_index("d.end_date", "cutoff_15")} END
                   AS end_month_cutoff,
               {dates},
               -- compared on the real dates: the class if resolved, and whether a flat export's request beat due
               CASE WHEN d.due_date IS NULL OR d.end_date = d.due_date THEN 'on_time'
                    WHEN d.end_date < d.due_date THEN 'early' ELSE 'late' END AS end_vs_due,
               d.due_date IS NULL OR d.supplement_requested <= d.due_date AS requested_by_due,
               d.supplements_listed, d.flat_supplement_count,
               CASE WHEN d.supplements IS NOT NULL THEN
                    list_transform(d.supplements, lambda s: {{'requested': s.requested, 'received': s.received,
                                                            'by_due': d.due_date IS NULL OR s.requested <= d.due_date}})
               END AS supplements,
               d.dissatisfied_spans, d.online, d.status_9_or_10, d.digitized, d.reused_data, d.e_result,
               d.paper_result, d.has_fee
        FROM ({rows}) d {" ".join(join for join, _ in ceiled)})
        GROUP BY GROUPING SETS (({POPULATION_KEY}), ({EVENT_KEY}))
    """)


def _count_population(con, bases: str) -> None:
    """``dossier_population_counts``: the population and timeliness counters, on every period a group is alive in."""
    counters = _on("population")
    flags = ", ".join(f"({cond}) AS is_{c}" for c, cond in counters.items())
    sums = ", ".join(f"sum(dossiers) FILTER (is_{c}) AS {c}" for c in counters)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE dossier_population_counts AS
        WITH grouped AS (
            SELECT {POPULATION_KEY}, dossiers FROM dossier_groups WHERE population_key
        ), {alive_pairs_ctes("grouped", bases)}, at_e AS (
            SELECT pair.*,
                   {RESOLVED_BY_E} AS resolved_in_period,
                   {SUPPLEMENTS_BY_E} AS supplement_requests_by_e,
                   {paused_at_e("by_due", "pair.requested_by_due")} AS paused_within_due,
                   {RATED_DISSATISFIED} AS rated_dissatisfied
            FROM pairs pair
        ), classified AS (
            SELECT owner_code, period_id, field_key, dossiers, evaluation_date, feedback_date, rated_dissatisfied,
                   CASE WHEN supplement_requests_by_e >= 2 THEN
                             CASE WHEN resolved_in_period THEN 'late' ELSE 'overdue' END
                        WHEN resolved_in_period THEN end_vs_due
                        WHEN paused_within_due IS NOT NULL THEN
                             CASE WHEN paused_within_due THEN 'within_time' ELSE 'overdue' END
                        WHEN due_date IS NULL OR due_date >= evaluation_date THEN 'within_time'
                        ELSE 'overdue' END AS timeliness
            FROM at_e
        ), flagged AS (
            SELECT owner_code, period_id, field_key, {flags}, sum(dossiers) AS dossiers FROM classified GROUP BY ALL
        )
        SELECT owner_code, period_id, field_key, {sums} FROM flagged GROUP BY ALL
    """)


def _count_received_and_resolved(con, bases: str) -> None:
    """``dossier_event_counts``: counters of dossiers received in P on the period holding the received date, and of
    dossiers resolved in P on the one holding the end date."""
    def sums(step: str) -> str:
        return ", ".join(f"sum(dossiers) FILTER ({cond}) AS {c}" for c, cond in _on(step).items())

    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE dossier_event_counts AS
        WITH grouped AS (
            SELECT {EVENT_KEY}, dossiers FROM dossier_groups WHERE NOT population_key
        ), by_basis AS (
            SELECT g.*, b.basis, b.months,
                   CASE WHEN b.cut_off THEN g.received_month_cutoff ELSE g.received_month_calendar END // b.months
                       AS received_index,
                   CASE WHEN b.cut_off THEN g.end_month_cutoff ELSE g.end_month_calendar END // b.months AS end_index
            FROM grouped g CROSS JOIN (VALUES {bases}) b(basis, months, cut_off, first_index)
        ), received AS (
            SELECT x.*, p.period_id, p.evaluation_date, true AS received_in_period,
                   x.end_date IS NOT NULL AND x.end_date <= p.evaluation_date AS resolved_in_period
            FROM by_basis x JOIN periods p
              ON p.basis = x.basis AND p.months = x.months AND p.period_index = x.received_index
            WHERE p.selected AND x.received_date <= p.evaluation_date
              AND (x.end_date IS NULL OR x.end_date >= p.period_start)
        ), resolved AS (
            SELECT x.*, p.period_id, p.evaluation_date, true AS resolved_in_period,
                   x.received_date >= p.period_start AS received_in_period
            FROM by_basis x JOIN periods p
              ON p.basis = x.basis AND p.months = x.months AND p.period_index = x.end_index
            WHERE p.selected AND x.end_index >= x.received_index AND x.end_date <= p.evaluation_date
        )
        SELECT owner_code, period_id, field_key, {sums("received")} FROM received GROUP BY ALL
        UNION ALL BY NAME
        SELECT owner_code, period_id, field_key, {sums("resolved")} FROM resolved GROUP BY ALL
    """)


def _combine(con) -> None:
    """``dossier_counts``: both parts summed, zero where a part had no pair, and the complements."""
    population = next(c for c in DOSSIER_COUNTERS if _CONDITION[c] == "true")
    negated = {cond: c for c, cond in _CONDITION.items()}
    summed = ", ".join(f"coalesce(sum({c}), 0)::BIGINT AS {c}" for c in DOSSIER_COUNTERS
                       if counted_on(c) != "complement")
    columns = ", ".join(f"{population} - {negated[_CONDITION[c][4:]]} AS {c}" if counted_on(c) == "complement"
                        else c for c in DOSSIER_COUNTERS)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE dossier_counts AS
        SELECT owner_code, period_id, field_key, {columns} FROM (
            SELECT owner_code, period_id, field_key, {summed}
            FROM (SELECT * FROM dossier_population_counts UNION ALL BY NAME SELECT * FROM dossier_event_counts)
            GROUP BY ALL)
    """)
