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
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from transforms.contracts import (
    ENTITY_SOURCE,
    FORMATS,
    Column,
    code_is_numeric,
    code_lookup,
    contract,
    mapping,
    quarantine_table,
    source_header,
    stg_table,
)
from transforms.readers.json_reader import MALFORMED_KEY  # the text of a line that is no JSON object, in _extra
from warehouse import store

LINEAGE = ["_batch_id", "_source_file", "_source_row", "_source_line", "_ingested_at", "_format"]
STG_LINEAGE = ["_batch_id", "_source_file", "_source_row", "_ingested_at", "_format"]
STG_CONSTANT = ["_batch_id", "_source_file", "_ingested_at", "_format"]  # one value per batch

# Date and time formats of the exports, most common first (sources.md 1a/1b). Anything with an offset or a 'Z'
# is ISO 8601 and converted to local time; a bare 5-digit number is an Excel serial date.
TS_FORMATS = [
    "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y", "%Y%m%d%H%M%S", "%Y%m%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d",
    "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S.%f",
    "%d-%m-%Y %H:%M:%S", "%d-%m-%Y",
]
YES = ["có", "co", "x", "1", "true", "yes", "y", "đúng", "1.0"]
NO = ["không", "khong", "0", "false", "no", "n", "sai", "0.0"]


# What DuckDB's trim() removes from both ends: exactly the Unicode space separators (category Zs); not tab or
# line breaks. trim_for_staging does the same in Arrow (measured: ~3x cheaper than trimming in the SQL).
ZS_CHARS = " \u00a0\u1680" + "".join(chr(c) for c in range(0x2000, 0x200B)) + "\u202f\u205f\u3000"
TRIMMED = "__s_"


_POOL = None


def ingest_memory_pool():
    """The Arrow memory pool of the ingest's big, short-lived buffers (CSV blocks, trimmed text, Parquet pages).

    jemalloc that keeps freed pages for 10 s: with the default pool the 1M-row ingest spent ~0.8 CPU-s more,
    much of it zeroing pages the allocator had just handed back to the system. Falls back to the default pool
    when pyarrow was built without jemalloc. Only the ingest uses it, so other work keeps the default.
    """
    global _POOL
    if _POOL is None:
        import pyarrow as pa

        try:
            pool = pa.jemalloc_memory_pool()
            pa.jemalloc_set_decay_ms(10_000)
        except (NotImplementedError, pa.ArrowNotImplementedError):
            pool = pa.default_memory_pool()
        _POOL = pool
    return _POOL


def trim_for_staging(table, columns: list[str]):
    """``table`` plus ``__s_<col>``: each of ``columns`` trimmed of Zs characters (what ``pretrimmed`` reads)."""
    import pyarrow.compute as pc

    pool = ingest_memory_pool()
    for c in columns:
        table = table.append_column(TRIMMED + c, pc.utf8_trim(table.column(c), ZS_CHARS, memory_pool=pool))
    return table


# C0 control characters except tab, line feed and carriage return (RE2 syntax, for DuckDB and Arrow alike)
CONTROL_CHARS = r"[\x00-\x08\x0B\x0C\x0E-\x1F]"
HAS_CONTROL = "__cc"


def control_columns(entity: str, fmt: str) -> list[str]:
    """The raw columns the format maps for the entity: the ones a control character is looked for in."""
    mapped = mapping(fmt)["entities"].get(entity, {})
    return [rc for rc in raw_columns(entity) if rc in mapped]


def _has_control_byte(data) -> bool:
    """Whether a text buffer holds a C0 control byte other than tab, LF, CR. UTF-8 never uses bytes below 0x20
    inside a multi-byte character, so the bytes say it; one SIMD pass (the buffer's minimum) clears a clean one."""
    import numpy as np

    b = np.frombuffer(data, np.uint8)
    if not b.size or b.min() >= 0x20:
        return False
    counts = np.bincount(b[b < 0x20], minlength=0x20)
    counts[list(ALLOWED_C0)] = 0
    return bool(counts.any())


ALLOWED_C0 = (0x09, 0x0A, 0x0D)


def mark_control_characters(table, columns: list[str]):
    """``table`` plus ``__cc``, the same on every row: whether some value of ``columns`` in this chunk holds a
    control character. Each column's text buffer is looked at once as bytes (~0.04 CPU-s per million dossier
    rows); ChunkStager stages a clean chunk with SQL that has no control-character rule (each such rule reads a
    raw column the staging SQL otherwise leaves alone: +6% of the staging SQL's time on a clean file)."""
    import pyarrow as pa

    columns = [c for c in columns if pa.types.is_string(table.schema.field(c).type)
               or pa.types.is_large_string(table.schema.field(c).type)]
    hit = any(_has_control_byte(chunk.buffers()[2]) for c in columns for chunk in table.column(c).chunks
              if chunk.null_count < len(chunk) and chunk.buffers()[2] is not None)
    n = table.num_rows
    return table.append_column(HAS_CONTROL, pa.repeat(pa.scalar(hit), n) if n else pa.array([], pa.bool_()))


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(s: str) -> str:
    return "'" + str(s).replace("'", "''") + "'"


