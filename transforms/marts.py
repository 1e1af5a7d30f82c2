"""Core -> marts: the KPIs of docs/kpis.md, Decision 766 indicators and Circular 01/2020 form 06.

How the per-period evaluation stays cheap: a dossier belongs to the population of period P only when
``received_date <= E`` and it had not ended before ``period_start``, i.e. P overlaps the dossier's live range
[received_date, end_date (or as_of)]. So for every basis (calendar, cutoff_15) and type (month, quarter, year) we
compute the index of the period containing the received date and of the one containing the last live day and
unnest only that index range (typically 1-2 periods per type), join the small period table on the index, classify
each (dossier, period) pair at E in SQL and aggregate straight away to (owner, period, field) counters. Before the
unnest, dates are ceiled to the few dates any E or period start can tell apart and equal dossiers are collapsed
with a weight, and the received/resolved counters take one period each (see ``_dossier_agg``; equal, pair by
pair, to ``classified_sql`` which ``explain`` lists). Rule 9's
second step (owner not valid in P -> successor), roll-ups along ``parent_code`` and the unpivot into KPI rows all
happen on those small aggregates.

Documented choices where kpis.md leaves room (each pinned by a unit test in tests/unit/marts/):
- Unknown ``has_digitized_components`` / ``has_e_result`` / ``reused_digitized_data`` count as "no"; an unknown
  paper-result flag (or a procedure missing from the catalogue) counts as paper (settled detail 12).
- Publication state unknown counts as "not Dừng công khai" (in the denominator) and not as "Đang công khai".
- Targets (settled detail 18): for agency A and year Y, the row (Y, A); else the generic row of the latest year
  <= Y; else the generic row of the earliest year in the file.
- ``changed_periods`` returns every period label (both bases) that ends on or after the earliest changed date
  and has started by as_of: a changed record can move every later period (settled detail 3) and next year's
  e-certification target.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from transforms.kpis import registry as kpis
from transforms.calendar import PERIOD_BASES, periods_between
from transforms.core import duck, make_agency_chain
from warehouse.store import (GenerationWriter, crash_point, current_generation, generation_manifest,
                             published_manifest, table_dir, table_exists, table_glob)

MART_KPI = "mart_kpi__agency_period"
MART_766 = "mart_766__agency_period"
MART_F06 = "mart_tt01_form06__agency_period"
MARTS = (MART_KPI, MART_766, MART_F06)
DEFAULT_TARGETS = Path(__file__).resolve().parent.parent / "tthc" / "config" / "targets.csv"

# the KPI, indicator and form 06 formulas and the counters they use: transforms/kpis/registry.py
# kpi_code -> (numerator, denominator) over the rolled-up counters
KPIS: list[tuple[str, str, str | None]] = [
    (k.code, kpis.sql(k.numerator), k.denominator and kpis.sql(k.denominator)) for k in kpis.KPIS]
# indicator -> (numerator, denominator, score expression over r (ratio) / den, max_score)
INDICATORS: list[tuple[str, str, str, str, str]] = [
    (i.code, kpis.sql(i.numerator), kpis.sql(i.denominator), i.score,
     "NULL" if i.max_score is None else str(i.max_score)) for i in kpis.INDICATORS]
DOSSIER_COUNTERS = [c.column for c in kpis.counters_of("dossier")]
FEEDBACK_COUNTERS = [c.column for c in kpis.counters_of("feedback")]
PROC_COUNTERS = [c.column for c in kpis.counters_of("procedure")]
# per (dossier, period) condition of every dossier counter (numerators and denominators), over classified_sql's rows
DOSSIER_FLAGS = {c.column: c.condition for c in kpis.counters_of("dossier")}
FEEDBACK_FLAGS = {c.column: c.condition for c in kpis.counters_of("feedback")}
ALL_COUNTERS = (DOSSIER_COUNTERS + FEEDBACK_COUNTERS + PROC_COUNTERS
                + [c.column for c in kpis.counters_of("e_certification")])
F06_COLUMNS = [(f.code, kpis.sql(f.formula)) for f in kpis.FORM06]
KPI_KEYS = ["agency_code", "period_type", "period", "kpi_code"]
I766_KEYS = ["agency_code", "period_type", "period", "indicator_code"]
F06_KEYS = ["agency_code", "period_basis", "period_type", "period", "field_code", "field_name"]


class FormIdentityError(ValueError):
    """Form 06 rows break c03=c04+c05+c06=c07+c11, c07=c08+c09+c10 or c11=c12+c13."""


# ---------------------------------------------------------------------------------------------------------------
def changed_periods(dates: Iterable[date], as_of: date) -> set[str]:
    """Period labels (both bases, every type) that new data dated ``dates`` can change as of ``as_of``."""
    ds = [d for d in dates if d is not None]
    if not ds:
        return set()
    first = min(ds)
    if first > as_of:
        return set()
    return {p.label for p in periods_between(first, as_of) if p.end >= first and p.start <= as_of}


def _core(wh: Path, table: str) -> str:
    if not table_exists(wh, table):
        raise FileNotFoundError(f"{table} is missing under {wh}: run build_core first")
    return f"read_parquet('{table_glob(wh, table)}')"


def _load_periods(con, as_of: date, selected: set[str] | None) -> None:
    first = con.execute("SELECT min(coalesce(valid_from, DATE '2000-01-01')) FROM agencies").fetchone()[0]
    if first is None or first > as_of:
        plist = []
    else:
        plist = periods_between(first, as_of)
    rows = [(i, p.basis, p.period_type, {"month": 1, "quarter": 3, "year": 12}[p.period_type], p.index, p.label,
             p.start, p.end, p.eval_date(as_of), selected is None or p.label in selected)
            for i, p in enumerate(plist)]
    con.execute("""CREATE OR REPLACE TEMP TABLE periods (period_id INTEGER, basis VARCHAR, period_type VARCHAR,
                   k INTEGER, pidx INTEGER, period VARCHAR, period_start DATE, period_end DATE, e DATE,
                   selected BOOLEAN)""")
    if rows:
        con.executemany("INSERT INTO periods VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def _month_idx(expr: str, basis: str) -> str:
    if basis == "calendar":
        return f"(year({expr}) * 12 + month({expr}) - 1)"
    return f"(year({expr} - 14) * 12 + month({expr} - 14))"  # cut-off: the month the period ends in


def _sum(cols: list[str]) -> str:
    return ", ".join(f"sum({c})::BIGINT AS {c}" for c in cols)


def build_marts(warehouse: Path, as_of: date, *, targets_csv: Path | None = None,
                periods: set[str] | None = None, con=None) -> dict[str, int]:
    """Build (or, with ``periods``, rebuild only those period labels of) the three marts; rows per mart."""
    wh = Path(warehouse)
    own = con is None
    con = con or duck(wh)
    try:
        tables = compute_marts(con, wh, as_of, targets_csv=targets_csv, periods=periods)
        return publish_marts(wh, tables, periods, built_from=built_from(wh, as_of, targets_csv))
    finally:
        if own:
            con.close()


def compute_marts(con, wh: Path, as_of: date, *, targets_csv: Path | None = None,
                  periods: set[str] | None = None) -> dict[str, pa.Table]:
    """The new rows of the three marts (only the selected periods when ``periods`` is given), checked."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE agencies AS SELECT * FROM {_core(wh, 'core_agencies')}")
    make_agency_chain(con)
    _load_periods(con, as_of, periods)
    _load_targets(con, targets_csv or DEFAULT_TARGETS)
    D, F = _core(wh, "core_dossiers"), _core(wh, "core_feedback")
    R, E, P = _core(wh, "core_ratings"), _core(wh, "core_e_certifications"), _core(wh, "core_procedures")

    # --- rule 9 second step: owner not valid on any day of P -> successor (chain), else no agency ----------
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE owner_p AS
        WITH s AS (SELECT DISTINCT owner_agency_code AS code FROM {D}
                   UNION SELECT DISTINCT owner_agency_code FROM {F}
                   UNION SELECT DISTINCT owner_agency_code FROM {E})
        SELECT s.code, p.period_id,
               arg_min(c.member, c.pos) FILTER (WHERE coalesce(c.valid_from, DATE '0001-01-01') <= p.period_end
                     AND (c.valid_to IS NULL OR c.valid_to >= p.period_start)) AS agency_code
        FROM s JOIN agency_chain_v c ON c.agency_code = s.code CROSS JOIN periods p
        GROUP BY s.code, p.period_id
    """)
    _rollup(con)

    _dossier_counters(con, D, R, as_of)
    _feedback_counters(con, F)
    _ecert_and_procedure_counters(con, E, P)

    # --- own counters per final owner, then roll-ups ----------------------------------------------------------
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE own_f AS
        SELECT o.agency_code, x.period_id, k.field_code, k.field_name, {_sum(DOSSIER_COUNTERS)}
        FROM d_agg x JOIN owner_p o ON o.code = x.own AND o.period_id = x.period_id
        JOIN field_keys k ON k.fk = x.fk
        WHERE o.agency_code IS NOT NULL
        GROUP BY ALL
    """)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE roll_f AS
        SELECT r.ancestor AS agency_code, x.period_id, x.field_code, x.field_name, {_sum(DOSSIER_COUNTERS)}
        FROM own_f x JOIN rollup r ON r.descendant = x.agency_code AND r.period_id = x.period_id
        GROUP BY ALL
    """)
    other = FEEDBACK_COUNTERS + ["ecert_copies"]
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE own_o AS
        SELECT o.agency_code, x.period_id, {_sum(other)}
        FROM (SELECT * FROM fb_agg UNION ALL BY NAME SELECT * FROM ec_agg) x
        JOIN owner_p o ON o.code = x.own AND o.period_id = x.period_id
        WHERE o.agency_code IS NOT NULL
        GROUP BY ALL
    """)
    zero = ", ".join(f"coalesce(sum(x.{c}), 0)::BIGINT AS {c}" for c in ALL_COUNTERS)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE wide AS
        WITH own_all AS (
            SELECT agency_code, period_id, {_sum(DOSSIER_COUNTERS)} FROM own_f GROUP BY ALL
            UNION ALL BY NAME SELECT * FROM own_o
            UNION ALL BY NAME SELECT * FROM pr_own
        )
        SELECT r.ancestor AS agency_code, r.period_id, {zero}
        FROM rollup r LEFT JOIN own_all x ON x.agency_code = r.descendant AND x.period_id = r.period_id
        GROUP BY ALL
    """)

    kpi = _kpi_table(con)
    i766 = _i766_table(con)
    f06 = _f06_table(con)
    check_form06(f06)
    return {MART_KPI: kpi, MART_766: i766, MART_F06: f06}


def _rollup(con) -> None:
    """Roll-up closure (period, ancestor, descendant): every link valid on some day of P (settled detail 10)."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE rollup AS
        WITH RECURSIVE v AS (
            SELECT p.period_id, a.agency_code, a.parent_code FROM periods p JOIN agencies a
              ON coalesce(a.valid_from, DATE '0001-01-01') <= p.period_end
             AND (a.valid_to IS NULL OR a.valid_to >= p.period_start)
        ), r(period_id, ancestor, descendant) AS (
            SELECT period_id, agency_code, agency_code FROM v
            UNION
            SELECT r.period_id, r.ancestor, v.agency_code FROM r JOIN v
              ON v.period_id = r.period_id AND v.parent_code = r.descendant
        )
        SELECT * FROM r
    """)



def _dossier_counters(con, D: str, R: str, as_of: date, explain: bool = False) -> None:
    # (field_code, field_name) as a small integer key: grouping millions of (dossier, period) rows by an integer
    # is much cheaper than by two strings
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE field_keys AS
        SELECT CAST(row_number() OVER (ORDER BY field_code, field_name) AS INTEGER) AS fk, field_code, field_name
        FROM (SELECT DISTINCT field_code, field_name FROM {D})
    """)
    # dissatisfied-rating intervals: a rating is a dossier's rating from its date until the next rating's date
    # (ordered by date, then timestamp, then rating id: settled details 6 and 17)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE dis_iv AS
        WITH r AS (
            SELECT dossier_id, rating, rated_date,
                   lead(rated_date) OVER (PARTITION BY dossier_id ORDER BY rated_at, rating_id) AS next_date
            FROM {R} WHERE rated_at IS NOT NULL AND dossier_id IS NOT NULL
        )
        SELECT dossier_id, list({{'f': rated_date, 't': next_date}}) AS iv FROM r
        WHERE rating = 1 AND (next_date IS NULL OR next_date > rated_date)
        GROUP BY dossier_id
    """)
    bases = bases_sql(con)
    prep = f"""
        SELECT *, {_month_idx("last_day", "calendar")} AS m1c, {_month_idx("last_day", "cutoff_15")} AS m1x FROM (
        SELECT {"d.dossier_id, d.procedure_code, d.status, d.channel AS channel_code, " if explain else ""}
               d.owner_agency_code AS own, d.received_date AS rd,
               greatest(d.received_date, least(coalesce(d.end_date, DATE '{as_of}'), DATE '{as_of}')) AS last_day,
               d.end_date AS ed, d.due_date AS due, d.channel = 2 AS online, d.status IN (9, 10) AS st910,
               d.has_digitized_components AS dig, d.reused_digitized_data AS reu, d.has_e_result AS eres,
               d.is_paper_result AS paper, coalesce(d.fee_vnd, 0) > 0 AS fee,
               d.first_successful_payment_date AS paid, d.first_linked_feedback_date AS fbd,
               {"d.field_code, d.field_name, " if explain else ""}fk.fk,
               CASE WHEN d.supplement_rule = 'list' THEN
                        CASE WHEN len(d.supplement_requests) > 0 THEN
                             list_sort(list_transform(d.supplement_requests,
                                 lambda s: {{'q': CAST(s.requested_at AS DATE), 'r': CAST(s.received_at AS DATE)}}))
                        END
               END AS sreq,
               d.supplement_rule = 'list' AS is_list,
               CASE WHEN d.supplement_rule = 'list' THEN 0 ELSE d.supplement_count END AS scount,
               CAST(d.supplement_requested_at AS DATE) AS sq, CAST(d.supplement_received_at AS DATE) AS sr,
               i.iv,
               {_month_idx("d.received_date", "calendar")} AS m0c, {_month_idx("d.received_date", "cutoff_15")} AS m0x
        FROM {D} d LEFT JOIN dis_iv i ON i.dossier_id = d.dossier_id
        JOIN field_keys fk ON fk.field_code IS NOT DISTINCT FROM d.field_code
                          AND fk.field_name IS NOT DISTINCT FROM d.field_name
        WHERE d.is_received AND d.received_date <= DATE '{as_of}')
        -- only dossiers alive on some day of a selected period (an incremental build reads a few months)
        WHERE last_day >= (SELECT coalesce(min(period_start), DATE '9999-12-31') FROM periods WHERE selected)
    """
    if explain:  # d_prep: one row per dossier, read pair by pair by classified_sql
        con.execute(f"CREATE OR REPLACE TEMP TABLE d_prep AS {prep}")
        return
    _dossier_agg(con, prep, bases)


# ---------------------------------------------------------------------------------------------------------------
# The dossier counters without one row per (dossier, period) pair per dossier:
# 1. every date a pair compares with E or with period_start - 1 (received, end, flat supplement dates, payment,
#    linked feedback) is replaced by its ceiling in the set of those cut dates (all E and period_start - 1 of the
#    period table): x <= c and x > c give the same answer for x and its ceiling for every cut c, so each pair's
#    flags are unchanged (the due date, compared as due >= E, by its floor: x >= c iff floor(x) >= c). The comparisons between two dates of the same dossier (end vs due, pausing
#    request vs due) are taken on the real dates first. JSON supplement lists and rating intervals stay as they are.
# 2. dossiers equal on every (ceiled) input collapse into one row with a weight n, and only those rows are
#    expanded into (row, period) pairs.
# 3. the counters split by what they need: received-in-P counters need only the period holding the received date,
#    resolved-in-P counters only the one holding the end date; only the population and timeliness counters (pop,
#    classes, dissatisfied) need every period a dossier is alive in. carried = pop - recv, in_prog = pop - resolved.
# ---------------------------------------------------------------------------------------------------------------
def _ceil_sql(x: str, alias: str, floor: bool = False) -> tuple[str, str]:
    """(join, expression): the date column ``x`` replaced by its ceiling among the cut dates (see above), or with
    ``floor`` by its floor (the due date, only ever compared as due >= E: x >= c iff floor(x) >= c)."""
    if floor:
        return (f" LEFT JOIN qday {alias} ON {alias}.day = {x}",
                f"CASE WHEN {x} IS NULL THEN NULL WHEN {x} < (SELECT c0 FROM qbounds) THEN DATE '0001-01-01' "
                f"WHEN {x} >= (SELECT c1 FROM qbounds) THEN (SELECT c1 FROM qbounds) ELSE {alias}.flo END")
    return (f" LEFT JOIN qday {alias} ON {alias}.day = {x}",
            f"CASE WHEN {x} IS NULL THEN NULL WHEN {x} <= (SELECT c0 FROM qbounds) THEN (SELECT c0 FROM qbounds) "
            f"WHEN {x} > (SELECT c1 FROM qbounds) THEN DATE '9999-12-31' ELSE {alias}.rep END")


DQ_POP = "own, fk, m0c, m0x, m1c, m1x, rd, ed, due, edue, sq, sr, sq_le_due, is_list, scount, sreq, iv, fbd"
DQ_EV = "own, fk, m0c, m0x, mec, mex, rd, ed, paid, online, st910, dig, reu, eres, paper, fee"
DQ_ALL = ", ".join(dict.fromkeys((DQ_POP + ", " + DQ_EV).split(", ")))


# The (dossier, period) pairs and the timeliness pieces both the fast aggregation and explain's per-pair listing
# classify with (kpis.md, timeliness).
def _alive_pairs_ctes(rel: str, bases: str) -> str:
    """CTEs ``u``, ``j``: each row of ``rel`` with every selected period it is alive in (received by E, not ended
    before the period starts): ``period_id``, ``ps`` (period_start) and ``e``."""
    return f"""u AS (
            SELECT x.*, b.basis, b.k,
                   unnest(range(greatest(CASE WHEN b.cut THEN x.m0x ELSE x.m0c END // b.k, b.lo),
                                CASE WHEN b.cut THEN x.m1x ELSE x.m1c END // b.k + 1)) AS pidx
            FROM {rel} x CROSS JOIN (VALUES {bases}) b(basis, k, cut, lo)
        ), j AS (
            SELECT u.*, p.period_id, p.period_start AS ps, p.e
            FROM u JOIN periods p ON p.basis = u.basis AND p.k = u.k AND p.pidx = u.pidx
            WHERE p.selected AND u.rd <= p.e AND (u.ed IS NULL OR u.ed >= p.period_start)
        )"""


# supplement requests made by E: the JSON list's requests dated <= E; a flat export's count, less one when its
# (latest) request is dated after E
NSUP_SQL = """CASE WHEN j.is_list THEN
                            CASE WHEN j.sreq IS NULL THEN 0 ELSE len(list_filter(j.sreq, lambda x: x.q <= j.e)) END
                        ELSE j.scount - CASE WHEN j.sq > j.e THEN 1 ELSE 0 END END"""
# a rating of 1 (dissatisfied) is the dossier's rating at E
RATED_DIS_SQL = """CASE WHEN j.iv IS NULL THEN false
                        ELSE len(list_filter(j.iv, lambda x: x.f <= j.e AND (x.t IS NULL OR j.e < x.t))) > 0 END"""


def _pause_sql(item: str, flat: str) -> str:
    """Paused for a supplement at E (latest request by E not yet supplied by E): the list item's ``item`` field,
    or ``flat`` for a flat export; null when not paused."""
    return f"""CASE WHEN j.is_list THEN
                            CASE WHEN j.sreq IS NOT NULL THEN
                                 list_filter(list_filter(j.sreq, lambda x: x.q <= j.e)[-1:],
                                             lambda x: x.r IS NULL OR x.r > j.e)[1].{item} END
                        WHEN j.sq <= j.e AND (j.sr IS NULL OR j.sr > j.e) THEN {flat} END"""


def _dossier_agg(con, prep: str, bases: str) -> None:
    con.execute("""
        CREATE OR REPLACE TEMP TABLE qcuts AS
        SELECT DISTINCT c FROM (SELECT e AS c FROM periods UNION ALL SELECT period_start - 1 FROM periods)
    """)
    con.execute("CREATE OR REPLACE TEMP TABLE qbounds AS SELECT min(c) AS c0, max(c) AS c1 FROM qcuts")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE qday AS
        WITH d AS (SELECT CAST(unnest(range(CAST(c0 AS TIMESTAMP), CAST(c1 AS TIMESTAMP) + INTERVAL 1 DAY,
                                            INTERVAL 1 DAY)) AS DATE) AS day FROM qbounds WHERE c0 IS NOT NULL)
        SELECT d.day, min(q.c) FILTER (q.c >= d.day) AS rep, max(q.c) FILTER (q.c <= d.day) AS flo
        FROM d CROSS JOIN qcuts q GROUP BY d.day
    """)
    joins, cols = [], {}
    for name, x in [("rd", "d.rd"), ("ed", "d.ed"), ("due", "d.due"), ("sq", "d.sq"), ("sr", "d.sr"),
                    ("paid", "d.paid"), ("fbd", "d.fbd")]:
        j, expr = _ceil_sql(x, f"q_{name}", floor=name == "due")
        joins.append(j)
        cols[name] = expr
    # end vs due on the real dates: 1 early, 2 on time (or no due date), 3 late; flat pausing request vs due
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE dq AS
        -- both collapses in one pass: g = 0 the population key, g = 1 the received/resolved key
        SELECT {DQ_ALL}, CASE WHEN GROUPING(sreq) = 0 THEN 0 ELSE 1 END AS g, count(*) AS n FROM (
        SELECT d.own, d.fk, d.m0c, d.m0x, d.m1c, d.m1x,
               CASE WHEN d.ed IS NULL THEN NULL ELSE {_month_idx("d.ed", "calendar")} END AS mec,
               CASE WHEN d.ed IS NULL THEN NULL ELSE {_month_idx("d.ed", "cutoff_15")} END AS mex,
               {", ".join(f"{expr} AS {name}" for name, expr in cols.items())},
               CASE WHEN d.due IS NULL OR d.ed = d.due THEN 2 WHEN d.ed < d.due THEN 1 ELSE 3 END AS edue,
               d.due IS NULL OR d.sq <= d.due AS sq_le_due,
               d.is_list, d.scount,
               CASE WHEN d.sreq IS NOT NULL THEN
                    list_transform(d.sreq, lambda x: {{'q': x.q, 'r': x.r, 'ok': d.due IS NULL OR x.q <= d.due}})
               END AS sreq,
               d.iv, d.online, d.st910, d.dig, d.reu, d.eres, d.paper, d.fee
        FROM ({prep}) d {" ".join(joins)})
        GROUP BY GROUPING SETS (({DQ_POP}), ({DQ_EV}))
    """)
    # population and timeliness: every period a dossier is alive in
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE d_pop AS
        WITH g AS (
            SELECT {DQ_POP}, n FROM dq WHERE g = 0
        ), {_alive_pairs_ctes("g", bases)}, s AS (
            SELECT j.*,
                   j.ed IS NOT NULL AND j.ed <= j.e AS res,
                   {NSUP_SQL} AS nsup,
                   {_pause_sql("ok", "j.sq_le_due")} AS pause_ok,
                   {RATED_DIS_SQL} OR coalesce(j.fbd <= j.e, false) AS dis_e
            FROM j
        ), c AS (
            SELECT own, period_id, fk, n, dis_e,
                   CASE WHEN nsup >= 2 THEN CASE WHEN res THEN 3 ELSE 5 END
                        WHEN res THEN edue
                        WHEN pause_ok IS NOT NULL THEN CASE WHEN pause_ok THEN 4 ELSE 5 END
                        WHEN due IS NULL OR due >= e THEN 4 ELSE 5 END AS cls
            FROM s
        ), a AS (
            SELECT own, period_id, fk, cls, dis_e, sum(n) AS n FROM c GROUP BY ALL
        )
        SELECT own, period_id, fk, sum(n) AS pop,
               coalesce(sum(n) FILTER (cls = 1), 0) AS c_early, coalesce(sum(n) FILTER (cls = 2), 0) AS c_on_time,
               coalesce(sum(n) FILTER (cls = 3), 0) AS c_late, coalesce(sum(n) FILTER (cls = 4), 0) AS c_within,
               coalesce(sum(n) FILTER (cls = 5), 0) AS c_overdue,
               coalesce(sum(n) FILTER (cls IN (3, 5) OR dis_e), 0) AS dissat
        FROM a GROUP BY ALL
    """)
    # received in P (the period holding the received date) and resolved in P (the one holding the end date)
    rflags = {"recv": "true", "recv_online": "online", "digit": "dig", "reuse": "reu", "fee_den": "fee",
              "fee_num": "fee AND coalesce(paid <= e, false)", "i33": "online AND (NOT paper OR eres)",
              "i42": "dig AND NOT (ed IS NOT NULL AND ed <= e AND st910 AND paper AND NOT eres)"}
    eflags = {"resolved": "true", "eres_den": "st910 AND paper", "eres_num": "st910 AND paper AND eres"}
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE d_ev AS
        WITH g AS (
            SELECT {DQ_EV}, n FROM dq WHERE g = 1
        ), u AS (
            SELECT g.*, b.basis, b.k,
                   CASE WHEN b.cut THEN g.m0x ELSE g.m0c END // b.k AS pr,
                   CASE WHEN b.cut THEN g.mex ELSE g.mec END // b.k AS pe
            FROM g CROSS JOIN (VALUES {bases}) b(basis, k, cut, lo)
        ), r AS (
            SELECT u.own, p.period_id, u.fk,
                   {", ".join(f"sum(u.n) FILTER ({f}) AS {c}" for c, f in rflags.items())}
            FROM u JOIN periods p ON p.basis = u.basis AND p.k = u.k AND p.pidx = u.pr
            WHERE p.selected AND u.rd <= p.e AND (u.ed IS NULL OR u.ed >= p.period_start)
            GROUP BY ALL
        ), s AS (
            SELECT u.own, p.period_id, u.fk,
                   {", ".join(f"sum(u.n) FILTER ({f}) AS {c}" for c, f in eflags.items())}
            FROM u JOIN periods p ON p.basis = u.basis AND p.k = u.k AND p.pidx = u.pe
            WHERE p.selected AND u.pe >= u.pr AND u.ed <= p.e
            GROUP BY ALL
        )
        SELECT * FROM r UNION ALL BY NAME SELECT * FROM s
    """)
    zero = ", ".join(f"coalesce(sum({c}), 0)::BIGINT AS {c}" for c in DOSSIER_COUNTERS
                     if c not in ("carried", "in_prog"))
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE d_agg AS
        SELECT * EXCLUDE (pop), pop, pop - recv AS carried, pop - resolved AS in_prog FROM (
            SELECT own, period_id, fk, {zero}
            FROM (SELECT * FROM d_pop UNION ALL BY NAME SELECT * FROM d_ev)
            GROUP BY ALL)
    """)


