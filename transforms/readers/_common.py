"""Shared pieces of the file readers: the result type, header matching against the mapping files, the raw
schema, and the assembly of raw record batches (every value text, canonical column names, `_extra`, lineage).

Vocabulary: a *header* is what a person sees at the top of a column in an export (``Mã hồ sơ``); a *canonical*
name is the pipeline's column name (``dossier_id``). The mapping files (transforms/mappings/*.yaml) say which
headers mean which canonical name for each source format; they are data, not code.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms import contracts

FORMATS = ("flat_export", "national_sync", "onestop_sql")
EXTRA = "_extra"
SOURCE_ROW = "_source_row"
SOURCE_LINE = "_source_line"


class FileRejected(Exception):
    """The whole file cannot be read. ``path`` is the file, ``reason`` says in plain words what is wrong
    (which file, which column, what was expected)."""

    def __init__(self, path: Path | str, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass
class ReadResult:
    path: Path
    source: str
    entity: str
    format: str  # 'flat_export' | 'national_sync'
    file_kind: str  # 'csv' | 'xlsx' | 'json' | 'jsonl'
    encoding: str | None
    delimiter: str | None
    header_rows: list[int]  # 1-based sheet rows / lines of the header
    first_data_line: int | None
    columns: list[str]  # canonical names found in the file
    unknown_columns: list[str]  # original headers not in the mapping (values go to `_extra`)
    batches: Iterator[pa.RecordBatch] = field(repr=False)


# --------------------------------------------------------------------------------------------- headers
_STAR = re.compile(r"\(\s*\*\s*\)\s*$")


def normalize_header(s: str) -> str:
    """How headers are compared: NFC, case-folded, trimmed, inner spaces collapsed, a trailing ``(*)`` dropped
    (the "required" mark some systems print)."""
    t = unicodedata.normalize("NFC", str(s))
    t = " ".join(t.split())
    t = _STAR.sub("", t)
    return " ".join(t.casefold().split())


def mapping(fmt: str) -> dict:
    """The parsed YAML mapping file of a source format (cached)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return contracts.mapping(fmt)


def entity_mapping(fmt: str, entity: str) -> dict[str, list[str]]:
    """canonical -> list of headers (field names) for one entity of one format."""
    ent = mapping(fmt).get("entities", {}).get(entity)
    if ent is None:
        return {}
    return {canon: (list(v) if isinstance(v, list) else [v]) for canon, v in ent.items()}


@cache
def header_lookup(fmt: str, entity: str) -> dict[str, str]:
    """normalized header -> canonical name (the first canonical name listing a header wins)."""
    out: dict[str, str] = {}
    for canon, headers in entity_mapping(fmt, entity).items():
        for h in headers:
            out.setdefault(normalize_header(h), canon)
        # a file may also carry the canonical name itself as its header
    for canon in entity_mapping(fmt, entity):
        out.setdefault(normalize_header(canon), canon)
    return out


@cache
def _raw_canonical_names(entity: str) -> tuple[str, ...]:
    names: list[str] = []
    for fmt in FORMATS:
        for canon in entity_mapping(fmt, entity):
            if canon not in names:
                names.append(canon)
    if not names:
        raise ValueError(f"no mapping file knows the entity {entity!r}")
    return tuple(names)


@cache
def raw_schema(source: str, entity: str) -> pa.Schema:
    """All canonical names of every mapping file for the entity (string), then ``_extra`` (string),
    ``_source_row`` and ``_source_line`` (int64). The same for every format of the entity."""
    fields = [pa.field(n, pa.string()) for n in _raw_canonical_names(entity)]
    fields += [pa.field(EXTRA, pa.string()), pa.field(SOURCE_ROW, pa.int64()), pa.field(SOURCE_LINE, pa.int64())]
    return pa.schema(fields)


@cache
def required_columns(source: str, entity: str, fmt: str) -> tuple[str, ...]:
    """Canonical columns a file of this format must carry: ``required: true`` or ``required_unless`` in the
    staging contract (``received_at`` of dossiers may be empty on some rows, but a file without the column cannot
    say when any dossier was received), except columns with a fallback (``agency_code`` of dossiers falls back to
    the Mã hồ sơ prefix), and only those the format's mapping knows (a column staging derives from others cannot
    be demanded of a file)."""
    try:
        con = contracts.contract(contracts.stg_table(source, entity))
    except FileNotFoundError:
        return ()
    known = entity_mapping(fmt, entity)
    return tuple(c.name for c in con.columns
                 if (c.required or c.required_unless) and not c.fallback and c.name in known)


