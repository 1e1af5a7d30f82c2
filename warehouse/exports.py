"""Files a person opens (CSV for Excel, Parquet for analysts), written whole or not at all, and safe to open.

A spreadsheet program runs a cell whose text starts with ``=``, ``+``, ``-`` or ``@`` as a formula (and some also
after a leading tab or carriage return): an export value such as ``=HYPERLINK("http://...")`` or ``@SUM(A1)``
in a field name would run when an official opens the file (CSV injection). Every text column of what the
project writes for people is *neutralised*: such a value gets a leading apostrophe, which spreadsheet programs
show as text and do not evaluate. Numbers stay numbers (a negative count is not text and is left alone).
"""

from __future__ import annotations

import re
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


def write_table(table: pa.Table, out: Path, headers: dict[str, str] | None = None) -> None:
    """Write ``table`` to ``out`` (.csv: UTF-8 with a BOM, formulas neutralised; .xlsx: one sheet, formulas
    neutralised; .parquet), whole or not at all. ``headers`` renames columns (e.g. Vietnamese labels) in .csv and
    .xlsx; Parquet keeps the column names.

    Raises ValueError for any other extension, or for more rows than a sheet holds.
    """
    import duckdb

    out = Path(out)
    suffix = out.suffix.lower()
    fmt = {".csv": "csv, HEADER true", ".parquet": "parquet", ".xlsx": "xlsx"}.get(suffix)
    if fmt is None:
        raise ValueError(f"--out must end in .csv, .xlsx or .parquet, got {out.name}")
    if suffix in (".csv", ".xlsx"):
        table = neutralise_formulas(table)
        if headers:
            table = table.rename_columns([headers.get(c, c) for c in table.column_names])
    if suffix == ".xlsx":
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        write_xlsx(table, tmp)
        tmp.replace(out)
        return
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


# ---------------------------------------------------------------------------------------------------------------
# XLSX (xlsxwriter): what analysts open in Excel; also the ground of the report workbooks (transforms/reports)
# ---------------------------------------------------------------------------------------------------------------
# text is written as text: xlsxwriter would otherwise turn "=..." into a formula, "http..." into a link and "1e5"
# into a number
XLSX_OPTIONS = {"strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False,
                "nan_inf_to_errors": True, "remove_timezone": True}
XLSX_MAX_ROWS = 1_048_576  # rows of a sheet, the header included
_FORMULA_RE = re.compile(FORMULA_START)


def neutral_text(value: str) -> str:
    """One text value neutralised as ``neutralise_text`` does for a column."""
    return NEUTRAL_PREFIX + value if _FORMULA_RE.match(value) else value


def column_width(header: str, values, lo: int = 6, hi: int = 60) -> float:
    """A width (characters) that fits the header and the first values of a column."""
    longest = max((len(str(v)) for v in values if v is not None), default=0)
    head = max((len(w) for w in str(header).split("\n")), default=0)
    return float(min(hi, max(lo, longest + 2, head + 2)))


def write_xlsx(table: pa.Table, path: Path, sheet: str = "Kết quả") -> None:
    """``table`` as one sheet: a bold frozen header with a filter, dates as dd/mm/yyyy, numbers as numbers,
    nested values as text. Text is written as it is: neutralise it first (``neutralise_formulas``)."""
    import xlsxwriter

    if table.num_rows + 1 > XLSX_MAX_ROWS:
        raise ValueError(f"{table.num_rows} rows do not fit in an Excel sheet ({XLSX_MAX_ROWS - 1} at most): "
                         f"narrow the query or write .csv or .parquet")
    wb = xlsxwriter.Workbook(str(path), {**XLSX_OPTIONS, "constant_memory": True})
    try:
        ws = wb.add_worksheet(sheet)
        head = wb.add_format({"bold": True, "text_wrap": True, "valign": "top", "bg_color": "#DDEBF7",
                              "border": 1})
        fmts = {"date": wb.add_format({"num_format": "dd/mm/yyyy"}),
                "ts": wb.add_format({"num_format": "dd/mm/yyyy hh:mm"}),
                "int": wb.add_format({"num_format": "#,##0"}), "float": wb.add_format({"num_format": "#,##0.####"})}
        kinds = [_xlsx_kind(f.type) for f in table.schema]
        sample = table.slice(0, 1000).to_pylist()
        for j, name in enumerate(table.column_names):
            ws.write_string(0, j, name, head)
            ws.set_column(j, j, column_width(name, (_shown(r[name], kinds[j]) for r in sample)), fmts.get(kinds[j]))
        ws.freeze_panes(1, 0)
        if table.num_columns:
            ws.autofilter(0, 0, max(table.num_rows, 1), table.num_columns - 1)
        # column by column: each column's values made plain once (dates as Excel day numbers in a date format),
        # one typed writer per column; then row by row, as constant_memory mode writes
        writers = [(getattr(ws, _WRITER[k]), fmts.get(k)) for k in kinds]
        r = 1
        for batch in table.to_batches(max_chunksize=10_000):
            cols = [_cell_values(batch.column(j), kinds[j]) for j in range(batch.num_columns)]
            for i in range(batch.num_rows):
                for j, (write, fmt) in enumerate(writers):
                    v = cols[j][i]
                    if v is not None:
                        write(r, j, v, fmt)
                r += 1
    finally:
        wb.close()


_EXCEL_EPOCH_DAYS = 25569.0  # 1970-01-01 as an Excel day number (1900 date system)
_WRITER = {"date": "write_number", "ts": "write_number", "int": "write_number", "float": "write_number",
           "bool": "write_boolean", "text": "write_string", "other": "write_string"}


def _xlsx_kind(t: pa.DataType) -> str:
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "ts"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        return "text"
    return "other"


def _cell_values(col: pa.Array, kind: str) -> list:
    """A column's values as its cell writer takes them: dates and times as Excel day numbers (wall-clock time),
    text as str, lists and structs as their text, neutralised."""
    if kind == "date":
        days = pc.cast(pc.cast(col, pa.date32()), pa.int32())
        return pc.add(pc.cast(days, pa.float64()), _EXCEL_EPOCH_DAYS).to_pylist()
    if kind == "ts":
        if col.type.tz is not None:  # shown as the wall-clock time of its zone
            col = pc.local_timestamp(col)
        us = pc.cast(pc.cast(col, pa.timestamp("us")), pa.int64())
        return pc.add(pc.divide(pc.cast(us, pa.float64()), 86_400e6), _EXCEL_EPOCH_DAYS).to_pylist()
    if kind == "float":
        return pc.cast(col, pa.float64()).to_pylist()
    if kind == "text" and pa.types.is_dictionary(col.type):
        return pc.cast(col, pa.string()).to_pylist()
    if kind == "other":
        return [None if v is None else neutral_text(str(v)) for v in col.to_pylist()]
    return col.to_pylist()


def _shown(v, kind: str) -> str:
    if v is None:
        return ""
    return {"date": "00/00/0000", "ts": "00/00/0000 00:00"}.get(kind) or str(v)