def raw_columns(entity: str) -> list[str]:
    """Every canonical column any mapping file gives this entity: the raw table's fixed schema."""
    cols: list[str] = []
    for fmt in FORMATS:
        for name in mapping(fmt)["entities"].get(entity, {}):
            if name not in cols:
                cols.append(name)
    return cols


def setup_connection(con: duckdb.DuckDBPyConnection, pseudonym_key: bytes | None = None) -> None:
    """Macros every staging query uses; local time zone for ISO timestamps with an offset."""
    con.execute("SET TimeZone = 'Asia/Ho_Chi_Minh'")
    fmts = "[" + ", ".join(_lit(f) for f in TS_FORMATS) + "]"
    con.execute(f"""
        CREATE OR REPLACE MACRO tthc_ts(v) AS coalesce(
            try_strptime(v, {fmts}),
            CASE WHEN regexp_matches(v, '^\\d{{4}}-\\d{{2}}-\\d{{2}}[T ]\\d{{2}}:\\d{{2}}(:\\d{{2}}(\\.\\d+)?)?\\s*([+-]\\d{{2}}:?\\d{{2}}|Z)$')
                 THEN TRY_CAST(v AS TIMESTAMPTZ)::TIMESTAMP
                 WHEN regexp_matches(v, '^\\d{{5}}(\\.\\d+)?$') AND TRY_CAST(v AS DOUBLE) BETWEEN 20000 AND 80000
                 THEN TIMESTAMP '1899-12-30' + to_microseconds(CAST(round(TRY_CAST(v AS DOUBLE) * 86400000000) AS BIGINT))
            END)""")
    con.execute(r"""
        CREATE OR REPLACE MACRO tthc_money(v) AS CASE
            WHEN regexp_matches(v, '^-?\d+(\.0)?$') THEN TRY_CAST(TRY_CAST(v AS DOUBLE) AS BIGINT)
            WHEN regexp_matches(regexp_replace(v, '(?i)\s*(đ|vnđ|vnd|đồng)\s*$', ''), '^-?\d{1,3}([.,\s]\d{3})+$')
            THEN TRY_CAST(regexp_replace(regexp_replace(v, '(?i)\s*(đ|vnđ|vnd|đồng)\s*$', ''), '[.,\s]', '', 'g') AS BIGINT)
            ELSE TRY_CAST(regexp_replace(v, '(?i)\s*(đ|vnđ|vnd|đồng)\s*$', '') AS BIGINT) END""")
    con.execute(r"""
        CREATE OR REPLACE MACRO tthc_int(v) AS CASE
            WHEN regexp_matches(v, '^-?\d+(\.0+)?$') THEN TRY_CAST(TRY_CAST(v AS DOUBLE) AS BIGINT) END""")
    yes = ", ".join(_lit(x) for x in YES)
    no = ", ".join(_lit(x) for x in NO)
    con.execute(f"""
        CREATE OR REPLACE MACRO tthc_bool(v) AS CASE WHEN v = 'Có' THEN true WHEN v = 'Không' THEN false
            WHEN lower(v) IN ({yes}) THEN true WHEN lower(v) IN ({no}) THEN false END""")
    if pseudonym_key is not None:
        con.execute(f"CREATE OR REPLACE MACRO tthc_hmac(v) AS {hmac_sha256_sql('v', pseudonym_key)}")


def hmac_sha256_sql(text: str, key: bytes) -> str:
    """DuckDB SQL for the hex HMAC-SHA256 (RFC 2104) of the UTF-8 text ``text`` (an expression) under ``key``,
    vectorised inside DuckDB; equals Python's ``hmac.new(key, text, sha256).hexdigest()``; null for null text."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    ipad = bytes(b ^ 0x36 for b in key).hex()
    opad = bytes(b ^ 0x5C for b in key).hex()
    return (f"CASE WHEN ({text}) IS NULL THEN NULL ELSE "
            f"sha256(unhex('{opad}') || unhex(sha256(unhex('{ipad}') || encode({text})))) END")


@dataclass
class _Col:
    name: str
    expr: str                    # typed value, in terms of the trimmed text columns "__v_<raw column>"
    checks: list[tuple[str, str, str, str]]  # (rule, header, failing predicate, message); @T@ = typed, @V@ = text
    value: str                   # the offending text


def _v(col: str) -> str:
    """The trimmed text of a raw column (empty = NULL), computed once per row in the query's first layer."""
    return _q(f"__v_{col}")


def _code_expr(v: str, col: Column) -> str:
    """Code decoding with a fast path for the canonical code itself; a numeric code also as Excel writes it (4.0)
    or zero-padded (04); labels compare NFC, case-folded."""
    lookup = code_lookup(col.codes)
    numeric = code_is_numeric(col.codes)
    codes = sorted({str(c) for c in lookup.values()})
    key = f"lower(nfc_normalize(regexp_replace({v}, '\\s+', ' ', 'g')))"
    labels = " ".join(f"WHEN {_lit(k)} THEN {str(c) if numeric else _lit(c)}" for k, c in lookup.items())
    if numeric:
        fast = ", ".join(_lit(c) for c in codes)
        excel = ", ".join(f"{c}" for c in codes)
        return (f"CASE WHEN {v} IN ({fast}) THEN CAST({v} AS BIGINT) "
                f"WHEN regexp_matches({v}, '^\\d+(\\.0+)?$') AND CAST(TRY_CAST({v} AS DOUBLE) AS BIGINT) IN ({excel}) "
                f"THEN CAST(TRY_CAST({v} AS DOUBLE) AS BIGINT) "
                f"ELSE CAST(CASE {key} {labels} END AS BIGINT) END")
    fast = ", ".join(_lit(c) for c in codes)
    return f"CASE WHEN {v} IN ({fast}) THEN {v} ELSE CASE {key} {labels} END END"


