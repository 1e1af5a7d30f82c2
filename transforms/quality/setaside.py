"""Row problems hold rows: the rows of a staged batch that break a failed critical row rule are set aside.

The gate (and ``tthc release``) calls ``set_aside`` before any verdict: every row breaking a critical ROW rule
that failed on the batch (not null, code in its list, pattern, minimum, date order above its tolerance, ...) is
moved out of the staged file into the batch's quarantine file, exactly as staging quarantines: the row's raw
text (taken from ``raw_<source>__<entity>/<batch_id>.parquet`` by ``_source_row``) with ``_rule`` (the gate's
rule name), ``_column`` (the column as the file spells it), ``_value`` (its raw text) and ``_message``. A row
breaking several is set aside once, under the first rule of the suite it breaks.

Versions repeated inside one file (same key, ``updated_at`` included, so the same version twice, usually with
a different status): the LATER row of the file (higher ``_source_row``) is kept and the earlier ones are set aside
with rule ``duplicate_version``, as core keeps the later one read across batches. This runs on the rows the other
rules left, so a bad later row never takes a good earlier one with it.

Both files are rewritten atomically (quarantine first, then staging); a second run over the same batch finds
nothing more to move and leaves the quarantine as it is (rows already there are replaced, never repeated), so an
interruption between the two writes is harmless. raw rows = staged + quarantined is checked before anything is
published.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from transforms.contracts import code_lists, contract, quarantine_table, raw_table, source_header
from transforms.quality.rules import UNIQUE, lit, q
from warehouse import store

DUPLICATE_RULE = "duplicate_version"


class RawRowsMissing(RuntimeError):
    """The batch's raw file is gone: its rows cannot be quarantined with their text."""


@dataclass
class SetAside:
    moved: int = 0                                        # rows this call moved to quarantine
    by_rule: dict[str, int] = field(default_factory=dict)  # suite rule name (unique_version: its name) -> rows
    columns: dict[str, str] = field(default_factory=dict)  # suite rule name -> the column as the file spells it
    lines: dict[str, list[int]] = field(default_factory=dict)  # suite rule name -> first lines (_source_line)
    rows_raw: int = 0
    rows_staged: int = 0
    rows_quarantined: int = 0

    def as_dict(self) -> dict:
        return {"moved": self.moved, "by_rule": dict(self.by_rule), "rows_raw": self.rows_raw,
                "rows_staged": self.rows_staged, "rows_quarantined": self.rows_quarantined}


def place(fname: str, lines: list[int], total: int) -> str:
    """Where a person finds ``total`` rows whose first ``_source_line`` are ``lines``: 'line 702', 'lines 5, 9,
    14, ...' (at most three), 'row 12' of a workbook's sheet."""
    if not lines:
        return ""
    word = "row" if fname.lower().endswith((".xlsx", ".xlsm", ".xls")) else "line"
    more = ", ..." if total > min(3, len(lines)) else ""
    return f"{word}{'s' if total > 1 else ''} {', '.join(str(x) for x in lines[:3])}{more}"


def split_table(table: str) -> tuple[str, str]:
    """``stg_<source>__<entity>`` -> (source, entity)."""
    source, _, entity = table.removeprefix("stg_").partition("__")
    return source, entity


def paths(warehouse: Path, table: str, batch_id: str) -> tuple[Path, Path]:
    """(raw file, quarantine file) of a staged batch."""
    source, entity = split_table(table)
    return (store.table_dir(warehouse, raw_table(source, entity)) / f"{batch_id}.parquet",
            store.table_dir(warehouse, quarantine_table(source, entity)) / f"{batch_id}.parquet")


