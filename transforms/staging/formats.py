"""How export text is read in SQL: the date and time formats, yes/no words, amounts and whole numbers (DuckDB
macros every staging query uses) and the keyed pseudonym (HMAC-SHA256 in SQL)."""

from __future__ import annotations

import hashlib

import duckdb

from transforms.calendar import TIME_ZONE

# Date and time formats of the exports, most common first (sources.md 1a/1b). Anything with an offset or a 'Z'
# is ISO 8601 and converted to local time; a bare 5-digit number is an Excel serial date.
TS_FORMATS = [
    "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y", "%Y%m%d%H%M%S", "%Y%m%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d",
    "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S.%f",
    "%d-%m-%Y %H:%M:%S", "%d-%m-%Y",
]
YES = ["có", "co", "x", "1", "true", "yes", "y", "đúng", "1.0"]
NO = ["không", "khong", "0", "false", "no", "n", "sai", "0.0"]


def _q(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _lit(s: str) -> str:
    """A quoted SQL string literal."""
    return "'" + str(s).replace("'", "''") + "'"


def setup_connection(con: duckdb.DuckDBPyConnection, pseudonym_key: bytes | None = None) -> None:
    """Macros every staging query uses; local time zone for ISO timestamps with an offset."""
    con.execute(f"SET TimeZone = '{TIME_ZONE}'")
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
