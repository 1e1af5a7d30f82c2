"""Scope of a marts build: the core tables read, the agencies and their chains, the periods (both bases, every
type, the ``selected`` ones being built), the owner each record counts for in a period (rule 9) and the roll-up
of agencies into their parents (settled detail 10).

The temp tables made here, read by every later step: ``agencies``, ``agency_chain_v`` (transforms.core),
``periods``, ``owner_by_period`` (owner_code, period_id, agency_code) and ``rollup`` (period_id, ancestor,
descendant).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from pathlib import Path

from transforms.calendar import PERIOD_BASES, periods_between
from transforms.core import make_agency_chain
from transforms.marts.queries import query
from warehouse.store import table_exists, table_glob

MONTHS = {"month": 1, "quarter": 3, "year": 12}


def core_table(wh: Path, table: str) -> str:
    """A core table as a DuckDB relation (``read_parquet(...)``); a missing one says to build core first."""
    if not table_exists(wh, table):
        raise FileNotFoundError(f"{table} is missing under {wh}: run build_core first")
    return f"read_parquet('{table_glob(wh, table)}')"


def load_agencies(con, wh: Path) -> None:
    """``agencies`` (core_agencies) and their successor chains (``agency_chain_v``)."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE agencies AS SELECT * FROM {core_table(wh, 'core_agencies')}")
    make_agency_chain(con)


def load_periods(con, as_of: date, selected: set[str] | None) -> None:
    """``periods``: every period from the first agency's start to ``as_of``; ``selected`` are the labels built
    (None: all)."""
    first = con.execute("SELECT min(coalesce(valid_from, DATE '2000-01-01')) FROM agencies").fetchone()[0]
    found = [] if first is None or first > as_of else periods_between(first, as_of)
    rows = [(i, p.basis, p.period_type, MONTHS[p.period_type], p.index, p.label, p.start, p.end,
             p.eval_date(as_of), selected is None or p.label in selected)
            for i, p in enumerate(found)]
    con.execute(query("periods"))
    if rows:
        con.executemany("INSERT INTO periods VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def load_owners(con, wh: Path, *, selected_only: bool = False) -> None:
    """``owner_by_period`` (rule 9, second step) for every period, or only the selected ones."""
    con.execute(query("owner_by_period", dossiers=core_table(wh, "core_dossiers"),
                      feedback=core_table(wh, "core_feedback"),
                      e_certifications=core_table(wh, "core_e_certifications"),
                      periods="p.selected" if selected_only else "true"))


def load_rollup(con) -> None:
    """``rollup``: (period, ancestor, descendant) for every link valid on some day of the period."""
    con.execute(query("rollup"))


def month_index(day: str, basis: str) -> str:
    """SQL: the month index (year * 12 + month - 1) of the period month holding ``day``; on the cut-off basis a
    month runs from the 15th to the 14th and is named after the month it ends in."""
    if basis == "calendar":
        return f"(year({day}) * 12 + month({day}) - 1)"
    return f"(year({day} - 14) * 12 + month({day} - 14))"


def bases_sql(con) -> str:
    """VALUES rows (basis, months, cut_off, first_index): for each basis and period type, the index of its first
    selected period; records are expanded into periods from there on, so an incremental build never expands
    unselected ones."""
    first = {(b, k): i for b, k, i in con.execute(
        "SELECT basis, months, min(period_index) FROM periods WHERE selected GROUP BY ALL").fetchall()}
    return ", ".join(f"('{b}', {k}, {str(b != 'calendar').lower()}, {first.get((b, k), 10 ** 6)})"
                     for b in PERIOD_BASES for k in (1, 3, 12))


def changed_periods(dates: Iterable[date], as_of: date) -> set[str]:
    """Period labels (both bases, every type) that new data dated ``dates`` can change as of ``as_of``: every
    period ending on or after the earliest date and started by as_of (a changed record can move every later
    period, settled detail 3, and next year's e-certification target)."""
    ds = [d for d in dates if d is not None]
    if not ds or min(ds) > as_of:
        return set()
    first = min(ds)
    return {p.label for p in periods_between(first, as_of) if p.end >= first and p.start <= as_of}