def _column_sql(col: Column, entity: str, fmt: str, x_columns: set[str]) -> _Col:
    """Typed expression and row-rule predicates for one canonical column of a flat (or SQL) record."""
    v = _v(col.name)
    header = source_header(fmt, entity, col.name)
    checks: list[tuple[str, str, str, str]] = []
    t = col.type
    if t in ("string", "agency"):
        expr = v
    elif t == "timestamp":
        expr = f"tthc_ts({v})"
        checks.append(("invalid_date", header, "@V@ IS NOT NULL AND @T@ IS NULL",
                       "is not a valid date (expected dd/mm/yyyy [HH:MM[:SS]], yyyyMMddHHmmss or ISO 8601)"))
    elif t == "date":
        expr = f"CAST(tthc_ts({v}) AS DATE)"
        checks.append(("invalid_date", header, "@V@ IS NOT NULL AND @T@ IS NULL",
                       "is not a valid date (expected dd/mm/yyyy)"))
    elif t == "int":
        expr = f"CASE WHEN regexp_full_match({v}, '[0-9]+') THEN TRY_CAST({v} AS BIGINT) ELSE tthc_int({v}) END"
        checks.append(("invalid_number", header, "@V@ IS NOT NULL AND @T@ IS NULL", "is not a whole number"))
    elif t == "money":
        expr = f"CASE WHEN regexp_full_match({v}, '[0-9]+') THEN TRY_CAST({v} AS BIGINT) ELSE tthc_money({v}) END"
        checks.append(("invalid_number", header, "@V@ IS NOT NULL AND @T@ IS NULL",
                       "is not an amount in VND (expected 50000, 50.000, 50,000 or 50.000 đ)"))
    elif t == "bool":
        if col.name in x_columns:  # a column that marks yes with 'x': empty means no
            expr = f"CASE WHEN {v} IS NULL THEN false ELSE tthc_bool({v}) END"
        else:
            expr = f"tthc_bool({v})"
        checks.append(("invalid_bool", header, "@V@ IS NOT NULL AND @T@ IS NULL",
                       "is not yes/no (expected Có/Không, x/empty, 1/0, TRUE/FALSE)"))
    elif t == "code":
        expr = _code_expr(v, col)
        checks.append(("unknown_code", header, "@V@ IS NOT NULL AND @T@ IS NULL",
                       f"is not a code of the list '{col.codes}'"))
    elif t == "code_list":
        lookup = code_lookup(col.codes)
        labels = " ".join(f"WHEN {_lit(k)} THEN {_lit(c)}" for k, c in lookup.items())
        items = f"list_transform(string_split({v}, ';'), lambda x: CASE lower(nfc_normalize(trim(x))) {labels} END)"
        expr = f"CASE WHEN {v} IS NOT NULL THEN array_to_string(list_sort(list_distinct({items})), ';') END"
        checks.append(("unknown_code", header, f"@V@ IS NOT NULL AND len(list_filter({items}, lambda x: x IS NULL)) > 0",
                       f"holds a value outside the list '{col.codes}'"))
    else:
        raise ValueError(f"unsupported column type {t!r} for {col.name}")
    if col.default is not None and t in ("int", "code", "money"):
        expr = f"coalesce({expr}, {col.default})"
    if col.min is not None and t in ("int", "money"):
        checks.append(("out_of_range", header, f"@T@ < {col.min}", f"is below the minimum {col.min}"))
    return _Col(col.name, expr, checks, v)


