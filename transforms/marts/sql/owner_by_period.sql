-- Rule 9, second step: the agency a record owned by owner_code counts for in period P is the first member of the
-- owner's successor chain (itself first) valid on some day of P; none valid: no agency (agency_code NULL).
CREATE OR REPLACE TEMP TABLE owner_by_period AS
WITH owners AS (
    SELECT DISTINCT owner_agency_code AS owner_code FROM ${dossiers}
    UNION SELECT DISTINCT owner_agency_code FROM ${feedback}
    UNION SELECT DISTINCT owner_agency_code FROM ${e_certifications}
)
SELECT o.owner_code, p.period_id,
       arg_min(c.member, c.pos) FILTER (WHERE coalesce(c.valid_from, DATE '0001-01-01') <= p.period_end
                                          AND (c.valid_to IS NULL OR c.valid_to >= p.period_start)) AS agency_code
FROM owners o JOIN agency_chain_v c ON c.agency_code = o.owner_code CROSS JOIN periods p
WHERE ${periods}
GROUP BY o.owner_code, p.period_id
