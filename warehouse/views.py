"""DuckDB views for analysts: one view per table folder, named after the folder.

    from warehouse.views import connect
    con = connect("warehouse_data")
    con.sql("SELECT * FROM mart_kpi__agency_period WHERE agency_code = 'H19.26293'").show()

Views read ``<table>/[!.]*.parquet`` (files being written are dot-named and never read), so a rebuilt table is
seen whole, old or new. The KPI marts are published together as one generation (``_marts/current``, see
warehouse/store.py): a connection reads them from the generation published when it was opened, resolved once, so
its queries never mix two nights' marts (open a new connection to see a later publish). raw_ and quarantine_ tables
hold personal data: they get views only with ``include_private=True``.
"""

from __future__ import annotations

from pathlib import Path

from warehouse.store import PARQUET_GLOB, is_private

from warehouse.generations import published_dirs


def connect(warehouse: Path, *, include_private: bool = False, database: str = ":memory:",
            memory_limit: str = "1GB"):
    """A DuckDB connection with a view for every table of the warehouse."""
    import duckdb

    con = duckdb.connect(database)
    con.execute(f"SET memory_limit='{memory_limit}'")
    for table, folder in published_dirs(Path(warehouse)).items():
        if is_private(table) and not include_private:
            continue
        union = ", union_by_name=true" if not table.startswith(("core_", "mart_")) else ""
        glob = str(folder / PARQUET_GLOB).replace("'", "''")
        con.execute(f"CREATE OR REPLACE VIEW \"{table}\" AS SELECT * FROM read_parquet('{glob}'{union})")
    return con
