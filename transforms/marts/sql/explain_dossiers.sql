-- The dossiers behind a measure: classified (dossier, period) pairs of the selected period counted for the agency
-- (or an agency it rolls up) that meet the denominator's condition, with in_numerator.
SELECT c.dossier_id, c.procedure_code, o.agency_code AS counted_for, c.owner_code AS owner_on_received, c.status,
       c.channel, c.received_date, c.due_date, c.end_date, c.evaluation_date, c.received_in_period,
       c.resolved_in_period, c.timeliness AS class, c.supplement_requests_by_e, c.paused_since,
       (${numerator}) AS in_numerator
FROM (${classified}) c
JOIN owner_by_period o ON o.owner_code = c.owner_code AND o.period_id = c.period_id
JOIN rollup r ON r.descendant = o.agency_code AND r.period_id = c.period_id AND r.ancestor = ?
WHERE (${denominator})
ORDER BY dossier_id
