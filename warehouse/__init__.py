"""Storage and access: Parquet layout with atomic writes, the ledger, DuckDB views."""