def _sync_dossier_overrides(fmt: str) -> dict[str, _Col]:
    """Dossier fields that the national sync shape carries in nested lists (sources.md 1b)."""
    if fmt != "national_sync":
        return {}

    def hdr(c):
        return source_header(fmt, "dossiers", c)

    sup = _v("supplements_json")
    docs = _v("submitted_documents_json")
    fees = _v("fees_json")
    res = _v("result_documents_json")
    reqs_raw = f"from_json({sup}, '[{{\"NgayBoSung\":\"VARCHAR\",\"NgayTiepNhanBoSung\":\"VARCHAR\"}}]')"
    reqs = (f"list_transform({reqs_raw}, lambda x: struct_pack(requested_at := tthc_ts(NULLIF(trim(x.NgayBoSung), '')), "
            f"received_at := tthc_ts(NULLIF(trim(x.NgayTiepNhanBoSung), ''))))")
    # the latest request is the one with the greatest date, wherever it stands in the list (settled detail 1)
    latest = f"list_last(list_sort(list_filter({reqs}, lambda x: x.requested_at IS NOT NULL), 'ASC', 'NULLS FIRST'))"
    docs_l = (f"from_json({docs}, '[{{\"DuongDanTaiTepTin\":\"VARCHAR\",\"DuocTaiSuDung\":\"VARCHAR\","
              f"\"DuocLayTuKhoDMQG\":\"VARCHAR\"}}]')")
    fees_l = f"from_json({fees}, '[{{\"Gia\":\"VARCHAR\"}}]')"
    res_l = f"from_json({res}, '[{{\"DuongDanTepTinKetQua\":\"VARCHAR\"}}]')"
    flag = _v("has_digitized_components_flag")
    bad_json = lambda v, lst: f"{v} IS NOT NULL AND TRY({lst}) IS NULL"  # noqa: E731
    bad_dates = (f"{sup} IS NOT NULL AND len(list_filter({reqs_raw}, lambda x: (NULLIF(trim(x.NgayBoSung), '') IS NOT NULL "
                 f"AND tthc_ts(NULLIF(trim(x.NgayBoSung), '')) IS NULL) OR (NULLIF(trim(x.NgayTiepNhanBoSung), '') "
                 f"IS NOT NULL AND tthc_ts(NULLIF(trim(x.NgayTiepNhanBoSung), '')) IS NULL))) > 0")
    return {
        "supplement_requests": _Col("supplement_requests", f"CASE WHEN {sup} IS NULL THEN [] ELSE {reqs} END",
                                    [("invalid_json", hdr("supplements_json"), bad_json(sup, reqs_raw),
                                      "is not a list of supplement requests"),
                                     ("invalid_date", hdr("supplements_json"), bad_dates,
                                      "holds a date that is not valid")], sup),
        "supplement_count": _Col("supplement_count", f"coalesce(len({reqs_raw}), 0)", [], sup),
        "supplement_requested_at": _Col("supplement_requested_at", f"({latest}).requested_at", [], sup),
        "supplement_received_at": _Col("supplement_received_at", f"({latest}).received_at", [], sup),
        "has_digitized_components": _Col(
            "has_digitized_components",
            f"CASE WHEN {docs} IS NOT NULL THEN len(list_filter({docs_l}, lambda x: NULLIF(trim(x.DuongDanTaiTepTin), '') IS NOT NULL)) > 0 END",
            [("invalid_json", hdr("submitted_documents_json"), bad_json(docs, docs_l),
              "is not a list of submitted documents")], docs),
        "reused_digitized_data": _Col(
            "reused_digitized_data",
            f"CASE WHEN tthc_bool({flag}) THEN true WHEN {docs} IS NOT NULL THEN "
            f"len(list_filter({docs_l}, lambda x: tthc_bool(x.DuocTaiSuDung) OR tthc_bool(x.DuocLayTuKhoDMQG))) > 0 "
            f"WHEN {flag} IS NOT NULL THEN tthc_bool({flag}) END", [], docs),
        "has_e_result": _Col(
            "has_e_result",
            f"CASE WHEN {res} IS NOT NULL THEN len(list_filter({res_l}, lambda x: NULLIF(trim(x.DuongDanTepTinKetQua), '') IS NOT NULL)) > 0 END",
            [("invalid_json", hdr("result_documents_json"), bad_json(res, res_l),
              "is not a list of result documents")], res),
        "fee_vnd": _Col("fee_vnd",
                        f"CASE WHEN {fees} IS NOT NULL THEN CAST(coalesce(list_sum(list_transform({fees_l}, lambda x: tthc_money(NULLIF(trim(x.Gia), '')))), 0) AS BIGINT) END",
                        [("invalid_json", hdr("fees_json"), bad_json(fees, fees_l), "is not a list of fees"),
                         ("invalid_number", hdr("fees_json"),
                          f"{fees} IS NOT NULL AND len(list_filter({fees_l}, lambda x: NULLIF(trim(x.Gia), '') IS NOT NULL AND tthc_money(NULLIF(trim(x.Gia), '')) IS NULL)) > 0",
                          "holds a fee that is not an amount")], fees),
    }


def _t(name: str) -> str:
    return _q(f"__t_{name}")


