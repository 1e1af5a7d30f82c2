-- Every period (both bases, every type) from the first agency's start to as_of; `selected` marks the periods being
-- built (all, or those an incremental build rebuilds). months: 1, 3 or 12; period_index: the period's index counted
-- in periods of its type (months since year 0 divided by months); evaluation_date: E, the day the period is
-- evaluated at (its end, or as_of while it runs).
CREATE OR REPLACE TEMP TABLE periods (
    period_id INTEGER, basis VARCHAR, period_type VARCHAR, months INTEGER, period_index INTEGER, period VARCHAR,
    period_start DATE, period_end DATE, evaluation_date DATE, selected BOOLEAN)
