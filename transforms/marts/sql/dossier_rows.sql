-- One row per dossier received by as_of and alive on some day of a selected period (an incremental build reads a
-- few months), with every input of the dossier counters. last_day: the last day it is alive (its end date, or
-- as_of); the *_month_* columns: the period month (scope.month_index) holding the received date and the last day.
SELECT *, ${last_month_calendar} AS last_month_calendar, ${last_month_cutoff} AS last_month_cutoff FROM (
    SELECT ${listing_columns}
           d.owner_agency_code AS owner_code, d.received_date,
           greatest(d.received_date, least(coalesce(d.end_date, DATE '${as_of}'), DATE '${as_of}')) AS last_day,
           d.end_date, d.due_date, d.channel = 2 AS online, d.status IN (9, 10) AS status_9_or_10,
           d.has_digitized_components AS digitized, d.reused_digitized_data AS reused_data,
           d.has_e_result AS e_result, d.is_paper_result AS paper_result, coalesce(d.fee_vnd, 0) > 0 AS has_fee,
           d.first_successful_payment_date AS paid_date, d.first_linked_feedback_date AS feedback_date,
           k.field_key,
           -- supplement requests: a JSON list (national sync) sorted, or the flat export's count and latest dates
           CASE WHEN d.supplement_rule = 'list' THEN
                CASE WHEN len(d.supplement_requests) > 0 THEN
                     list_sort(list_transform(d.supplement_requests,
                         lambda req: {'requested': CAST(req.requested_at AS DATE),
                                    'received': CAST(req.received_at AS DATE)}))
                END
           END AS supplements,
           d.supplement_rule = 'list' AS supplements_listed,
           CASE WHEN d.supplement_rule = 'list' THEN 0 ELSE d.supplement_count END AS flat_supplement_count,
           CAST(d.supplement_requested_at AS DATE) AS supplement_requested,
           CAST(d.supplement_received_at AS DATE) AS supplement_received,
           r.spans AS dissatisfied_spans,
           ${received_month_calendar} AS received_month_calendar,
           ${received_month_cutoff} AS received_month_cutoff
    FROM ${dossiers} d LEFT JOIN dissatisfied_spans r ON r.dossier_id = d.dossier_id
    JOIN field_keys k ON k.field_code IS NOT DISTINCT FROM d.field_code
                     AND k.field_name IS NOT DISTINCT FROM d.field_name
    WHERE d.is_received AND d.received_date <= DATE '${as_of}')
WHERE last_day >= (SELECT coalesce(min(period_start), DATE '9999-12-31') FROM periods WHERE selected)
