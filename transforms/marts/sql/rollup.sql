-- Roll-up closure (period, ancestor, descendant): an agency rolls up into its parent for period P when the link is
-- valid on some day of P (settled detail 10); every agency valid in P is its own ancestor.
CREATE OR REPLACE TEMP TABLE rollup AS
WITH RECURSIVE valid_in_period AS (
    SELECT p.period_id, a.agency_code, a.parent_code
    FROM periods p JOIN agencies a
      ON coalesce(a.valid_from, DATE '0001-01-01') <= p.period_end
     AND (a.valid_to IS NULL OR a.valid_to >= p.period_start)
), closure(period_id, ancestor, descendant) AS (
    SELECT period_id, agency_code, agency_code FROM valid_in_period
    UNION
    SELECT c.period_id, c.ancestor, v.agency_code
    FROM closure c JOIN valid_in_period v ON v.period_id = c.period_id AND v.parent_code = c.descendant
)
SELECT * FROM closure
