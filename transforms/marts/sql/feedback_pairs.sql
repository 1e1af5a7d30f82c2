-- (feedback item, calendar period) pairs of the selected periods: an item is in the population of P when received
-- by E and not answered before P starts; answered: answered by E; deadline_date: 15 working days after receipt.
WITH pairs AS (
    SELECT ${listing_columns} f.owner_agency_code AS owner_code, p.period_id, p.evaluation_date, p.period_start,
           f.received_date, f.answered_date, f.deadline_date, f.likes, f.dislikes, f.is_re_complaint
    FROM ${feedback} f JOIN periods p ON p.basis = 'calendar' AND p.selected
      AND f.received_date <= p.evaluation_date AND (f.answered_date IS NULL OR f.answered_date >= p.period_start)
    WHERE f.received_date IS NOT NULL
)
SELECT *, answered_date IS NOT NULL AND answered_date <= evaluation_date AS answered,
       received_date >= period_start AS received_in_period
FROM pairs