def pairs_reference_agg(con, bases: str, table: str = "d_agg_ref") -> None:
    """The dossier counters the plain way, one classified row per (dossier, period) pair (``classified_sql``, as
    ``explain`` lists them), from d_prep: the reference ``_dossier_agg`` must equal (tests only)."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {table} AS
        SELECT own, period_id, fk,
               {", ".join(f"count(*) FILTER ({expr}) AS {name}" for name, expr in DOSSIER_FLAGS.items())}
        FROM ({classified_sql(bases)}) c GROUP BY ALL
    """)


def bases_sql(con) -> str:
    """VALUES rows (basis, k months, cut-off?, first selected period index): the (dossier, period) pairs are
    unnested from the first selected period on, so an incremental build never expands unselected periods."""
    lo = {(b, k): i for b, k, i in con.execute(
        "SELECT basis, k, min(pidx) FROM periods WHERE selected GROUP BY ALL").fetchall()}
    return ", ".join(f"('{b}', {k}, {str(b != 'calendar').lower()}, {lo.get((b, k), 10 ** 6)})"
                     for b in PERIOD_BASES for k in (1, 3, 12))


def classified_sql(bases: str) -> str:
    """(dossier, period) pairs of the selected periods, each with its flags at E: res (resolved in P), rin
    (received in P), cls (1 early, 2 on_time, 3 late, 4 within_time, 5 overdue), rated_dis, ..."""
    return f"""
        WITH {_alive_pairs_ctes("d_prep", bases)}, s AS (
            SELECT j.*,
                   j.ed IS NOT NULL AND j.ed <= j.e AS res,
                   {NSUP_SQL} AS nsup,
                   {_pause_sql("q", "j.sq")} AS pause_d,
                   {RATED_DIS_SQL} AS rated_dis
            FROM j
        ), c AS (
            SELECT s.*,
                   CASE WHEN nsup >= 2 THEN CASE WHEN res THEN 3 ELSE 5 END
                        WHEN res THEN CASE WHEN due IS NULL OR ed = due THEN 2 WHEN ed < due THEN 1 ELSE 3 END
                        WHEN pause_d IS NOT NULL THEN CASE WHEN due IS NULL OR pause_d <= due THEN 4 ELSE 5 END
                        WHEN due IS NULL OR due >= e THEN 4 ELSE 5 END AS cls,
                   rd >= ps AS rin
            FROM s
        )
        SELECT * FROM c"""



