-- A dossier's rating is the one it was given on rated_date until its next rating's date (ratings ordered by
-- timestamp, then rating id: settled details 6 and 17); the spans during which that rating was 1 (Không hài lòng).
CREATE OR REPLACE TEMP TABLE dissatisfied_spans AS
WITH rated AS (
    SELECT dossier_id, rating, rated_date,
           lead(rated_date) OVER (PARTITION BY dossier_id ORDER BY rated_at, rating_id) AS next_rated_date
    FROM ${ratings} WHERE rated_at IS NOT NULL AND dossier_id IS NOT NULL
)
SELECT dossier_id, list({'rated': rated_date, 'until': next_rated_date}) AS spans FROM rated
WHERE rating = 1 AND (next_rated_date IS NULL OR next_rated_date > rated_date)
GROUP BY dossier_id
