-- targets.csv: year, agency_code (empty: every agency), kpi_code, target
CREATE OR REPLACE TEMP TABLE targets AS
SELECT CAST(year AS INTEGER) AS year, nullif(trim(agency_code), '') AS agency_code,
       trim(kpi_code) AS kpi_code, CAST(target AS DOUBLE) AS target
FROM read_csv('${path}', all_varchar=true, header=true)
WHERE nullif(trim(kpi_code), '') IS NOT NULL