def _feedback_counters(con, F: str, explain: bool = False) -> None:
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {"fb_rows" if explain else "fb_agg"} AS
        WITH j AS (
            SELECT {"f.feedback_id, f.dossier_id, " if explain else ""}f.owner_agency_code AS own, p.period_id, p.e, p.period_start AS ps, f.received_date AS rd,
                   f.answered_date AS ad, f.deadline_date AS dl, f.likes, f.dislikes, f.is_re_complaint
            FROM {F} f JOIN periods p ON p.basis = 'calendar' AND p.selected
              AND f.received_date <= p.e AND (f.answered_date IS NULL OR f.answered_date >= p.period_start)
            WHERE f.received_date IS NOT NULL
        ), c AS (
            SELECT *, ad IS NOT NULL AND ad <= e AS answered, rd >= ps AS rin FROM j
        )
        {"SELECT * FROM c" if explain else _fb_agg_select()}
    """)


def _fb_agg_select() -> str:
    flags = ", ".join(f"count(*) FILTER ({expr}) AS {name}" for name, expr in FEEDBACK_FLAGS.items())
    return f"SELECT own, period_id, {flags} FROM c GROUP BY ALL"


def _ecert_and_procedure_counters(con, E: str, P: str) -> None:
    # every calendar period (not only the selected ones): next year's target reads this year's value
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ec_agg AS
        SELECT x.owner_agency_code AS own, p.period_id, sum(x.copies)::BIGINT AS ecert_copies
        FROM {E} x JOIN periods p ON p.basis = 'calendar'
          AND x.certified_date BETWEEN p.period_start AND p.e
        GROUP BY ALL
    """)
    # catalogue in force at E: latest version with date(updated_at) <= E, else the earliest (settled detail 8)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE pr_own AS
        WITH cat AS (
            SELECT p.period_id, p.e, c.* FROM periods p JOIN {P} c
              ON (c.in_force_from IS NULL OR p.e >= c.in_force_from) AND (c.in_force_to IS NULL OR p.e < c.in_force_to)
            WHERE p.basis = 'calendar' AND p.selected
        ), lv AS (
            SELECT period_id, e, unnest(string_split(levels, ';')) AS lvl, * EXCLUDE (period_id, e)
            FROM cat
        ), x AS (
            SELECT *, publication_decision_date <= e AND publication_state IS DISTINCT FROM 'stopped' AS pub_den
            FROM lv
        ), pc AS (
            SELECT period_id, trim(lvl) AS lvl,
                   count(*) FILTER (pub_den) AS pr_pub_den,
                   count(*) FILTER (pub_den AND publication_state = 'published') AS pr_pub_num,
                   count(*) FILTER (pub_den AND has_sample_dossier) AS pr_sample_num,
                   count(*) FILTER (is_online_eligible) AS pr_onl_den,
                   count(*) FILTER (is_online_eligible AND online_level IN (3, 4)) AS pr_onl_num,
                   count(*) FILTER (is_full_online_eligible) AS pr_full_den,
                   count(*) FILTER (is_full_online_eligible AND online_level = 4) AS pr_full_num,
                   count(*) AS pr_simp_den,
                   count(*) FILTER (has_simplification_plan) AS pr_simp_num
            FROM x GROUP BY ALL
        )
        SELECT r.descendant AS agency_code, r.period_id, pc.* EXCLUDE (period_id, lvl)
        FROM rollup r JOIN agencies a ON a.agency_code = r.descendant AND r.ancestor = r.descendant
        JOIN pc ON pc.period_id = r.period_id AND pc.lvl = a.procedure_level
    """)


def _load_targets(con, targets_csv: Path) -> None:
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE targets AS
        SELECT CAST(year AS INTEGER) AS year, nullif(trim(agency_code), '') AS agency_code,
               trim(kpi_code) AS kpi_code, CAST(target AS DOUBLE) AS target
        FROM read_csv('{Path(targets_csv)}', all_varchar=true, header=true)
        WHERE nullif(trim(kpi_code), '') IS NOT NULL
    """)


