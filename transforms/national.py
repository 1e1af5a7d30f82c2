"""The national roll-up: the three KPI marts over every province, from the provinces' published marts.

A province's own rows at ``agency_level = 'province'`` (its top-level agencies, from ``mart_kpi__agency_period``)
are summed by period: numerators and denominators (never rates), then every rate is recomputed from the sums, the
Decision 766 scores from the national counts (the score formulas of ``transforms.kpis.registry``), and the form 06
columns are summed. Which measures are counts and how a target is found come from the registry too. Every national
row names the provinces it covers (``provinces``, ``province_count``), the oldest data date among them (``as_of``)
and each one's (``as_of_by_province``): a province whose run failed contributes its last good marts, and says so
by its older date.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa

from transforms.kpis import registry

NATIONAL_CODE = "VN"
NATIONAL_NAME = "Toàn quốc"
NATIONAL_LEVEL = "national"
COVERAGE = ("provinces", "province_count", "as_of", "as_of_by_province")


@dataclass(frozen=True)
class ProvinceMarts:
    name: str       # the province's folder name under the inbox and warehouse roots
    folder: Path    # the folder holding its published generation (<mart>/data.parquet)
    as_of: date     # the data date those marts were built with


def _lit(s: str) -> str:
    return "'" + str(s).replace("'", "''") + "'"


def _rows(provinces: list[ProvinceMarts], mart: str) -> str:
    """Every province's rows of ``mart`` at its top-level agencies, with the province's name and data date."""
    from transforms import marts

    parts = []
    for p in provinces:
        kpi = _lit(str(p.folder / marts.MART_KPI / "data.parquet"))
        src = _lit(str(p.folder / mart / "data.parquet"))
        parts.append(f"""SELECT {_lit(p.name)} AS province, DATE {_lit(p.as_of.isoformat())} AS as_of, m.*
            FROM read_parquet({src}) m
            WHERE m.agency_code IN (SELECT DISTINCT agency_code FROM read_parquet({kpi})
                                    WHERE agency_level = 'province')""")
    return " UNION ALL BY NAME ".join(parts)


_DATED = "province || ' ' || strftime(as_of, '%d/%m/%Y')"  # dd/mm/yyyy: officials read it
_COVER = ("string_agg(DISTINCT province, ';' ORDER BY province) AS provinces, "
          "count(DISTINCT province)::BIGINT AS province_count, min(as_of) AS as_of, "
          f"string_agg(DISTINCT {_DATED}, '; ' ORDER BY {_DATED}) AS as_of_by_province")


def _case(column: str, values: dict[str, str], default: str = "NULL") -> str:
    whens = " ".join(f"WHEN {column} = {_lit(k)} THEN {v}" for k, v in values.items())
    return f"CASE {whens} ELSE {default} END"


def kpi_sql(provinces: list[ProvinceMarts]) -> str:
    from transforms import marts

    counts = [k.code for k in registry.KPIS if k.denominator is None]
    by_prev = [k.code for k in registry.KPIS if k.target == "previous_year"]
    is_count = f"kpi_code IN ({', '.join(map(_lit, counts)) or 'NULL'})"
    is_prev = f"n.kpi_code IN ({', '.join(map(_lit, by_prev)) or 'NULL'})"
    return f"""
        WITH s AS (
            SELECT period_type, period, min(period_start) AS period_start, max(period_end) AS period_end, kpi_code,
                   sum(numerator)::BIGINT AS numerator, sum(denominator)::BIGINT AS denominator,
                   -- a target set in the targets file: the national row has it when every province has the same
                   CASE WHEN count(DISTINCT target) = 1 AND count(target) = count(*) THEN any_value(target) END
                       AS common_target, {_COVER}
            FROM ({_rows(provinces, marts.MART_KPI)}) GROUP BY period_type, period, kpi_code
        ), n AS (
            SELECT *, CASE WHEN {is_count} THEN numerator::DOUBLE WHEN denominator = 0 THEN NULL
                           ELSE numerator / denominator END AS value FROM s
        )
        SELECT {_lit(NATIONAL_CODE)} AS agency_code, {_lit(NATIONAL_NAME)} AS agency_name,
               {_lit(NATIONAL_LEVEL)} AS agency_level, n.period_type, n.period, n.period_start, n.period_end,
               n.kpi_code, n.numerator, n.denominator, n.value,
               CASE WHEN {is_prev} THEN pv.value ELSE n.common_target END AS target,
               CASE WHEN {is_prev} THEN n.value > pv.value ELSE n.value >= n.common_target END AS meets_target,
               {", ".join(f"n.{c}" for c in COVERAGE)}
        FROM n LEFT JOIN n pv ON {is_prev} AND pv.kpi_code = n.kpi_code AND pv.period_type = n.period_type
             AND pv.period = lpad(CAST(CAST(left(n.period, 4) AS INTEGER) - 1 AS VARCHAR), 4, '0') || n.period[5:]
        ORDER BY n.period_type, n.period, n.kpi_code
    """


def i766_sql(provinces: list[ProvinceMarts]) -> str:
    from transforms import marts

    scores = {i.code: i.score for i in registry.INDICATORS}
    maxima = {i.code: str(i.max_score) if i.max_score is not None else "NULL" for i in registry.INDICATORS}
    return f"""
        WITH s AS (
            SELECT period_type, period, indicator_code, sum(numerator)::BIGINT AS num,
                   sum(denominator)::BIGINT AS den, {_COVER}
            FROM ({_rows(provinces, marts.MART_766)}) GROUP BY period_type, period, indicator_code
        ), r AS (SELECT *, CASE WHEN den = 0 THEN NULL ELSE num / den END AS r FROM s)
        SELECT {_lit(NATIONAL_CODE)} AS agency_code, period_type, period, indicator_code, num AS numerator,
               den AS denominator, r AS ratio, CAST({_case("indicator_code", scores)} AS DOUBLE) AS score,
               CAST({_case("indicator_code", maxima)} AS DOUBLE) AS max_score, {", ".join(COVERAGE)}
        FROM r ORDER BY period_type, period, indicator_code
    """


def f06_sql(provinces: list[ProvinceMarts]) -> str:
    from transforms import marts

    sums = ", ".join(f"sum({f.code})::BIGINT AS {f.code}" for f in registry.FORM06)
    return f"""
        SELECT {_lit(NATIONAL_CODE)} AS agency_code, period_basis, period_type, period,
               min(period_start) AS period_start, max(period_end) AS period_end, field_code,
               any_value(field_name ORDER BY province) AS field_name, {sums}, {_COVER}
        FROM ({_rows(provinces, marts.MART_F06)})
        GROUP BY period_basis, period_type, period, field_code
        ORDER BY period_basis, period_type, period, field_code
    """


def rollup(provinces: list[ProvinceMarts]) -> dict[str, pa.Table]:
    """The three national marts from the provinces' published marts (mart name -> table)."""
    import duckdb

    from transforms import marts

    if not provinces:
        raise ValueError("no province has published marts: there is nothing to roll up")
    con = duckdb.connect()
    try:
        out = {marts.MART_KPI: con.sql(kpi_sql(provinces)).to_arrow_table(),
               marts.MART_766: con.sql(i766_sql(provinces)).to_arrow_table(),
               marts.MART_F06: con.sql(f06_sql(provinces)).to_arrow_table()}
    finally:
        con.close()
    marts.check_form06(out[marts.MART_F06])
    return out
