"""The ledger's tables (SQLAlchemy Core): runs, files, batches, watermarks, data-quality results. Created on first
use by ``warehouse.ledger.Ledger``; columns added since are added in place (``Ledger._add_missing_columns``)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

runs = sa.Table(
    "runs", metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("flow_run_id", sa.String(64)),
    sa.Column("started_at", sa.DateTime),
    sa.Column("finished_at", sa.DateTime),
    sa.Column("status", sa.String(16)),  # running | completed | failed
    sa.Column("as_of", sa.Date),
    sa.Column("inbox", sa.Text),
    sa.Column("summary_json", sa.Text),
)

files = sa.Table(
    "files", metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("size_bytes", sa.BigInteger),
    sa.Column("first_path", sa.Text),
    sa.Column("source", sa.String(32)),
    sa.Column("entity", sa.String(32)),
    sa.Column("file_kind", sa.String(8)),
    sa.Column("first_seen_at", sa.DateTime),
)

batches = sa.Table(
    "batches", metadata,
    sa.Column("batch_id", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(64), index=True),
    sa.Column("sha256", sa.String(64), index=True),
    sa.Column("path", sa.Text),
    sa.Column("size_bytes", sa.BigInteger),
    sa.Column("mtime_ns", sa.BigInteger),  # with path and size: a file seen before is not hashed again
    sa.Column("source", sa.String(32)),
    sa.Column("entity", sa.String(32)),
    sa.Column("format", sa.String(32)),
    sa.Column("file_kind", sa.String(8)),
    sa.Column("encoding", sa.String(40)),
    sa.Column("rows_raw", sa.BigInteger),
    sa.Column("rows_staged", sa.BigInteger),
    sa.Column("rows_quarantined", sa.BigInteger),
    sa.Column("unknown_columns", sa.Text),
    sa.Column("notes", sa.Text),  # what the reader saw and did not take as data (footer, blank rows, other sheets)
    # running -> staged -> (gate) passed | gate_failed ; rejected (file unreadable) ; failed (crash or error) ;
    # duplicate (its content turned out, once hashed, to be a batch's already taken; its files removed) ;
    # skipped (an inbox entry only listed, not read: hidden, temporary, not data; the reason in error)
    sa.Column("status", sa.String(16), index=True),
    sa.Column("error", sa.Text),
    sa.Column("started_at", sa.DateTime),
    sa.Column("finished_at", sa.DateTime),
    sa.Column("read_seconds", sa.Float),
    sa.Column("stage_seconds", sa.Float),
    sa.Column("min_updated_at", sa.DateTime),
    sa.Column("max_updated_at", sa.DateTime),
)

watermarks = sa.Table(
    "watermarks", metadata,
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("entity", sa.String(32), primary_key=True),
    sa.Column("watermark_at", sa.DateTime),
    sa.Column("committed_at", sa.DateTime),
    sa.Column("batch_id", sa.String(64)),
)

dq_results = sa.Table(
    "dq_results", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), index=True),
    sa.Column("batch_id", sa.String(64), index=True),
    sa.Column("table_name", sa.String(80)),
    sa.Column("source", sa.String(32)),
    sa.Column("entity", sa.String(32)),
    sa.Column("agency_code", sa.String(40)),
    sa.Column("check_name", sa.String(120)),
    sa.Column("expectation_type", sa.String(120)),
    sa.Column("severity", sa.String(16)),
    sa.Column("success", sa.Boolean),
    sa.Column("element_count", sa.BigInteger),
    sa.Column("unexpected_count", sa.BigInteger),
    sa.Column("unexpected_percent", sa.Float),
    sa.Column("examples_json", sa.Text),
    sa.Column("observed_json", sa.Text),
    sa.Column("checked_at", sa.DateTime),
)