def staging_select(source: str, entity: str, fmt: str, raw_relation: str, agencies_relation: str,
                   x_columns: set[str] = frozenset(), with_pseudonyms: bool = True,
                   staged_relation: str | None = None, pretrimmed: bool = False,
                   constant_lineage: bool = True, control_characters: bool = True) -> tuple[str, str]:
    """SQL for (staged rows, quarantined rows) of one raw batch.

    Three layers, each value computed once per row: ``__v_<col>`` the trimmed text of every raw column,
    ``__t_<col>`` the typed value of every contract column, ``__rule`` the index of the first row rule broken.
    With ``staged_relation`` (the staged file already written), the quarantine query looks only at the rows
    missing from it, so a clean file is typed once, not twice. With ``pretrimmed``, the relation also holds
    ``__s_<col>``, each raw column already trimmed as DuckDB's ``trim`` would (``trim_for_staging``), and those
    are used instead of trimming in SQL; the raw columns themselves stay as they were for quarantine. Without
    ``constant_lineage``, the staged rows carry ``_source_row`` only and the caller adds the lineage values that
    are the same on every row of a batch (``STG_CONSTANT``), cheaper in Arrow than through DuckDB. Without
    ``control_characters``, the SQL leaves out the ``control_character`` rules (for a chunk known to hold none).
    """
    c = contract(stg_table(source, entity))
    overrides = _sync_dossier_overrides(fmt) if entity == "dossiers" else {}
    cols: list[_Col] = []
    for col in c.columns:
        if col.name in overrides:
            cols.append(overrides[col.name])
        elif col.type == "supplement_list":
            cols.append(_Col(col.name, "NULL::STRUCT(requested_at TIMESTAMP, received_at TIMESTAMP)[]", [], "NULL"))
        else:
            cols.append(_column_sql(col, entity, fmt, x_columns))
    by_name = {x.name: x for x in cols}

    # agency: the Mã hồ sơ prefix when absent (sources.md); must be listed in agencies.csv (settled detail 16)
    for col in c.columns:
        if col.type != "agency":
            continue
        x = by_name[col.name]
        if col.fallback == "dossier_id_prefix":
            x.expr = f"coalesce({x.expr}, NULLIF(split_part({_v('dossier_id')}, '-', 1), ''))"
        x.checks.append(("unknown_agency", source_header(fmt, entity, col.name),
                         f"@T@ IS NOT NULL AND @T@ NOT IN (SELECT agency_code FROM {agencies_relation})",
                         "is not an agency listed in agencies.csv"))

    # the rules in order; the first one a row breaks is the one recorded
    ordered: list[tuple[str, str, str, str, str]] = []  # rule, header, predicate, value, message
    # a line the reader could not parse (JSONL cut in half) first: its columns are empty, say why
    malformed = f"json_extract_string({_q('_extra')}, '$.{MALFORMED_KEY}')"
    ordered.append(("malformed_json", "(the whole line)",
                    f"{_q('_extra')} IS NOT NULL AND contains({_q('_extra')}, {_lit(MALFORMED_KEY)}) "
                    f"AND {malformed} IS NOT NULL", malformed,
                    "is not a JSON object (the line is cut or damaged): nothing of it can be read"))
    # a control character next: the value around it cannot be trusted, whatever it looks like
    for rc in control_columns(entity, fmt) if control_characters else []:
        ordered.append(("control_character", source_header(fmt, entity, rc),
                        f"regexp_matches({_q(rc)}, {_lit(CONTROL_CHARS)})", _q(rc),
                        "holds a control character (NUL, BEL, ESC or another below space other than tab and line "
                        "breaks): the export is damaged there"))
    agency_cols = {col.name for col in c.columns if col.type == "agency"}
    for col in c.columns:
        x = by_name[col.name]
        header = source_header(fmt, entity, col.name)
        if col.required:
            ordered.append(("required", header, f"{_t(col.name)} IS NULL AND {x.value} IS NULL", x.value,
                            "is empty but required"))
        if col.required_unless:
            (ucol, vals), = col.required_unless.items()
            inlist = ", ".join(str(v) for v in vals)
            ordered.append(("required_if_received", header,
                            f"{x.value} IS NULL AND coalesce({_t(ucol)} NOT IN ({inlist}), true)",
                            x.value, f"is empty but required unless status is {inlist}"))
    for col in c.columns:
        x = by_name[col.name]
        for rule, header, pred, msg in x.checks:
            pred = pred.replace("@T@", _t(col.name)).replace("@V@", x.value)
            # an agency taken from the Mã hồ sơ prefix is reported as the value that was checked
            value = _t(col.name) if (rule == "unknown_agency" and col.name in agency_cols) else x.value
            ordered.append((rule, header, pred, value, msg))

    raw_cols = raw_columns(entity)
    rule_idx = "CASE " + " ".join(f"WHEN {p} THEN {i}" for i, (_r, _h, p, _v2, _m) in enumerate(ordered, 1)) + " END"
    values = "CASE __rule " + " ".join(f"WHEN {i} THEN CAST({v} AS VARCHAR)"
                                       for i, (_r, _h, _p, v, _m) in enumerate(ordered, 1)) + " END"
    names = "[" + ", ".join(_lit(r) for r, *_ in ordered) + "]"
    headers = "[" + ", ".join(_lit(h) for _r, h, *_ in ordered) + "]"
    messages = "[" + ", ".join(_lit(m) for *_, m in ordered) + "]"

    out_exprs = []
    for col in c.columns:
        if col.pii == "drop":
            continue
        if col.pii == "pseudonym":
            if with_pseudonyms:
                out_exprs.append(f"tthc_hmac(regexp_replace({_t(col.name)}, '\\s', '', 'g')) AS {_q(col.pseudonym)}")
            else:
                out_exprs.append(f"NULL::VARCHAR AS {_q(col.pseudonym)}")
            continue
        out_exprs.append(f"{_t(col.name)} AS {_q(col.name)}")

    # Only what is read: the typed values the output, a rule or another typed value uses, and the raw columns
    # those (or a rule or a quarantine value) read. A dropped personal column is then neither typed nor trimmed.
    reads = " ".join((rule_idx, values, *out_exprs))
    typed = [x for x in cols if _t(x.name) in reads]
    while more := [x for x in cols if x not in typed and any(_t(x.name) in y.expr for y in typed)]:
        typed += more
    typed = [x for x in cols if x in typed] or cols[:1]
    layer_t = ", ".join(f"{x.expr} AS {_t(x.name)}" for x in typed)
    reads = " ".join((layer_t, rule_idx, values))
    used = [rc for rc in raw_cols if _v(rc) in reads] or raw_cols[:1]
    if pretrimmed:
        layer_v = ", ".join(f"NULLIF({_q(TRIMMED + rc)}, '') AS {_v(rc)}" for rc in used)
    else:
        layer_v = ", ".join(f"NULLIF(trim({_q(rc)}), '') AS {_v(rc)}" for rc in used)

    def ruled(where: str = "") -> str:
        return (f"(SELECT *, {rule_idx} AS __rule FROM (SELECT *, {layer_t} FROM "
                f"(SELECT *, {layer_v} FROM {raw_relation} {where})))")

    lineage = ", ".join(_q(n) for n in STG_LINEAGE if constant_lineage or n not in STG_CONSTANT)
    staged = f"SELECT {', '.join(out_exprs)}, {lineage} FROM {ruled()} WHERE __rule IS NULL"
    raw_out = ", ".join(_q(n) for n in raw_cols + ["_extra"] + LINEAGE)
    where = (f"WHERE _source_row NOT IN (SELECT _source_row FROM {staged_relation})" if staged_relation else "")
    quarantined = (f"SELECT {raw_out}, {names}[__rule] AS _rule, {headers}[__rule] AS _column, "
                   f"{values} AS _value, {messages}[__rule] AS _message FROM {ruled(where)} "
                   f"WHERE __rule IS NOT NULL ORDER BY _source_row")
    return staged, quarantined


