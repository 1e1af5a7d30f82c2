-- (field_code, field_name) as a small integer key: grouping millions of (dossier, period) rows by an integer is
-- much cheaper than by two strings.
CREATE OR REPLACE TEMP TABLE field_keys AS
SELECT CAST(row_number() OVER (ORDER BY field_code, field_name) AS INTEGER) AS field_key, field_code, field_name
FROM (SELECT DISTINCT field_code, field_name FROM ${dossiers})
