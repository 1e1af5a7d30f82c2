"""mart_766__agency_period: the Decision 766 indicators by agency and calendar period, each with its ratio and
score (the registry's score over ``ratio``, null when the denominator is 0, and ``denominator``)."""

from __future__ import annotations

import pyarrow as pa

from transforms.marts.names import INDICATORS


def _indicator_sql(code: str, num: str, den: str, score: str, max_score: str) -> str:
    return f"""
        SELECT agency_code, period_id, '{code}' AS indicator_code, numerator, denominator,
               CAST({score} AS DOUBLE) AS score, CAST({max_score} AS DOUBLE) AS max_score
        FROM (SELECT agency_code, period_id, ({num})::BIGINT AS numerator, ({den})::BIGINT AS denominator,
                     CASE WHEN ({den}) = 0 THEN NULL ELSE ({num}) / ({den}) END AS ratio FROM agency_counts)"""


def i766_table(con) -> pa.Table:
    """The mart's rows of the selected periods."""
    sql = f"""
        SELECT i.agency_code, p.period_type, p.period, i.indicator_code, i.numerator, i.denominator,
               CASE WHEN i.denominator = 0 THEN NULL ELSE i.numerator / i.denominator END AS ratio,
               i.score, i.max_score
        FROM ({" UNION ALL ".join(_indicator_sql(*ind) for ind in INDICATORS)}) i
        JOIN periods p ON p.period_id = i.period_id AND p.basis = 'calendar' AND p.selected
    """
    return con.sql(sql).to_arrow_table()
