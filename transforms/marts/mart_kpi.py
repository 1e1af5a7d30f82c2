"""mart_kpi__agency_period: the plan KPIs by agency and calendar period, with their targets (``sql/mart_kpi.sql``).

Targets (settled detail 18): for agency A and year Y, the row (Y, A) of targets.csv; else the generic row of the
latest year <= Y; else the generic row of the earliest year in the file. A KPI whose target is "previous_year" in
the registry (e-certified copies) is compared with the same period of the year before.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from transforms.kpis import registry as kpis
from transforms.marts.names import KPIS
from transforms.marts.queries import query


def load_targets(con, targets_csv: Path) -> None:
    """``targets`` from the targets file."""
    con.execute(query("targets", path=Path(targets_csv)))


def _codes(codes: list[str]) -> str:
    return ", ".join(f"'{c}'" for c in codes) or "NULL"


def measures_sql() -> str:
    """(agency_code, period_id, kpi_code, numerator, denominator) of every KPI over ``agency_counts``."""
    parts = []
    for code, num, den in KPIS:
        den_sql = "NULL::BIGINT" if den is None else f"({den})"
        parts.append(f"SELECT agency_code, period_id, '{code}' AS kpi_code, ({num})::BIGINT AS numerator, "
                     f"{den_sql}::BIGINT AS denominator FROM agency_counts")
    return " UNION ALL ".join(parts)


def kpi_table(con) -> pa.Table:
    """The mart's rows of the selected periods."""
    sql = query("mart_kpi", measures=measures_sql(),
                count_kpis=_codes([k.code for k in kpis.KPIS if k.unit == "count"]),
                previous_year_kpis=_codes([k.code for k in kpis.KPIS if k.target == "previous_year"]))
    return con.sql(sql).to_arrow_table()
