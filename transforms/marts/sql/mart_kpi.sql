-- mart_kpi__agency_period: one row per agency, calendar period and plan KPI of the selected periods.
-- measures: (agency_code, period_id, kpi_code, numerator, denominator) from the registry's formulas.
-- A count KPI (${count_kpis}) has the numerator as value; a rate is numerator / denominator (none when 0).
WITH measures AS (
    ${measures}
), valued AS (
    SELECT m.*, p.period_type, p.period, p.period_start, p.period_end, p.selected,
           year(p.period_start) AS y,
           CASE WHEN m.kpi_code IN (${count_kpis}) THEN CAST(m.numerator AS DOUBLE)
                WHEN m.denominator = 0 THEN NULL
                ELSE m.numerator / m.denominator END AS value
    FROM measures m JOIN periods p ON p.period_id = m.period_id AND p.basis = 'calendar'
), file_target AS (  -- settled detail 18: the agency's row of the year, else the generic row of the latest year
                     -- <= the period's year, else the generic row of the earliest year
    SELECT v.agency_code, v.period_id, v.kpi_code,
           arg_min(t.target, CASE WHEN t.agency_code IS NOT NULL THEN 0 ELSE 1 END * 100000
                             + CASE WHEN t.year <= v.y THEN v.y - t.year ELSE 50000 + t.year END) AS target
    FROM valued v JOIN targets t ON t.kpi_code = v.kpi_code
      AND (t.agency_code = v.agency_code AND t.year = v.y OR t.agency_code IS NULL)
    GROUP BY ALL
), previous_year AS (  -- KPIs whose target is last year's value (${previous_year_kpis})
    SELECT v.agency_code, v.period_type, v.period, v.value FROM valued v WHERE v.kpi_code IN (${previous_year_kpis})
)
SELECT v.agency_code, a.agency_name, a.level AS agency_level, v.period_type, v.period, v.period_start,
       v.period_end, v.kpi_code, v.numerator, v.denominator, v.value,
       CASE WHEN v.kpi_code IN (${previous_year_kpis}) THEN pv.value ELSE t.target END AS target,
       CASE WHEN v.kpi_code IN (${previous_year_kpis}) THEN v.value > pv.value
            ELSE v.value >= t.target END AS meets_target
FROM valued v JOIN agencies a ON a.agency_code = v.agency_code
LEFT JOIN file_target t ON t.agency_code = v.agency_code AND t.period_id = v.period_id AND t.kpi_code = v.kpi_code
LEFT JOIN previous_year pv ON v.kpi_code IN (${previous_year_kpis}) AND pv.agency_code = v.agency_code
     AND pv.period_type = v.period_type
     AND pv.period = lpad(CAST(CAST(left(v.period, 4) AS INTEGER) - 1 AS VARCHAR), 4, '0') || v.period[5:]
WHERE v.selected