def display_header(fmt: str, entity: str, canonical: str) -> str:
    headers = entity_mapping(fmt, entity).get(canonical)
    return headers[0] if headers else canonical


@dataclass
class HeaderMatch:
    """How the columns of a file map to canonical names."""

    headers: list[str]  # original header text per file column ('' for a blank header cell)
    canonical: list[str | None]  # canonical name per file column, None if unknown / duplicate / blank
    unknown: list[int]  # indices of file columns whose values go to _extra
    extra_keys: dict[int, str]  # file column index -> key used in _extra

    @property
    def columns(self) -> list[str]:
        return [c for c in self.canonical if c is not None]

    @property
    def unknown_columns(self) -> list[str]:
        return [self.extra_keys[i] for i in self.unknown]

    @property
    def score(self) -> int:
        return len(self.columns)


def match_headers(headers: Sequence[Any], fmt: str, entity: str) -> HeaderMatch:
    lookup = header_lookup(fmt, entity)
    texts = ["" if h is None else str(h).strip() for h in headers]
    canonical: list[str | None] = []
    seen: set[str] = set()
    unknown: list[int] = []
    extra_keys: dict[int, str] = {}
    used_keys: set[str] = set()
    for i, h in enumerate(texts):
        canon = lookup.get(normalize_header(h)) if h else None
        if canon is not None and canon not in seen:
            seen.add(canon)
            canonical.append(canon)
            continue
        canonical.append(None)
        key = unicodedata.normalize("NFC", h) if h else f"column {i + 1}"
        base, n = key, 2
        while key in used_keys:  # a repeated header keeps every value, under a distinct key
            key = f"{base} ({n})"
            n += 1
        used_keys.add(key)
        unknown.append(i)
        extra_keys[i] = key
    return HeaderMatch(texts, canonical, unknown, extra_keys)


def check_required(path: Path, hm: HeaderMatch, source: str, entity: str, fmt: str, where: str = "") -> None:
    missing = [c for c in required_columns(source, entity, fmt) if c not in hm.columns]
    if missing:
        names = ", ".join(f"'{display_header(fmt, entity, c)}' ({c})" for c in missing)
        found = ", ".join(f"'{h}'" for h in hm.headers if h) or "none"
        raise FileRejected(
            path,
            f"file {path.name}: required column(s) {names} not found{where}; "
            f"the {entity} export must have them (headers found: {found})",
        )


# --------------------------------------------------------------------------------------------- values
def _is_blank(s: str) -> bool:
    return not s or s.isspace()


def cell_text(v: Any) -> str | None:
    """One XLSX cell or SQL value as raw text. Excel dates -> ``YYYY-MM-DD HH:MM:SS`` (``YYYY-MM-DD`` without a
    time part); integral numbers without ``.0``; strings as they are; blank -> None."""
    if v is None:
        return None
    if isinstance(v, str):
        return None if _is_blank(v) else v
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, float):
        if v != v:  # NaN
            return None
        if v.is_integer() and abs(v) < 1e18:
            return str(int(v))
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, dt.datetime):
        if v.microsecond:
            v = v.replace(microsecond=0) if v.microsecond < 500_000 else (v + dt.timedelta(seconds=1)).replace(
                microsecond=0)
        if v.tzinfo is not None:
            return v.isoformat(sep=" ")
        return v.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(v, dt.date):
        return v.strftime("%Y-%m-%d")
    if isinstance(v, dt.time):
        return v.strftime("%H:%M:%S")
    if isinstance(v, dt.timedelta):
        secs = int(round(v.total_seconds()))
        sign = "-" if secs < 0 else ""
        secs = abs(secs)
        return f"{sign}{secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}"
    if isinstance(v, Decimal):
        if v == v.to_integral_value():
            return str(v.quantize(Decimal(1)))
        return str(v)
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode("utf-8", errors="replace")
    return str(v)


def json_value_text(v: Any) -> str | None:
    """One JSON value as raw text: numbers -> "1", bool -> "true"/"false", null -> None, nested lists and
    objects -> compact JSON text (non-ASCII kept). Strings (dates included) stay as given; blank -> None."""
    if v is None:
        return None
    if isinstance(v, str):
        return None if _is_blank(v) else v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return None
        if v.is_integer() and abs(v) < 1e18:
            return str(int(v))
        return repr(v)
    if isinstance(v, (list, dict)):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    return cell_text(v)