@dataclass
class StageResult:
    batch_id: str
    rows_raw: int
    rows_staged: int
    rows_quarantined: int
    rules: dict[str, int]
    min_updated_at: object = None
    max_updated_at: object = None
    seconds: float = 0.0


def x_marked_columns(con: duckdb.DuckDBPyConnection, raw_relation: str, entity: str) -> set[str]:
    """Yes/no columns that mark yes with 'x' in this file: there an empty cell means no (sources.md)."""
    c = contract(stg_table(ENTITY_SOURCE[entity], entity))
    bools = [col.name for col in c.columns if col.type == "bool"]
    if not bools:
        return set()
    exprs = ", ".join(f"bool_or(lower(trim({_q(b)})) = 'x') AS {_q(b)}" for b in bools)
    row = con.execute(f"SELECT {exprs} FROM {raw_relation}").fetchone()
    return {b for b, flag in zip(bools, row, strict=True) if flag}


def stage_raw_file(raw_file: Path, *, warehouse: Path, source: str, entity: str, fmt: str, batch_id: str,
                   agency_codes: list[str], pseudonym_key: bytes, threads: int | None = None,
                   memory_limit: str = "1GB") -> StageResult:
    """Stage one raw batch file into staging + quarantine, atomically, and count both sides."""
    t0 = time.perf_counter()
    con = duckdb.connect()
    try:
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        con.execute(f"SET memory_limit = '{memory_limit}'")
        con.execute("SET preserve_insertion_order = false")
        setup_connection(con, pseudonym_key)
        con.execute("CREATE TEMP TABLE agencies (agency_code VARCHAR)")
        if agency_codes:
            con.executemany("INSERT INTO agencies VALUES (?)", [[a] for a in agency_codes])
        con.execute(f"CREATE VIEW raw AS SELECT * FROM read_parquet({_lit(str(raw_file))})")
        xcols = x_marked_columns(con, "raw", entity)
        staged_sql, _ = staging_select(source, entity, fmt, "raw", "agencies", xcols)
        stg_path = store.copy_query_to_table(con, staged_sql, warehouse, stg_table(source, entity), name=batch_id)
        _, quarantine_sql = staging_select(source, entity, fmt, "raw", "agencies", xcols,
                                           staged_relation=f"read_parquet({_lit(str(stg_path))})")
        q_path = store.copy_query_to_table(con, quarantine_sql, warehouse, quarantine_table(source, entity),
                                           name=batch_id)
        rows_raw = con.execute("SELECT count(*) FROM raw").fetchone()[0]
        rows_staged = con.execute(f"SELECT count(*) FROM read_parquet({_lit(str(stg_path))})").fetchone()[0]
        rules = dict(con.execute(f"SELECT _rule, count(*) FROM read_parquet({_lit(str(q_path))}) GROUP BY 1")
                     .fetchall())
        rows_q = sum(rules.values())
        if rows_q == 0:
            q_path.unlink(missing_ok=True)  # no empty quarantine files
        ts_col = "rated_at" if entity == "ratings" else "updated_at"
        lo, hi = con.execute(f"SELECT min({ts_col}), max({ts_col}) FROM read_parquet({_lit(str(stg_path))})"
                             ).fetchone()
    finally:
        con.close()
    return StageResult(batch_id, rows_raw, rows_staged, rows_q, rules, lo, hi, time.perf_counter() - t0)



# Raw and staged batch files are LZ4 (Parquet LZ4_RAW), not the zstd level 1 of the other tables. Measured on 1M
# dossier rows: raw write 0.99 -> 0.75 CPU-s, staged write 0.74 -> 0.55 CPU-s, and a full read of the staged file
# (what a core build does) 0.45 -> 0.36 CPU-s; the files are ~1.6x larger (raw 67 -> 111 MB, staged 71 -> 112 MB).
INGEST_COMPRESSION = "lz4"


