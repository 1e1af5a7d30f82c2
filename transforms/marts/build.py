"""Build the three KPI marts: scope, counters, the owner each counts for and roll-ups, the marts' rows, publish.

For every basis (calendar, cutoff_15) and period type (month, quarter, year) a dossier belongs to the population of
period P when it was received by E and had not ended before P starts, i.e. P overlaps its live range [received
date, end date (or as_of)]: the counters expand each dossier (or group of equal dossiers) into only those
periods, classify it at E and aggregate straight away to (owner, period, field) counters (``dossier_counters``).
Rule 9's second step, the roll-ups along ``parent_code`` and the marts' rows all work on those small aggregates.

Choices where kpis.md leaves room (each pinned by a unit test in tests/unit/marts/): an unknown
``has_digitized_components`` / ``has_e_result`` / ``reused_digitized_data`` counts as "no"; an unknown paper-result
flag (or a procedure missing from the catalogue) counts as paper (settled detail 12); an unknown publication state
counts as "not Dừng công khai" (in the denominator) and not as "Đang công khai".
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa

from transforms.core import duck
from transforms.marts.dossier_counters import count_dossiers
from transforms.marts.feedback_catalogue import count_e_certifications, count_feedback, count_procedures
from transforms.marts.form06 import check_form06, form06_table
from transforms.marts.mart_766 import i766_table
from transforms.marts.mart_kpi import kpi_table, load_targets
from transforms.marts.names import (ALL_COUNTERS, DEFAULT_TARGETS, DOSSIER_COUNTERS, ECERT_COUNTERS,
                                    FEEDBACK_COUNTERS, MART_766, MART_F06, MART_KPI, MARTS)
from transforms.marts.publish import built_from, publish_marts
from transforms.marts.queries import query
from transforms.marts.scope import core_table, load_agencies, load_owners, load_periods, load_rollup

__all__ = ["MARTS", "build_marts", "compute_marts", "form06_table"]


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
    load_agencies(con, wh)
    load_periods(con, as_of, periods)
    load_targets(con, targets_csv or DEFAULT_TARGETS)
    load_owners(con, wh)
    load_rollup(con)
    count_dossiers(con, core_table(wh, "core_dossiers"), core_table(wh, "core_ratings"), as_of)
    count_feedback(con, core_table(wh, "core_feedback"))
    count_e_certifications(con, core_table(wh, "core_e_certifications"))
    count_procedures(con, core_table(wh, "core_procedures"))
    count_by_agency(con)
    form06 = form06_table(con)
    check_form06(form06)
    return {MART_KPI: kpi_table(con), MART_766: i766_table(con), MART_F06: form06}


def _sums(cols: list[str], zero: bool = False) -> str:
    if zero:
        return ", ".join(f"coalesce(sum(x.{c}), 0)::BIGINT AS {c}" for c in cols)
    return ", ".join(f"sum({c})::BIGINT AS {c}" for c in cols)


def count_by_agency(con) -> None:
    """``field_counts`` and ``agency_counts`` (``sql/agency_counts.sql``): counters by the agency they count for,
    rolled up."""
    con.execute(query("agency_counts", dossier_sums=_sums(DOSSIER_COUNTERS),
                      other_sums=_sums(FEEDBACK_COUNTERS + ECERT_COUNTERS), all_sums=_sums(ALL_COUNTERS, True)))