def _kpi_table(con) -> pa.Table:
    parts = []
    for code, num, den in KPIS:
        den_sql = "NULL::BIGINT" if den is None else f"({den})"
        parts.append(f"SELECT agency_code, period_id, '{code}' AS kpi_code, ({num})::BIGINT AS numerator, "
                     f"{den_sql}::BIGINT AS denominator FROM wide")
    sql = f"""
        WITH k AS ({" UNION ALL ".join(parts)}),
        v AS (
            SELECT k.*, p.period_type, p.period, p.period_start, p.period_end, p.selected,
                   year(p.period_start) AS y,
                   CASE WHEN k.kpi_code = 'e_certified_copies' THEN CAST(k.numerator AS DOUBLE)
                        WHEN k.denominator = 0 THEN NULL
                        ELSE k.numerator / k.denominator END AS value
            FROM k JOIN periods p ON p.period_id = k.period_id AND p.basis = 'calendar'
        ), t AS (  -- settled detail 18
            SELECT v.agency_code, v.period_id, v.kpi_code,
                   arg_min(t.target, CASE WHEN t.agency_code IS NOT NULL THEN 0 ELSE 1 END * 100000
                                     + CASE WHEN t.year <= v.y THEN v.y - t.year ELSE 50000 + t.year END) AS target
            FROM v JOIN targets t ON t.kpi_code = v.kpi_code
              AND (t.agency_code = v.agency_code AND t.year = v.y OR t.agency_code IS NULL)
            GROUP BY ALL
        ), prev AS (
            SELECT v.agency_code, v.period_type, v.period, v.value FROM v WHERE v.kpi_code = 'e_certified_copies'
        )
        SELECT v.agency_code, a.agency_name, a.level AS agency_level, v.period_type, v.period, v.period_start,
               v.period_end, v.kpi_code, v.numerator, v.denominator, v.value,
               CASE WHEN v.kpi_code = 'e_certified_copies' THEN pv.value ELSE t.target END AS target,
               CASE WHEN v.kpi_code = 'e_certified_copies' THEN v.value > pv.value
                    ELSE v.value >= t.target END AS meets_target
        FROM v JOIN agencies a ON a.agency_code = v.agency_code
        LEFT JOIN t ON t.agency_code = v.agency_code AND t.period_id = v.period_id AND t.kpi_code = v.kpi_code
        LEFT JOIN prev pv ON v.kpi_code = 'e_certified_copies' AND pv.agency_code = v.agency_code
             AND pv.period_type = v.period_type
             AND pv.period = lpad(CAST(CAST(left(v.period, 4) AS INTEGER) - 1 AS VARCHAR), 4, '0') || v.period[5:]
        WHERE v.selected
    """
    return con.sql(sql).to_arrow_table()