def batch_writer(warehouse: Path, table: str, name: str, schema, **options) -> store.BatchFileWriter:
    """``store.BatchFileWriter`` (written aside, published atomically on close) with the ingest's memory pool.

    The raw files skip min/max statistics of text columns: measured on 1M dossier rows, the raw write drops from
    1.59 s to 1.32 s, and nothing reads raw files by value ranges.
    """
    options.setdefault("memory_pool", ingest_memory_pool())
    return store.BatchFileWriter(warehouse, table, name, schema, **options)


def staged_writer(root: Path, source: str, entity: str, name: str, schema) -> store.BatchFileWriter:
    """The staged batch file ``<root>/stg_<source>__<entity>/<name>.parquet`` (``root``: the warehouse, or its
    ``_held`` folder when the gate rewrites a held batch). Dictionary encoding only where values repeat (codes,
    yes/no, names of procedures and agencies, batch constants): on timestamps, keys and pseudonyms it only filled
    hash tables until Parquet gave up (measured on 1M staged rows: 1.06 s -> 0.79 s, and a smaller file)."""
    c = contract(stg_table(source, entity))
    types = {col.name: col.type for col in c.columns}
    pseudonyms = {col.pseudonym for col in c.columns if col.pii == "pseudonym"}
    repeat = {"string", "agency", "code", "code_list", "bool", "int", "money"}
    dictionary = [f.name for f in schema
                  if f.name in STG_CONSTANT or (types.get(f.name) in repeat and f.name not in c.key
                                                and f.name not in pseudonyms)]
    return batch_writer(root, stg_table(source, entity), name, schema, use_dictionary=dictionary,
                        compression=INGEST_COMPRESSION)


def raw_writer(warehouse: Path, table: str, name: str, schema) -> store.BatchFileWriter:
    """The raw batch file: statistics only for the non-text columns (lineage ordinals and timestamp); dictionary
    encoding only for text whose staged column repeats (codes, yes/no, procedure and agency names), not for dates,
    keys or personal data (measured on 1M rows: 1.32 s -> 1.25 s)."""
    import pyarrow as pa

    stats = [f.name for f in schema if not pa.types.is_string(f.type)]
    c = contract("stg_" + table.removeprefix("raw_"))
    cols = {col.name: col for col in c.columns}
    dictionary = [f.name for f in schema
                  if f.name in STG_CONSTANT or (f.name in cols and cols[f.name].type not in ("timestamp", "date")
                                                and f.name not in c.key and not cols[f.name].pii)]
    return batch_writer(warehouse, table, name, schema, write_statistics=stats, use_dictionary=dictionary,
                        compression=INGEST_COMPRESSION)


