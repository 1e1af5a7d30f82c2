"""Raw -> staging: typing, code decoding, row rules, pseudonyms. Pure DuckDB SQL generated from the contracts.

One batch at a time: the raw Parquet file of the batch (every value text) is scanned by DuckDB, which writes the
typed rows that pass every row rule to ``stg_<source>__<entity>/<batch_id>.parquet`` and the others, whole and as
text, with the first rule they broke, to ``quarantine_<source>__<entity>/<batch_id>.parquet``. Nothing is dropped:
raw rows = staged rows + quarantined rows, and the counts are returned for the ledger to check.

Row rules (names as stored in ``_rule``):
- ``required``: a required value is empty (``required_if_received`` for Ngày tiếp nhận outside status 1 and 3)
- ``invalid_date``: a date that cannot be parsed or is impossible (31/02)
- ``invalid_number``: a count or an amount that is not a number
- ``invalid_bool``: a yes/no cell that is neither (Có/Không, x/empty, 1/0, TRUE/FALSE)
- ``unknown_code``: a code outside its list (status 11) or an unknown label
- ``out_of_range``: below the contract's minimum (negative fee, zero copies)
- ``unknown_agency``: an agency code that agencies.csv does not list (kpis.md settled detail 16)
- ``invalid_json``: a nested list of the national sync shape that cannot be read
- ``malformed_json``: a JSONL line that is no JSON object (cut in half): the reader keeps its text in ``_extra``
- ``control_character``: a value holds a C0 control character other than tab, CR and LF (NUL, BEL, ESC, ...):
  the export is damaged there (a NUL or ESC split form 06 rows); checked first, on every column the format maps

Modules, in the order a batch meets them: ``text`` (the raw columns, trimmed in Arrow, the control-character
flag), ``formats`` (what dates, yes/no, amounts mean: the SQL macros; the keyed pseudonym), ``columns`` (each
column's typing and checks), ``rules`` (the staging SQL: rules in order, staged and quarantined rows), ``stage``
(one batch, whole or chunk by chunk), ``writers`` (the batch files). Every name below is importable from
``transforms.staging``.
"""

from transforms.staging.columns import _code_expr, _Col, _column_sql, _sync_dossier_overrides, _v
from transforms.staging.formats import NO, TS_FORMATS, YES, _lit, _q, hmac_sha256_sql, setup_connection
from transforms.staging.rules import LINEAGE, STG_CONSTANT, STG_LINEAGE, _t, staging_select
from transforms.staging.stage import ChunkStager, StageResult, stage_raw_file, x_marked_columns
from transforms.staging.text import (
    ALLOWED_C0,
    CONTROL_CHARS,
    HAS_CONTROL,
    TRIMMED,
    ZS_CHARS,
    control_columns,
    ingest_memory_pool,
    mark_control_characters,
    raw_columns,
    trim_for_staging,
)
from transforms.staging.writers import INGEST_COMPRESSION, batch_writer, raw_writer, staged_writer

__all__ = [
    "ALLOWED_C0", "CONTROL_CHARS", "HAS_CONTROL", "INGEST_COMPRESSION", "LINEAGE", "NO", "STG_CONSTANT",
    "STG_LINEAGE", "TRIMMED", "TS_FORMATS", "YES", "ZS_CHARS", "ChunkStager", "StageResult", "_Col", "_code_expr",
    "_column_sql", "_lit", "_q", "_sync_dossier_overrides", "_t", "_v", "batch_writer", "control_columns",
    "hmac_sha256_sql", "ingest_memory_pool", "mark_control_characters", "raw_columns", "raw_writer",
    "setup_connection", "stage_raw_file", "staged_writer", "staging_select", "trim_for_staging",
    "x_marked_columns",
]
