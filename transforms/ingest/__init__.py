"""From an inbox file (or pulled records) to raw + staging + quarantine, with the ledger kept honest.

Prefect-free: the nightly flow wraps these functions in tasks. One batch per file; the same content (SHA-256)
is ingested once whatever its name; inbox files are only read, never changed or moved.

Crash safety: a batch is recorded as ``running`` before any file is written and ``staged`` only after its raw,
staging and quarantine files are all in place. Each file is published atomically (written aside, renamed). A
run that finds ``running`` batches left by a killed process deletes their files and ingests the input again.

Modules, in the order a night meets them: ``discovery`` (every inbox entry's verdict; agencies.csv), ``per_file``
(one file as one batch), ``raw`` (raw + staging + quarantine in one pass), ``outcomes`` (what became of a file, its
ledger rows, the run's summary), ``batches`` (crash recovery, held and released batches). Every name below is
importable from ``transforms.ingest``.
"""

from transforms.ingest.batches import HELD_DIR, ReleaseRefused, held_batches, hold_batch, recover, release_batch
from transforms.ingest.discovery import (
    AGENCY_COLUMNS,
    AGENCY_LEVELS,
    KINDS,
    LAYOUT,
    NOT_DATA_SUFFIXES,
    ROOT_FILES,
    SYSTEM_FILES,
    TEMP_SUFFIXES,
    InboxFile,
    discover,
    load_agencies,
    shown,
)
from transforms.ingest.outcomes import (
    MACHINE_ERRNOS,
    READING_RULES,
    FileOutcome,
    input_error,
    new_batch_id,
    reading_rules_changed_at,
    summarize,
)
from transforms.ingest.per_file import ingest_file, sha256_file
from transforms.ingest.raw import ROW_GROUP_ROWS, ingest_raw, raw_schema_with_lineage

__all__ = [
    "AGENCY_COLUMNS", "AGENCY_LEVELS", "HELD_DIR", "KINDS", "LAYOUT", "MACHINE_ERRNOS", "NOT_DATA_SUFFIXES",
    "READING_RULES", "ROOT_FILES", "ROW_GROUP_ROWS", "SYSTEM_FILES", "TEMP_SUFFIXES", "FileOutcome", "InboxFile",
    "ReleaseRefused", "discover", "held_batches", "hold_batch", "ingest_file", "ingest_raw", "input_error",
    "load_agencies", "new_batch_id", "raw_schema_with_lineage", "reading_rules_changed_at", "recover",
    "release_batch", "sha256_file", "shown", "summarize",
]