def _i766_table(con) -> pa.Table:
    parts = []
    for code, num, den, score, mx in INDICATORS:
        parts.append(f"""
            SELECT agency_code, period_id, '{code}' AS indicator_code, num, den,
                   CAST({score} AS DOUBLE) AS score, CAST({mx} AS DOUBLE) AS max_score
            FROM (SELECT agency_code, period_id, ({num})::BIGINT AS num, ({den})::BIGINT AS den,
                         CASE WHEN ({den}) = 0 THEN NULL ELSE ({num}) / ({den}) END AS r FROM wide)""")
    sql = f"""
        SELECT k.agency_code, p.period_type, p.period, k.indicator_code, k.num AS numerator, k.den AS denominator,
               CASE WHEN k.den = 0 THEN NULL ELSE k.num / k.den END AS ratio, k.score, k.max_score
        FROM ({" UNION ALL ".join(parts)}) k
        JOIN periods p ON p.period_id = k.period_id AND p.basis = 'calendar' AND p.selected
    """
    return con.sql(sql).to_arrow_table()


def _f06_table(con) -> pa.Table:
    cols = ", ".join(f"({expr})::BIGINT AS {name}" for name, expr in F06_COLUMNS)
    sql = f"""
        SELECT x.agency_code, p.basis AS period_basis, p.period_type, p.period, p.period_start, p.period_end,
               x.field_code, x.field_name, {cols}
        FROM roll_f x JOIN periods p ON p.period_id = x.period_id AND p.selected
        WHERE x.pop > 0
    """
    return con.sql(sql).to_arrow_table()


