"""Cell values as text and the assembly of raw record batches: every value text (NFC), canonical column names,
unknown columns in ``_extra`` (a JSON object), lineage."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.readers._headers import HeaderMatch, raw_schema
from transforms.readers._result import EXTRA, SOURCE_LINE, SOURCE_ROW
from transforms.readers._scan import nfc


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
                arrays.append(nfc(pa.array(vals, pa.string())))
            else:
                arrays.append(pa.nulls(n, pa.string()))
        elif f.name == SOURCE_ROW:
            arrays.append(pa.array(range(start_row, start_row + n), pa.int64()))
        elif f.name == SOURCE_LINE:
            arrays.append(pa.array(lines, pa.int64()))
        elif f.name in by_canon:
            arrays.append(nfc(pa.array(cols[by_canon[f.name]], pa.string())))
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
    normalized: bool = False,
) -> pa.RecordBatch:
    """A pyarrow batch of the file's columns (strings, positional) -> one raw batch, without per-row Python.
    Values are NFC-normalised (``nfc``: a cheap look at the bytes when they already are), unless the caller
    did it (``normalized``)."""
    schema = raw_schema(source, entity)
    n = batch.num_rows
    by_canon = {c: i for i, c in enumerate(hm.canonical) if c is not None}
    used = {i: (batch.column(i) if normalized else nfc(batch.column(i))) for i in [*by_canon.values(), *hm.unknown]}
    arrays = []
    for f in schema:
        if f.name == EXTRA:
            if hm.unknown:
                arrays.append(arrow_extra([used[i] for i in hm.unknown],
                                          [hm.extra_keys[i] for i in hm.unknown]))
            else:
                arrays.append(pa.nulls(n, pa.string()))
        elif f.name == SOURCE_ROW:
            arrays.append(pa.array(np.arange(start_row, start_row + n, dtype=np.int64)))
        elif f.name == SOURCE_LINE:
            arrays.append(lines)
        elif f.name in by_canon:
            arrays.append(used[by_canon[f.name]])
        else:
            arrays.append(pa.nulls(n, pa.string()))
    arrays = [a.cast(f.type) if a.type != f.type else a for a, f in zip(arrays, schema, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