class ChunkStager:
    """Stages a batch chunk by chunk while its raw file is being written: one pass over the data.

    Each chunk (raw text + lineage, as an Arrow table) is typed by the same SQL as ``stage_raw_file``; passing rows
    go to the staging file, the others to quarantine. Whether a yes/no column marks yes with 'x' is a property of
    the whole file; it is read from the first chunk, and if a later chunk shows 'x' in another column the batch is
    staged again from its complete raw file (``needs_restage``), so the file-level rule always holds.
    """

    def __init__(self, *, warehouse: Path, source: str, entity: str, fmt: str, batch_id: str,
                 agency_codes: list[str], pseudonym_key: bytes, memory_limit: str = "1GB", threads: int | None = None):
        self.warehouse, self.source, self.entity, self.fmt, self.batch_id = warehouse, source, entity, fmt, batch_id
        self.con = duckdb.connect()
        self.con.execute(f"SET memory_limit = '{memory_limit}'")
        if threads:  # default: DuckDB's own (one per core); one thread was cheaper only on a busy machine
            self.con.execute(f"SET threads = {int(threads)}")
        setup_connection(self.con, pseudonym_key)
        self.con.execute("CREATE TEMP TABLE agencies (agency_code VARCHAR)")
        if agency_codes:
            self.con.executemany("INSERT INTO agencies VALUES (?)", [[a] for a in agency_codes])
        c = contract(stg_table(source, entity))
        self.bools = [col.name for col in c.columns if col.type == "bool"]
        # the raw columns the staging SQL reads, which prepare() trims (the SQL does not depend on x_cols here)
        sql = " ".join(staging_select(source, entity, fmt, "raw_chunk", "agencies", set(), pretrimmed=True))
        self.raw_cols = [rc for rc in raw_columns(entity) if _q(TRIMMED + rc) in sql]
        self.control_cols = control_columns(entity, fmt)
        self.x_cols: set[str] | None = None
        self.needs_restage = False
        self.sql: dict[bool, tuple[str, str]] = {}
        self.stg_writer: store.BatchFileWriter | None = None
        self.q_writer: store.BatchFileWriter | None = None
        self.rows_raw = self.rows_staged = 0
        self.rules: dict[str, int] = {}
        self.ts_col = "rated_at" if entity == "ratings" else "updated_at"
        self.lo = self.hi = None
        self.t0 = time.perf_counter()

    def _x_in(self, chunk) -> set[str]:
        import pyarrow.compute as pc

        out = set()
        for b in self.bools:
            col = chunk.column(b)
            if col.null_count < len(col) and pc.any(pc.equal(pc.utf8_lower(pc.utf8_trim_whitespace(col)), "x")
                                                    ).as_py():
                out.add(b)
        return out

    def _sql(self, xs: set[str]) -> None:
        """(staged, quarantine) SQL for a clean chunk and for one holding a control character (``__cc``)."""
        self.sql = {}
        for damaged in (False, True):
            staged, _ = staging_select(self.source, self.entity, self.fmt, "raw_chunk", "agencies", xs,
                                       pretrimmed=True, constant_lineage=False, control_characters=damaged)
            _, quarantined = staging_select(self.source, self.entity, self.fmt, "raw_chunk", "agencies", xs,
                                            staged_relation="staged_rows", pretrimmed=True,
                                            control_characters=damaged)
            self.sql[damaged] = (staged, quarantined)

    def _staged_writer(self, schema) -> store.BatchFileWriter:
        return staged_writer(self.warehouse, self.source, self.entity, self.batch_id, schema)

    @staticmethod
    def _with_constants(staged, chunk):
        """Staged rows (``_source_row`` last) + the batch-constant lineage, in STG_LINEAGE order. ingest_raw gives
        every row of a batch the same ``_batch_id, _source_file, _ingested_at, _format`` (``_with_lineage``)."""
        import pyarrow as pa

        n = staged.num_rows
        for name in STG_CONSTANT:
            col = chunk.column(name)
            value = col[0] if len(col) else pa.scalar(None, col.type)
            staged = staged.append_column(name, pa.repeat(value, n) if n else pa.array([], col.type))
        return staged.select([f for f in staged.column_names if f not in STG_LINEAGE] + STG_LINEAGE)

    def prepare(self, chunk):
        """The chunk as the staging SQL reads it (raw columns plus their trimmed text and the control-character
        flag). Thread-safe, so the ingest prepares the next chunk on its reader thread while DuckDB stages this
        one."""
        return mark_control_characters(trim_for_staging(chunk, self.raw_cols), self.control_cols)

    def add(self, chunk, write=None, prepared=None) -> None:
        """Stage one chunk; ``write(writer, table)`` does the Parquet writes (the ingest hands them to its writer
        thread, so encoding overlaps with typing the next chunk); by default they happen here. ``prepared``:
        ``self.prepare(chunk)`` when the caller already has it."""
        import pyarrow.compute as pc

        write = write or (lambda w, t: w.write(t))

        xs = self._x_in(chunk)
        if self.x_cols is None:
            self.x_cols = xs
            self._sql(xs)
        elif not xs <= self.x_cols:
            self.needs_restage = True
        self.rows_raw += chunk.num_rows
        prepared = prepared if prepared is not None else self.prepare(chunk)
        staged_sql, quarantine_sql = self.sql[bool(prepared.num_rows) and prepared.column(HAS_CONTROL)[0].as_py()]
        self.con.register("raw_chunk", prepared)
        try:
            staged = self._with_constants(self.con.sql(staged_sql).to_arrow_table(), chunk)
            if self.stg_writer is None:
                self.stg_writer = self._staged_writer(staged.schema)
            write(self.stg_writer, staged)
            self.rows_staged += staged.num_rows
            if staged.num_rows:
                mm = pc.min_max(staged.column(self.ts_col))
                lo, hi = mm["min"].as_py(), mm["max"].as_py()
                self.lo = lo if self.lo is None or (lo is not None and lo < self.lo) else self.lo
                self.hi = hi if self.hi is None or (hi is not None and hi > self.hi) else self.hi
            if staged.num_rows < chunk.num_rows:
                self.con.register("staged_rows", staged.select(["_source_row"]))
                q = self.con.sql(quarantine_sql).to_arrow_table()
                self.con.unregister("staged_rows")
                if self.q_writer is None:
                    self.q_writer = store.BatchFileWriter(self.warehouse,
                                                          quarantine_table(self.source, self.entity),
                                                          self.batch_id, q.schema)
                write(self.q_writer, q)
                for r, n in zip(*pc.value_counts(q.column("_rule")).flatten(), strict=True):
                    self.rules[r.as_py()] = self.rules.get(r.as_py(), 0) + n.as_py()
        finally:
            self.con.unregister("raw_chunk")

    def finish(self, empty_raw) -> StageResult:
        """Publish staging (and quarantine, when any) atomically; ``empty_raw``: a 0-row raw table for the schema."""
        if self.stg_writer is None:  # no rows at all: an empty staging file still records the batch
            if self.x_cols is None:
                self._sql(set())
            self.con.register("raw_chunk", self.prepare(empty_raw))
            schema = self._with_constants(self.con.sql(self.sql[False][0]).to_arrow_table(), empty_raw).schema
            self.con.unregister("raw_chunk")
            self.stg_writer = self._staged_writer(schema)
        self.stg_writer.close()
        if self.q_writer is not None:
            self.q_writer.close()
        self.con.close()
        rows_q = sum(self.rules.values())
        return StageResult(self.batch_id, self.rows_raw, self.rows_staged, rows_q, dict(self.rules), self.lo,
                           self.hi, time.perf_counter() - self.t0)

    def abort(self) -> None:
        for w in (self.stg_writer, self.q_writer):
            if w is not None:
                w.abort()
        self.con.close()