def check_form06(t: pa.Table) -> None:
    """Raise FormIdentityError when any row breaks the form's identities (nothing is published then)."""
    import pyarrow.compute as pc

    def col(n):
        return t.column(n)

    checks = {
        "c03 = c04 + c05 + c06": pc.equal(col("c03_received_total"),
                                          pc.add(pc.add(col("c04_received_online"),
                                                        col("c05_received_direct_postal")),
                                                 col("c06_carried_over"))),
        "c03 = c07 + c11": pc.equal(col("c03_received_total"),
                                    pc.add(col("c07_resolved_total"), col("c11_in_progress_total"))),
        "c07 = c08 + c09 + c10": pc.equal(col("c07_resolved_total"),
                                          pc.add(pc.add(col("c08_resolved_early"), col("c09_resolved_on_time")),
                                                 col("c10_resolved_late"))),
        "c11 = c12 + c13": pc.equal(col("c11_in_progress_total"),
                                    pc.add(col("c12_in_progress_within_time"), col("c13_in_progress_overdue"))),
    }
    bad = []
    for name, ok in checks.items():
        # a NULL side breaks the identity too (not pc.fill_null: it imports pandas, 0.2 s of every build)
        broken = pc.or_kleene(pc.invert(ok), pc.is_null(ok))
        n = pc.sum(broken).as_py() or 0
        if n:
            first = t.filter(broken).slice(0, 3).select(F06_KEYS).to_pylist()
            bad.append(f"{name}: {n} rows, e.g. {first}")
    if bad:
        raise FormIdentityError("form 06 identities broken, nothing published: " + "; ".join(bad))