def extra_text(pairs: dict[str, str]) -> str | None:
    return json.dumps(pairs, ensure_ascii=False, separators=(",", ":")) if pairs else None


# --------------------------------------------------------------------------------------------- batches
def columns_to_batch(
    source: str,
    entity: str,
    hm: HeaderMatch,
    cols: list[list[str | None]],
    start_row: int,
    lines: list[int],
) -> pa.RecordBatch:
    """Python column lists (one per file column, text or None) -> one raw batch."""
    schema = raw_schema(source, entity)
    n = len(lines)
    by_canon = {c: i for i, c in enumerate(hm.canonical) if c is not None}
    arrays = []
    for f in schema:
        if f.name == EXTRA:
            if hm.unknown:
                vals = []
                for r in range(n):
                    d = {hm.extra_keys[i]: cols[i][r] for i in hm.unknown if cols[i][r] is not None}
                    vals.append(extra_text(d))
                arrays.append(pa.array(vals, pa.string()))
            else:
                arrays.append(pa.nulls(n, pa.string()))
        elif f.name == SOURCE_ROW:
            arrays.append(pa.array(range(start_row, start_row + n), pa.int64()))
        elif f.name == SOURCE_LINE:
            arrays.append(pa.array(lines, pa.int64()))
        elif f.name in by_canon:
            arrays.append(pa.array(cols[by_canon[f.name]], pa.string()))
        else:
            arrays.append(pa.nulls(n, pa.string()))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _json_escape(arr: pa.Array) -> pa.Array:
    """Vectorised JSON string escaping of a string array (backslash, quote and control characters)."""
    arr = pc.replace_substring(arr, "\\", "\\\\")
    arr = pc.replace_substring(arr, '"', '\\"')
    arr = pc.replace_substring(arr, "\n", "\\n")
    arr = pc.replace_substring(arr, "\r", "\\r")
    arr = pc.replace_substring(arr, "\t", "\\t")
    # any other control character is rare: replace it with its \u escape one by one only when present
    if pc.any(pc.match_substring_regex(arr, r"[\x00-\x08\x0b\x0c\x0e-\x1f]")).as_py():
        for code in [*range(0, 9), 11, 12, *range(14, 32)]:
            arr = pc.replace_substring(arr, chr(code), f"\\u{code:04x}")
    return arr


def arrow_extra(cols: Sequence[pa.Array], keys: Sequence[str]) -> pa.Array:
    """Vectorised `_extra`: a JSON object of the non-null values of the unknown columns, null when none."""
    pieces = []
    for arr, key in zip(cols, keys, strict=True):
        k = json.dumps(key, ensure_ascii=False) + ':"'
        piece = pc.binary_join_element_wise(pa.scalar(k), _json_escape(arr), pa.scalar('",'), "")
        pieces.append(pc.fill_null(piece, ""))
    # (joining with null_handling="skip" is avoided: pyarrow 26 drops all-null rows there)
    joined = pc.binary_join_element_wise(*pieces, "") if len(pieces) > 1 else pieces[0]
    joined = pc.utf8_rtrim(joined, characters=",")
    obj = pc.binary_join_element_wise(pa.scalar("{"), joined, pa.scalar("}"), "")
    return pc.if_else(pc.equal(joined, ""), pa.scalar(None, pa.string()), obj)


def arrow_to_batch(
    source: str,
    entity: str,
    hm: HeaderMatch,
    batch: pa.RecordBatch,
    start_row: int,
    lines: pa.Array,
) -> pa.RecordBatch:
    """A pyarrow batch of the file's columns (strings, positional) -> one raw batch, without per-row Python."""
    schema = raw_schema(source, entity)
    n = batch.num_rows
    by_canon = {c: i for i, c in enumerate(hm.canonical) if c is not None}
    arrays = []
    for f in schema:
        if f.name == EXTRA:
            if hm.unknown:
                arrays.append(arrow_extra([batch.column(i) for i in hm.unknown],
                                          [hm.extra_keys[i] for i in hm.unknown]))
            else:
                arrays.append(pa.nulls(n, pa.string()))
        elif f.name == SOURCE_ROW:
            arrays.append(pa.array(np.arange(start_row, start_row + n, dtype=np.int64)))
        elif f.name == SOURCE_LINE:
            arrays.append(lines)
        elif f.name in by_canon:
            arrays.append(batch.column(by_canon[f.name]))
        else:
            arrays.append(pa.nulls(n, pa.string()))
    arrays = [a.cast(f.type) if a.type != f.type else a for a, f in zip(arrays, schema, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
