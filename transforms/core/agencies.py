"""Agencies in a core build: agencies.csv as a temp table, the successor chains, and rule 9's owner of an agency
on a day (first step); with the working-day calendar the due dates and deadlines are counted on."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from transforms.calendar import FIRST_YEAR, LAST_YEAR, get_calendar


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


def successor_chains(successor_of: dict[str, str | None]) -> list[tuple[str, int, str]]:
    """(agency, position, member) of each agency's chain of successors, itself first; a loop ends the chain."""
    rows = []
    for code in successor_of:
        seen, member, position = set(), code, 0
        while member is not None and member not in seen:
            rows.append((code, position, member))
            seen.add(member)
            member = successor_of.get(member)
            position += 1
    return rows


def make_agency_chain(con) -> None:
    """Temp tables ``agency_chain`` and ``agency_chain_v`` from the temp table ``agencies``."""
    chain_rows = successor_chains(dict(con.execute("SELECT agency_code, successor_code FROM agencies").fetchall()))
    con.execute("CREATE OR REPLACE TEMP TABLE agency_chain (agency_code VARCHAR, pos INTEGER, member VARCHAR)")
    if chain_rows:
        con.executemany("INSERT INTO agency_chain VALUES (?, ?, ?)", chain_rows)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE agency_chain_v AS
        SELECT chain.agency_code, chain.pos, chain.member, member.valid_from, member.valid_to
        FROM agency_chain chain JOIN agencies member ON member.agency_code = chain.member
    """)


def owner_on_date_sql(pairs_sql: str) -> str:
    """Rule 9, first step, for distinct (agency_code, day) pairs: follow successors while the agency is not valid on
    the day; a chain ending in an agency not valid on the day keeps that last agency (settled detail 16)."""
    return f"""
        SELECT pair.agency_code, pair.day,
               coalesce(arg_min(chain.member, chain.pos) FILTER (
                            WHERE chain.valid_from <= pair.day
                              AND (chain.valid_to IS NULL OR pair.day <= chain.valid_to)),
                        arg_max(chain.member, chain.pos), pair.agency_code) AS owner_code
        FROM ({pairs_sql}) pair LEFT JOIN agency_chain_v chain ON chain.agency_code = pair.agency_code
        GROUP BY pair.agency_code, pair.day
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