# ---------------------------------------------------------------------------------------------------------------
def _merge(old_file: Path | None, new: pa.Table, periods: set[str] | None, keys: list[str]) -> pa.Table:
    import pyarrow.compute as pc

    merged = new
    if periods is not None and old_file is not None:
        old = _read_parquet(old_file)
        keep = old.filter(pc.invert(pc.is_in(old.column("period"), value_set=pa.array(sorted(periods)))))
        merged = pa.concat_tables([keep.cast(new.schema), new])
    idx = pc.sort_indices(merged, options=pc.SortOptions([(k, "ascending", "at_start") for k in keys]))
    return merged.take(idx)


def _read_parquet(path: Path) -> pa.Table:
    """One Parquet file as a table (not ``pq.read_table``: its dataset layer imports pandas, 0.2 s of every build)."""
    with pq.ParquetFile(path) as f:
        return f.read()


def built_from(wh: Path, as_of: date, targets_csv: Path | None = None) -> dict:
    """What marts built now are built from, recorded in their generation's manifest (``transforms.plan`` decides
    "nothing new" against it): as_of, core's inputs as core's meta records them (the staged batches, the digests of
    agencies.csv and of the extra days-off file) and the digest of targets.csv."""
    from transforms.core import _digest, read_core_meta

    core = {k: v for k, v in read_core_meta(wh).items() if k != "state"}
    return {"as_of": as_of.isoformat(), "core": core, "targets_sha256": _digest(targets_csv or DEFAULT_TARGETS)}


def _published_file(wh: Path, gen: Path | None, table: str) -> Path | None:
    """The published file of a mart: in the current generation, else in the older single-file layout."""
    if gen is not None and (gen / table / "data.parquet").is_file():
        return gen / table / "data.parquet"
    legacy = table_dir(wh, table)
    if gen is None and not legacy.is_symlink() and (legacy / "data.parquet").is_file():
        return legacy / "data.parquet"
    return None


