"""Files a person opens (CSV for Excel, Parquet for analysts), written whole or not at all, and safe to open.

A spreadsheet program runs a cell whose text starts with ``=``, ``+``, ``-`` or ``@`` as a formula (and some also
after a leading tab or carriage return): an export value such as ``=HYPERLINK("http://...")`` or ``@SUM(A1)``
in a field name would run when an official opens the file (CSV injection). Every text column of what the
project writes for people is *neutralised*: such a value gets a leading apostrophe, which spreadsheet programs
show as text and do not evaluate. Numbers stay numbers (a negative count is not text and is left alone).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

# what makes a spreadsheet program read a cell's text as a formula
FORMULA_START = r"^[=+\-@\t\r]"
NEUTRAL_PREFIX = "'"


def neutralise_text(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A string array with every formula-like value prefixed by an apostrophe (nulls stay null)."""
    risky = pc.match_substring_regex(values, FORMULA_START)
    if not pc.any(risky).as_py():
        return values
    return pc.if_else(risky, pc.binary_join_element_wise(NEUTRAL_PREFIX, values, ""), values)


def neutralise_formulas(table: pa.Table) -> pa.Table:
    """``table`` with every text column neutralised (see the module's text); other columns untouched."""
    for i, f in enumerate(table.schema):
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
            col = neutralise_text(table.column(i))
            if col is not table.column(i):
                table = table.set_column(i, f, col)
        elif pa.types.is_dictionary(f.type) and pa.types.is_string(f.type.value_type):
            table = table.set_column(i, pa.field(f.name, pa.string()),
                                     neutralise_text(table.column(i).cast(pa.string())))
    return table


def write_table(table: pa.Table, out: Path) -> None:
    """Write ``table`` to ``out`` (.csv: UTF-8 with a BOM, formulas neutralised; .parquet), whole or not at all.

    Raises ValueError for any other extension.
    """
    import duckdb

    out = Path(out)
    suffix = out.suffix.lower()
    fmt = {".csv": "csv, HEADER true", ".parquet": "parquet"}.get(suffix)
    if fmt is None:
        raise ValueError(f"--out must end in .csv or .parquet, got {out.name}")
    if suffix == ".csv":
        table = neutralise_formulas(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    try:
        con.register("result_rows", table)  # DuckDB writes nested columns (lists) to CSV as text; pyarrow cannot
        tmp = out.with_name(f".{out.name}.tmp")
        con.execute(f"COPY result_rows TO '{_sql_path(tmp)}' (FORMAT {fmt})")
    finally:
        con.close()
    if suffix == ".csv":  # UTF-8 with a BOM: Excel, what officials open a CSV with, then shows Vietnamese right
        bom = out.with_name(f".{out.name}.bom.tmp")
        with open(tmp, "rb") as src, open(bom, "wb") as dst:
            dst.write(b"\xef\xbb\xbf")
            shutil.copyfileobj(src, dst, 1 << 20)
        tmp.unlink()
        tmp = bom
    tmp.replace(out)


def _sql_path(p: Path) -> str:
    return str(p).replace("'", "''")