def _rows(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows if path.exists() else 0


def file_counts(warehouse: Path, table: str, batch_id: str, staged: Path) -> tuple[int | None, int, int]:
    """(raw rows or None without a raw file, staged rows, quarantined rows) from the files' metadata."""
    raw, quar = paths(warehouse, table, batch_id)
    return (_rows(raw) if raw.exists() else None), _rows(staged), _rows(quar)


def critical_row_failures(results: list[dict]) -> list[dict]:
    """The evaluated expectations (``rules.evaluate``) whose breaking rows are to be set aside: critical row rules
    that failed (a rule with a tolerance, ``mostly``, fails only above it)."""
    return [r for r in results if not r["success"] and r["exp"]["meta"]["severity"] == "critical"
            and ("bad_sql" in r or "unique_sql" in r)]


def _column(exp: dict) -> str | None:
    k = exp["kwargs"]
    if "column" in k:
        return k["column"]
    if exp["meta"].get("columns"):
        return exp["meta"]["columns"][0]
    if k.get("column_list"):
        return k["column_list"][-1]
    return k.get("column_A")


def _message_sql(exp: dict, table: str, header, raw_cols: set[str]) -> str:
    """``_message`` of a row set aside by ``exp`` (SQL over the raw row ``r``), in staging's words."""
    t, k = exp["type"], exp["kwargs"]
    col = _column(exp)
    if t == "expect_column_values_to_not_be_null":
        return lit("is empty but required" + (f" (unless {k['row_condition']})" if "row_condition" in k else ""))
    if t == "expect_column_values_to_be_in_set":
        codes = contract(table).column(col).codes if col in contract(table).names else None
        listed = ", ".join(str(c) for c in list(code_lists()[codes] if codes else k.get("value_set", []))[:20])
        return lit(f"is not a code of the list '{codes or col}' ({listed})")
    if t == "expect_column_values_to_match_regex":
        return lit(f"does not have the expected form ({k['regex']})")
    if t == "expect_column_values_to_be_between":
        parts = [f"below the minimum {k['min_value']}" if k.get("min_value") is not None else "",
                 f"above the maximum {k['max_value']}" if k.get("max_value") is not None else ""]
        return lit("is " + " or ".join(p for p in parts if p))
    cols = exp["meta"].get("columns") or [k.get("column_A"), k.get("column_B")]
    if len(cols) == 2 and all(cols):
        other = cols[1]
        text = f"CAST(r.{q(other)} AS VARCHAR)" if other in raw_cols else "NULL"
        return (f"{lit(f'is before {header(other)} (')} || coalesce({text}, '?') || "
                f"{lit(') (a date without a time counts as that whole day)')}")
    return lit(f"breaks rule {exp['meta']['rule']}")


def set_aside(con, warehouse: Path, table: str, batch_id: str, staged: Path, failures: list[dict]) -> SetAside:
    """Move the rows of ``staged`` (the batch's staged file, in staging or held) that break ``failures``
    (``critical_row_failures`` of that very file) to the batch's quarantine file; returns what moved and the files'
    counts after. Raises ``RawRowsMissing`` when there are rows to move and no raw file to take them from."""
    warehouse, staged = Path(warehouse), Path(staged)
    raw_path, q_path = paths(warehouse, table, batch_id)
    source, entity = split_table(table)
    src = f"read_parquet({lit(str(staged))})"
    stg_cols = {f.name for f in pq.read_schema(staged)}
    fmt = (con.execute(f"SELECT any_value(_format) FROM {src}").fetchone()[0] if "_format" in stg_cols else None)
    fmt = fmt or "flat_export"

    def header(canonical: str) -> str:
        return source_header(fmt, entity, canonical)

    rules = [r for r in failures if "bad_sql" in r]
    dup = next((r for r in failures if "unique_sql" in r and r["exp"]["type"] in UNIQUE), None)
    names = [r["exp"]["meta"]["rule"] for r in rules] + ([DUPLICATE_RULE] if dup else [])
    columns = [_column(r["exp"]) for r in rules]
    if dup:
        columns.append(_column(dup["exp"]))
    when = " ".join(f"WHEN {r['bad_sql']} THEN {i}" for i, r in enumerate(rules, 1))
    rule_idx = f"CASE {when} END" if when else "CAST(NULL AS INTEGER)"
    typed = "CASE __i " + " ".join(f"WHEN {i} THEN CAST({q(c)} AS VARCHAR)"
                                   for i, c in enumerate(columns, 1) if c in stg_cols) + " END" \
        if any(c in stg_cols for c in columns) else "CAST(NULL AS VARCHAR)"
    parts = [f"SELECT _source_row, __i, CAST(NULL AS BIGINT) AS __kept, {typed} AS __typed FROM s "
             f"WHERE __i IS NOT NULL"]
    if dup:
        kc, n_dup, c = dup["unique_sql"], len(columns), columns[-1]
        dup_typed = f"CAST({q(c)} AS VARCHAR)" if c in stg_cols else "CAST(NULL AS VARCHAR)"
        parts.append(f"SELECT _source_row, {n_dup} AS __i, __kept, {dup_typed} AS __typed "
                     f"FROM (SELECT *, max(_source_row) OVER (PARTITION BY {kc}) AS __kept FROM s "
                     f"WHERE __i IS NULL) WHERE _source_row < __kept")
    con.execute(f"CREATE OR REPLACE TEMP TABLE __moved AS WITH s AS (SELECT *, {rule_idx} AS __i FROM {src}) "
                + " UNION ALL ".join(parts))
    moved = con.execute("SELECT count(*) FROM __moved").fetchone()[0]
    out = SetAside()
    if moved:
        if not raw_path.exists():
            raise RawRowsMissing(f"{table}, batch {batch_id}: {moved:,} rows break a critical rule but the raw file "
                                 f"{raw_path.name} is missing, so they cannot be set aside with their text")
        _check_balance(con, table, batch_id, raw_path, q_path, staged, moved)
        counts = dict(con.execute("SELECT __i, count(*) FROM __moved GROUP BY 1").fetchall())
        suite_names = [r["exp"]["meta"]["rule"] for r in rules] + ([dup["exp"]["meta"]["rule"]] if dup else [])
        out.by_rule = {suite_names[i - 1]: int(n) for i, n in sorted(counts.items())}
        out.columns = {suite_names[i - 1]: header(columns[i - 1]) for i in sorted(counts)}
        _write_quarantine(con, warehouse, table, batch_id, raw_path, q_path, names, columns, rules, dup, header)
        by_name = dict(zip(names, suite_names, strict=True))
        out.lines = {by_name[r]: [int(x) for x in ls if x is not None] for r, ls in con.execute(
            f"SELECT _rule, list(_source_line ORDER BY _source_row)[1:5] FROM read_parquet({lit(str(q_path))}) "
            f"WHERE _source_row IN (SELECT _source_row FROM __moved) GROUP BY 1").fetchall() if r in by_name}
        _rewrite_staged(con, staged)
        out.moved = int(moved)
    con.execute("DROP TABLE IF EXISTS __moved")
    raw_n, out.rows_staged, out.rows_quarantined = file_counts(warehouse, table, batch_id, staged)
    out.rows_raw = raw_n if raw_n is not None else out.rows_staged + out.rows_quarantined
    return out


def _check_balance(con, table, batch_id, raw_path, q_path, staged, moved) -> None:
    """raw = staged + quarantined must hold once the rows have moved; checked before anything is written."""
    again = con.execute(f"SELECT count(*) FROM read_parquet({lit(str(q_path))}) WHERE _source_row IN "
                        f"(SELECT _source_row FROM __moved)").fetchone()[0] if q_path.exists() else 0
    raw, stg, quar = _rows(raw_path), _rows(staged) - moved, _rows(q_path) - again + moved
    if raw != stg + quar:
        raise ValueError(f"{table}, batch {batch_id}: rows do not balance (raw {raw:,}, staged {stg:,} + "
                         f"quarantined {quar:,} once {moved:,} are set aside); nothing was moved")


def _write_quarantine(con, warehouse, table, batch_id, raw_path, q_path, names, columns, rules, dup, header):
    source, entity = split_table(table)
    raw_cols = {f.name for f in pq.read_schema(raw_path)}
    messages = [_message_sql(r["exp"], table, header, raw_cols) for r in rules]
    if dup:
        key = ", ".join(header(c) for c in dup["exp"]["kwargs"].get("column_list") or [dup["exp"]["kwargs"]["column"]])
        messages.append(f"{lit(f'repeats the version ({key}) of data row ')} || m.__kept || "
                        f"{lit(', later in the file, which is kept')}")
    value = ("CASE m.__i " + " ".join(f"WHEN {i} THEN CAST(r.{q(c)} AS VARCHAR)" for i, c in enumerate(columns, 1)
                                      if c in raw_cols) + " END") if any(c in raw_cols for c in columns) else "NULL"
    new = (f"SELECT r.*, {lit_list(names)}[m.__i] AS _rule, {lit_list([header(c) for c in columns])}[m.__i] AS _column, "
           f"coalesce({value}, m.__typed) AS _value, CASE m.__i "
           + " ".join(f"WHEN {i} THEN {msg}" for i, msg in enumerate(messages, 1))
           + f" END AS _message FROM read_parquet({lit(str(raw_path))}) r JOIN __moved m ON r._source_row = m._source_row")
    if q_path.exists():  # staging's rows (and any this batch had set aside before: replaced, never repeated)
        new = (f"SELECT * FROM read_parquet({lit(str(q_path))}) WHERE _source_row NOT IN "
               f"(SELECT _source_row FROM __moved) UNION ALL BY NAME {new}")
    store.copy_query_to_table(con, f"SELECT * FROM ({new}) ORDER BY _source_row", warehouse,
                              quarantine_table(source, entity), name=batch_id)


def lit_list(items: list[str]) -> str:
    return "[" + ", ".join(lit(x) for x in items) + "]"


def _rewrite_staged(con, staged: Path) -> None:
    """The staged file without the moved rows, written aside and swapped in (schema, codec and encodings as
    staging writes it)."""
    import pyarrow.compute as pc

    from transforms.staging import staged_writer

    gone = con.sql("SELECT _source_row FROM __moved").to_arrow_table().column(0).combine_chunks()
    pf = pq.ParquetFile(staged)
    source, entity = split_table(staged.parent.name)
    w = staged_writer(staged.parent.parent, source, entity, staged.stem, pf.schema_arrow)
    try:
        for b in pf.iter_batches():
            keep = pc.invert(pc.is_in(b.column("_source_row"), value_set=gone.cast(b.schema.field("_source_row").type)))
            w.write(b.filter(keep))
    except BaseException:
        w.abort()
        raise
    w.close()


def apply_row_rules(warehouse: Path, table: str, batch_id: str, staged: Path) -> SetAside:
    """The suite's row rules on ``staged`` (a held batch being released, say): the rows breaking a critical one
    are set aside as the gate would; returns what moved and the counts after."""
    import duckdb

    from transforms.quality import rules

    con = duckdb.connect(config={"threads": 2, "memory_limit": "1GB", "preserve_insertion_order": False})
    try:
        results, _profile = rules.evaluate(con, Path(staged), table, Path(warehouse),
                                           rules.load_suite(table)["meta"]["key"][0])
        return set_aside(con, warehouse, table, batch_id, staged, critical_row_failures(results))
    finally:
        con.close()
