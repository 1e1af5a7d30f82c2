-- The feedback items behind a measure, as explain_dossiers.sql does for dossiers.
SELECT c.feedback_id, c.dossier_id, o.agency_code AS counted_for, c.owner_code AS owner_on_received,
       c.received_date, c.answered_date, c.deadline_date, c.evaluation_date, c.received_in_period, c.likes,
       c.dislikes, c.is_re_complaint, (${numerator}) AS in_numerator
FROM feedback_rows c
JOIN owner_by_period o ON o.owner_code = c.owner_code AND o.period_id = c.period_id
JOIN rollup r ON r.descendant = o.agency_code AND r.period_id = c.period_id AND r.ancestor = ?
WHERE (${denominator})
ORDER BY feedback_id
