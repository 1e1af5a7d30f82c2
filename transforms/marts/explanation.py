"""explain: the records (dossiers or feedback items; no personal data) behind a KPI's, 766 indicator's or form 06
column's numerator and denominator for an agency (its roll-up included) and period, each with ``in_numerator``.
The conditions are the registry's (``transforms.kpis.registry.explainable``), over the same classified pairs the
marts count (``dossier_pairs``, ``feedback_catalogue``)."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pyarrow as pa

from transforms.calendar import PERIOD_BASES
from transforms.core import duck
from transforms.kpis import registry as kpis
from transforms.marts.dossier_pairs import classified_sql, load_dossier_rows
from transforms.marts.feedback_catalogue import load_feedback_rows
from transforms.marts.publish import marts_as_of
from transforms.marts.queries import query
from transforms.marts.scope import bases_sql, core_table, load_agencies, load_owners, load_periods, load_rollup

# code -> (record kind, numerator condition, denominator condition), from the registry
EXPLAIN = kpis.explainable()
PERIOD_LABEL = re.compile(r"\d{4}(-(0[1-9]|1[0-2])|-Q[1-4])?")


def explain(warehouse: Path, code: str, agency: str, period: str, *, basis: str = "calendar",
            as_of: date | None = None, con=None) -> pa.Table:
    """Records in the denominator of measure ``code`` for ``agency`` (its roll-up included) in ``period`` of
    ``basis``, as of the published marts' as_of (or ``as_of``), with ``in_numerator``."""
    _check_request(code, period, basis)
    wh = Path(warehouse)
    as_of = as_of or marts_as_of(wh)
    if as_of is None:
        raise ValueError("as_of unknown: build the marts first or pass as_of")
    kind, numerator, denominator = EXPLAIN[code]
    own = con is None
    con = con or duck(wh)
    try:
        _load_scope(con, wh, agency, period, basis, as_of)
        if kind == "dossier":
            load_dossier_rows(con, core_table(wh, "core_dossiers"), core_table(wh, "core_ratings"), as_of)
            sql = query("explain_dossiers", classified=classified_sql(bases_sql(con)), numerator=numerator,
                        denominator=denominator)
        else:
            load_feedback_rows(con, core_table(wh, "core_feedback"))
            sql = query("explain_feedback", numerator=numerator, denominator=denominator)
        return con.sql(sql, params=[agency]).to_arrow_table()
    finally:
        if own:
            con.close()


def _check_request(code: str, period: str, basis: str) -> None:
    if code not in EXPLAIN:
        raise KeyError(f"cannot explain {code!r}; one of: {', '.join(EXPLAIN)}")
    if basis not in PERIOD_BASES:
        raise ValueError(f"basis must be one of {', '.join(PERIOD_BASES)}, not {basis!r}")
    if not PERIOD_LABEL.fullmatch(period):
        raise ValueError(f"period must look like 2024-03 (month), 2024-Q1 (quarter) or 2024 (year), not {period!r}")


def _load_scope(con, wh: Path, agency: str, period: str, basis: str, as_of: date) -> None:
    """Agencies, the one selected period, owners and roll-ups; a clear error for an unknown agency or period."""
    load_agencies(con, wh)
    if not con.execute("SELECT count(*) FROM agencies WHERE agency_code = ?", [agency]).fetchall()[0][0]:
        near = [r[0] for r in con.execute(
            "SELECT agency_code FROM agencies ORDER BY levenshtein(upper(agency_code), upper(?)), agency_code "
            "LIMIT 3", [agency]).fetchall()]
        raise ValueError(f"agency {agency!r} is not in core_agencies (agencies.csv); nearest: {', '.join(near)}")
    load_periods(con, as_of, {period})
    con.execute("UPDATE periods SET selected = selected AND basis = ?", [basis])
    if not con.execute("SELECT count(*) FROM periods WHERE selected").fetchall()[0][0]:
        raise ValueError(f"period {period} is not among the periods of the marts built as of {as_of}")
    load_owners(con, wh, selected_only=True)
    load_rollup(con)