def publish_marts(wh: Path, tables: dict[str, pa.Table], periods: set[str] | None = None, *,
                  built_from: dict | None = None) -> dict[str, int]:
    """Merge with the rows kept from the published generation (incremental) and publish the marts as one new
    generation (``warehouse.store.GenerationWriter``): a reader sees the three marts of the previous build or the
    three of this one, never a mix; a mart whose content did not change is carried over as is (hard link). The
    generation records ``built_from``; when neither the marts nor that changed, nothing is published."""
    keys = {MART_KPI: KPI_KEYS, MART_766: I766_KEYS, MART_F06: F06_KEYS}
    wh = Path(wh)
    prev = current_generation(wh)
    old = {name: _published_file(wh, prev, name) for name in tables}
    final = {name: _merge(old[name], t, periods, keys[name]) for name, t in tables.items()}
    check_form06(final[MART_F06])
    rows = {name: t.num_rows for name, t in final.items()}

    def unchanged(name: str) -> bool:
        if old[name] is None:
            return False
        o = _read_parquet(old[name])
        return o.schema.equals(final[name].schema) and o.equals(final[name])

    same = {name for name in final if unchanged(name)}
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


# ---------------------------------------------------------------------------------------------------------------
# explain: the records behind a KPI's numerator and denominator
# ---------------------------------------------------------------------------------------------------------------
CLASS_SQL = ("CASE cls WHEN 1 THEN 'early' WHEN 2 THEN 'on_time' WHEN 3 THEN 'late' WHEN 4 THEN 'within_time' "
             "WHEN 5 THEN 'overdue' END")
# code -> (record kind, numerator condition, denominator condition), from the registry
EXPLAIN = kpis.explainable()


def marts_as_of(warehouse: Path) -> date | None:
    """The as_of of the published marts (their generation's manifest); None when none was published."""
    as_of = published_manifest(warehouse).get("built_from", {}).get("as_of")
    return date.fromisoformat(as_of) if as_of else None


def explain(warehouse: Path, code: str, agency: str, period: str, *, basis: str = "calendar",
            as_of: date | None = None, con=None) -> pa.Table:
    """Records (dossiers or feedback items; no personal data) in the denominator of a KPI / 766 indicator / form
    06 column for an agency (its roll-up included) and period, with ``in_numerator``."""
    if code not in EXPLAIN:
        raise KeyError(f"cannot explain {code!r}; one of: {', '.join(EXPLAIN)}")
    if basis not in PERIOD_BASES:
        raise ValueError(f"basis must be one of {', '.join(PERIOD_BASES)}, not {basis!r}")
    if not re.fullmatch(r"\d{4}(-(0[1-9]|1[0-2])|-Q[1-4])?", period):
        raise ValueError(f"period must look like 2024-03 (month), 2024-Q1 (quarter) or 2024 (year), not {period!r}")
    wh = Path(warehouse)
    as_of = as_of or marts_as_of(wh)
    if as_of is None:
        raise ValueError("as_of unknown: build the marts first or pass as_of")
    kind, num, den = EXPLAIN[code]
    own = con is None
    con = con or duck(wh)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE agencies AS SELECT * FROM {_core(wh, 'core_agencies')}")
        if not con.execute("SELECT count(*) FROM agencies WHERE agency_code = ?", [agency]).fetchall()[0][0]:
            near = [r[0] for r in con.execute(
                "SELECT agency_code FROM agencies ORDER BY levenshtein(upper(agency_code), upper(?)), agency_code "
                "LIMIT 3", [agency]).fetchall()]
            raise ValueError(f"agency {agency!r} is not in core_agencies (agencies.csv); nearest: {', '.join(near)}")
        make_agency_chain(con)
        _load_periods(con, as_of, {period})
        con.execute("UPDATE periods SET selected = selected AND basis = ?", [basis])
        if not con.execute("SELECT count(*) FROM periods WHERE selected").fetchall()[0][0]:
            raise ValueError(f"period {period} is not among the periods of the marts built as of {as_of}")
        D, F = _core(wh, "core_dossiers"), _core(wh, "core_feedback")
        E = _core(wh, "core_e_certifications")
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE owner_p AS
            WITH s AS (SELECT DISTINCT owner_agency_code AS code FROM {D}
                       UNION SELECT DISTINCT owner_agency_code FROM {F} UNION SELECT DISTINCT owner_agency_code FROM {E})
            SELECT s.code, p.period_id,
                   arg_min(c.member, c.pos) FILTER (WHERE coalesce(c.valid_from, DATE '0001-01-01') <= p.period_end
                         AND (c.valid_to IS NULL OR c.valid_to >= p.period_start)) AS agency_code
            FROM s JOIN agency_chain_v c ON c.agency_code = s.code CROSS JOIN periods p WHERE p.selected
            GROUP BY s.code, p.period_id
        """)
        _rollup(con)
        if kind == "dossier":
            _dossier_counters(con, D, _core(wh, "core_ratings"), as_of, explain=True)
            bases = bases_sql(con)
            rows = f"""
                SELECT c.dossier_id, c.procedure_code, o.agency_code AS counted_for, c.own AS owner_on_received,
                       c.status, c.channel_code AS channel, c.rd AS received_date, c.due AS due_date,
                       c.ed AS end_date, c.e AS evaluation_date, c.rin AS received_in_period, c.res AS resolved_in_period,
                       {CLASS_SQL} AS class, c.nsup AS supplement_requests_by_e, c.pause_d AS paused_since,
                       ({num}) AS in_numerator
                FROM ({classified_sql(bases)}) c"""
            order = "dossier_id"
        else:
            _feedback_counters(con, F, explain=True)
            rows = f"""
                SELECT c.feedback_id, c.dossier_id, o.agency_code AS counted_for, c.own AS owner_on_received,
                       c.rd AS received_date, c.ad AS answered_date, c.dl AS deadline_date, c.e AS evaluation_date,
                       c.rin AS received_in_period, c.likes, c.dislikes, c.is_re_complaint,
                       ({num}) AS in_numerator
                FROM fb_rows c"""
            order = "feedback_id"
        sql = f"""
            {rows}
            JOIN owner_p o ON o.code = c.own AND o.period_id = c.period_id
            JOIN rollup r ON r.descendant = o.agency_code AND r.period_id = c.period_id AND r.ancestor = ?
            WHERE ({den})
            ORDER BY {order}
        """
        return con.sql(sql, params=[agency]).to_arrow_table()
    finally:
        if own:
            con.close()
