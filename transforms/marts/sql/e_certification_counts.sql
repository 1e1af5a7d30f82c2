-- Copies certified in [period_start, E] by owner, for every calendar period (not only the selected ones: next
-- year's target reads this year's value).
CREATE OR REPLACE TEMP TABLE e_certification_counts AS
SELECT x.owner_agency_code AS owner_code, p.period_id, sum(x.copies)::BIGINT AS ${copies}
FROM ${e_certifications} x JOIN periods p
  ON p.basis = 'calendar' AND x.certified_date BETWEEN p.period_start AND p.evaluation_date
GROUP BY ALL
