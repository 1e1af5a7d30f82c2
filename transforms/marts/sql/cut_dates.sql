-- The cut dates: every E and every period_start - 1 of the period table. A date compared only with those (x <= c,
-- x > c) gives the same answers as its ceiling among them; a date compared only as x >= c the same as its floor.
-- day_cut: for each day between the first and last cut, its ceiling and floor.
CREATE OR REPLACE TEMP TABLE cut_dates AS
SELECT DISTINCT cut FROM (SELECT evaluation_date AS cut FROM periods UNION ALL SELECT period_start - 1 FROM periods);

CREATE OR REPLACE TEMP TABLE cut_bounds AS SELECT min(cut) AS first_cut, max(cut) AS last_cut FROM cut_dates;

CREATE OR REPLACE TEMP TABLE day_cut AS
WITH days AS (
    SELECT CAST(unnest(range(CAST(first_cut AS TIMESTAMP), CAST(last_cut AS TIMESTAMP) + INTERVAL 1 DAY,
                             INTERVAL 1 DAY)) AS DATE) AS day
    FROM cut_bounds WHERE first_cut IS NOT NULL
)
SELECT d.day, min(c.cut) FILTER (c.cut >= d.day) AS ceiling, max(c.cut) FILTER (c.cut <= d.day) AS floor
FROM days d CROSS JOIN cut_dates c GROUP BY d.day
