-- Procedure counters by agency (its own, not rolled up) and calendar period: the procedures of the agency's level
-- in the catalogue in force at E (latest version dated by E, else the earliest: settled detail 8), counted by the
-- registry's conditions.
CREATE OR REPLACE TEMP TABLE procedure_counts AS
WITH in_force AS (
    SELECT p.period_id, p.evaluation_date, c.*
    FROM periods p JOIN ${procedures} c
      ON (c.in_force_from IS NULL OR p.evaluation_date >= c.in_force_from)
     AND (c.in_force_to IS NULL OR p.evaluation_date < c.in_force_to)
    WHERE p.basis = 'calendar' AND p.selected
), by_level AS (
    SELECT period_id, evaluation_date, unnest(string_split(levels, ';')) AS catalogue_level,
           * EXCLUDE (period_id, evaluation_date)
    FROM in_force
), counted AS (
    SELECT period_id, trim(catalogue_level) AS catalogue_level, ${counts}
    FROM by_level GROUP BY ALL
)
SELECT r.descendant AS agency_code, r.period_id, counted.* EXCLUDE (period_id, catalogue_level)
FROM rollup r JOIN agencies a ON a.agency_code = r.descendant AND r.ancestor = r.descendant
JOIN counted ON counted.period_id = r.period_id AND counted.catalogue_level = a.procedure_level
