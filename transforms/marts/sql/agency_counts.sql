-- The counters moved from each record's owner to the agency it counts for in the period (owner_by_period, rule 9)
-- and rolled up into every ancestor (rollup).
-- field_counts_own / field_counts: the dossier counters by agency, period and field (form 06 reads field_counts);
-- other_counts_own: feedback and e-certification counters by agency and period;
-- agency_counts: every counter by agency and period, rolled up, zero where nothing was counted (KPIs, 766).
CREATE OR REPLACE TEMP TABLE field_counts_own AS
SELECT o.agency_code, x.period_id, k.field_code, k.field_name, ${dossier_sums}
FROM dossier_counts x JOIN owner_by_period o ON o.owner_code = x.owner_code AND o.period_id = x.period_id
JOIN field_keys k ON k.field_key = x.field_key
WHERE o.agency_code IS NOT NULL
GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE field_counts AS
SELECT r.ancestor AS agency_code, x.period_id, x.field_code, x.field_name, ${dossier_sums}
FROM field_counts_own x JOIN rollup r ON r.descendant = x.agency_code AND r.period_id = x.period_id
GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE other_counts_own AS
SELECT o.agency_code, x.period_id, ${other_sums}
FROM (SELECT * FROM feedback_counts UNION ALL BY NAME SELECT * FROM e_certification_counts) x
JOIN owner_by_period o ON o.owner_code = x.owner_code AND o.period_id = x.period_id
WHERE o.agency_code IS NOT NULL
GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE agency_counts AS
WITH own_counts AS (
    SELECT agency_code, period_id, ${dossier_sums} FROM field_counts_own GROUP BY ALL
    UNION ALL BY NAME SELECT * FROM other_counts_own
    UNION ALL BY NAME SELECT * FROM procedure_counts
)
SELECT r.ancestor AS agency_code, r.period_id, ${all_sums}
FROM rollup r LEFT JOIN own_counts x ON x.agency_code = r.descendant AND x.period_id = r.period_id
GROUP BY ALL
