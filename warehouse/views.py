"""DuckDB views for analysts: one view per table folder, named after the folder.

    from warehouse.views import connect
    con = connect("warehouse_data")
    con.sql("SELECT * FROM mart_kpi__agency_period WHERE agency_code = 'H19.26293'").show()

Views read ``<table>/[!.]*.parquet`` (files being written are dot-named and never read), so a rebuilt table is
seen whole, old or new. raw_ and quarantine_ tables hold personal data: they get views only with
``include_private=True``.
"""

from __future__ import annotations

from pathlib import Path

from warehouse.store import is_private, list_tables, table_glob


def connect(warehouse: Path, *, include_private: bool = False, database: str = ":memory:",
            memory_limit: str = "1GB"):
    """A DuckDB connection with a view for every table of the warehouse."""
    import duckdb

    con = duckdb.connect(database)
    con.execute(f"SET memory_limit='{memory_limit}'")
    for table in list_tables(Path(warehouse)):
        if is_private(table) and not include_private:
            continue
        union = ", union_by_name=true" if not table.startswith(("core_", "mart_")) else ""
        con.execute(f"CREATE OR REPLACE VIEW \"{table}\" AS "
                    f"SELECT * FROM read_parquet('{table_glob(Path(warehouse), table)}'{union})")
    return con
