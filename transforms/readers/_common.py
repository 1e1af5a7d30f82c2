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
    """The whole file cannot be read. ``path`` is the file; ``reason`` (also the exception's text) says in plain
    words what is wrong: the file by its inbox name (``<source>/<entity>/<file>``, never the machine's absolute
    path), the line, sheet or row a person would look at, the column as headed in the file, what was expected."""

    def __init__(self, path: Path | str, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(reason)


def file_label(path: Path, source: str, entity: str) -> str:
    """How messages name a file: its inbox-relative name ``<source>/<entity>/<file>`` when it lies in such a
    folder, else its base name (no absolute path of the machine)."""
    path = Path(path)
    if path.parent.name == entity and path.parent.parent.name == source:
        return f"{source}/{entity}/{path.name}"
    return path.name


@dataclass
class ReadResult:
    path: Path
    source: str
    entity: str
    format: str  # 'flat_export' | 'national_sync'
    file_kind: str  # 'csv' | 'xlsx' | 'json' | 'jsonl': what the file's bytes are, whatever its extension
    encoding: str | None
    delimiter: str | None
    header_rows: list[int]  # 1-based sheet rows / lines of the header
    first_data_line: int | None
    columns: list[str]  # canonical names found in the file
    unknown_columns: list[str]  # original headers not in the mapping (values go to `_extra`)
    batches: Iterator[pa.RecordBatch] = field(repr=False)
    # What was read differently from what the name says, or seen and not taken as data, in sentences for the
    # report (a .xlsx holding CSV text, blank rows skipped, a footer and the rows after it, other sheets).
    # Filled while ``batches`` is iterated: complete once it is exhausted.
    notes: list[str] = field(default_factory=list)
    # rows seen and not taken as data, by kind ('blank', 'footer'): their lines (CSV/JSONL) or sheet rows (XLSX)
    skipped: dict[str, list[int]] = field(default_factory=dict)


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


@cache
def key_columns(source: str, entity: str) -> tuple[str, ...]:
    """The contract's key columns of the entity (what every data row carries: ``dossier_id, updated_at``)."""
    try:
        return contracts.contract(contracts.stg_table(source, entity)).key
    except FileNotFoundError:
        return ()


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
    repeated: dict[int, str] = field(default_factory=dict)  # file column -> the canonical an earlier column has

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
    repeated: dict[int, str] = {}
    for i, h in enumerate(texts):
        canon = lookup.get(normalize_header(h)) if h else None
        if canon is not None and canon not in seen:
            seen.add(canon)
            canonical.append(canon)
            continue
        if canon is not None:
            repeated[i] = canon
        canonical.append(None)
        key = unicodedata.normalize("NFC", h) if h else f"column {i + 1}"
        base, n = key, 2
        while key in used_keys:  # a repeated header keeps every value, under a distinct key
            key = f"{base} ({n})"
            n += 1
        used_keys.add(key)
        unknown.append(i)
        extra_keys[i] = key
    return HeaderMatch(texts, canonical, unknown, extra_keys, repeated)


def check_required(path: Path, hm: HeaderMatch, source: str, entity: str, fmt: str, where: str = "") -> None:
    missing = [c for c in required_columns(source, entity, fmt) if c not in hm.columns]
    if missing:
        names = ", ".join(f"'{display_header(fmt, entity, c)}' ({c})" for c in missing)
        found = ", ".join(f"'{h}'" for h in hm.headers if h) or "none"
        one = len(missing) == 1
        raise FileRejected(
            path,
            f"file {file_label(path, source, entity)}: required column{'' if one else 's'} {names} not "
            f"found{where}; the {entity} export must have {'it' if one else 'them'} (headers found: {found})",
        )
    for i, canon in hm.repeated.items():  # two columns meaning one: which holds the values cannot be told
        first = hm.canonical.index(canon)
        raise FileRejected(
            path,
            f"file {file_label(path, source, entity)}: the column '{display_header(fmt, entity, canon)}' ({canon}) "
            f"is named twice{where}: column {first + 1} '{hm.headers[first]}' and column {i + 1} '{hm.headers[i]}'; "
            "which of the two holds its values cannot be told: keep one and drop the file again",
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


# --------------------------------------------------------------------------------------------- NFC
# Text made only of U+0000-U+02FF (ASCII, Latin-1, Latin Extended-A/B, IPA, spacing modifiers) and U+1E00-U+1EFF
# (Latin Extended Additional: every precomposed Vietnamese letter with its tone mark) is NFC as it stands: none
# of these characters changes under NFC or combines with the one before it (tests/unit/readers checks this over
# the whole ranges). In UTF-8 their lead bytes are below 0xCC, or 0xE1 followed by 0xB8-0xBB. A column whose
# bytes show anything else (a combining mark U+0300-U+036F of a file saved in NFD, another script) is
# normalised with pyarrow's utf8_normalize; the usual column costs a few numpy passes over its bytes.
def _value_bytes(arr: pa.Array) -> np.ndarray | None:
    """The bytes of the values of a string array (only the slice's own range), or None when it has none."""
    if len(arr) == 0 or arr.null_count == len(arr):
        return None
    bufs = arr.buffers()
    if len(bufs) < 3 or bufs[2] is None:
        return None
    off_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(bufs[1], dtype=off_type)
    start, end = int(offsets[arr.offset]), int(offsets[arr.offset + len(arr)])
    return np.frombuffer(bufs[2], dtype=np.uint8)[start:end]


def _count_pairs(d: np.ndarray, mask: int, value: int) -> int:
    """How many byte pairs (d[i], d[i+1]) satisfy ``(d[i] | d[i+1] << 8) & mask == value``, at any i."""
    n = 0
    for a in (0, 1):
        m = (d.size - a) // 2
        if m:
            n += int(np.count_nonzero((d[a:a + 2 * m].view("<u2") & mask) == value))
    return n


def may_need_nfc(d: np.ndarray, top: int | None = None) -> bool:
    """False when the UTF-8 bytes certainly hold NFC text (see above); True when they may not. ``top``: d.max()
    when already known."""
    if d.size == 0 or (int(d.max()) if top is None else top) < 0xCC:
        return False
    high = int(np.count_nonzero(d >= 0xCC))
    return _count_pairs(d, 0xFCFF, 0xB8E1) != high  # every lead byte >= 0xCC is 0xE1 then 0xB8-0xBB


def nfc(arr: pa.Array) -> pa.Array:
    """The string array NFC-normalised (the same array when it already is)."""
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return arr
    d = _value_bytes(arr)
    if d is None or not may_need_nfc(d):
        return arr
    return pc.utf8_normalize(arr, "NFC")


_C1 = "[\u0080-\u009f]"


def scan_text(arr: pa.Array) -> tuple[pa.Array, int | None, str | None]:
    """One look at a UTF-8 string array's bytes: (the array NFC-normalised, index of the first value holding
    U+FFFD or a C1 control, that character) - (arr, None, None) for the usual clean column. Pure ASCII costs one
    numpy pass; text with letters beyond ASCII a few more, and a search only where a bad character may be."""
    d = _value_bytes(arr)
    if d is None:
        return arr, None, None
    top = int(d.max())
    if top < 0xC2:  # ASCII only
        return arr, None, None
    for pattern, present in ((_C1, bool((d == 0xC2).any()) and _count_pairs(d, 0xE0FF, 0x80C2) > 0),
                             ("\ufffd", top >= 0xEF and bool((d == 0xEF).any()))):
        if present:
            hits = np.flatnonzero(pc.fill_null(pc.match_substring_regex(arr, pattern), False)
                                  .to_numpy(zero_copy_only=False))
            if hits.size:
                row = int(hits[0])
                found = pc.extract_regex(arr[row:row + 1], f"(?P<c>{pattern})")[0]["c"].as_py()
                return arr, row, found
    if may_need_nfc(d, top):
        arr = pc.utf8_normalize(arr, "NFC")
    return arr, None, None


# --------------------------------------------------------------------------------------------- footers
# A footer is recognised by what it is: a row whose first non-empty cell starts with a word that opens the
# closing block of a Vietnamese report (totals, signatures, notes, recipients), or a row holding a single
# non-empty cell of text outside the key columns (a signature, a place and date line, a title). Rows after a
# footer are read as data when they carry every key column (another table part), else listed as footer rows.
_FOOTER_WORDS = re.compile(
    r"^\W*(tổng|cộng|người\s+lập|người\s+ký|người\s+duyệt|người\s+kiểm\s+tra|người\s+tổng\s+hợp|ghi\s+chú|"
    r"lưu\s+ý|chú\s+thích|nơi\s+nhận|ký|xác\s+nhận|thủ\s+trưởng|trưởng\s+phòng|phó\s+trưởng|giám\s+đốc|"
    r"chủ\s+tịch|lãnh\s+đạo|cán\s+bộ\s+lập)(?!\w)")


def footer_words(text: str) -> bool:
    return bool(_FOOTER_WORDS.match(unicodedata.normalize("NFC", text).casefold()))


def is_footer_start(cells: Sequence[str | None], key_idx: set[int], texts: Sequence[bool] | None = None) -> bool:
    """``cells``: the row's texts (None when empty); ``key_idx``: positions of key columns; ``texts``: whether
    each cell is text (XLSX knows: numbers and dates are not), else text means holding a letter."""
    filled = [(i, c) for i, c in enumerate(cells) if c is not None]
    if not filled:
        return False
    if footer_words(filled[0][1]):
        return True
    if len(filled) == 1:
        i, c = filled[0]
        is_text = texts[i] if texts is not None and i < len(texts) else any(ch.isalpha() for ch in c)
        return is_text and i not in key_idx
    return False


def line_list(nums: Sequence[int], limit: int = 12) -> str:
    """``[3, 4, 5, 9]`` -> ``'3-5, 9'``; long lists end with ``'... (N in all)'``."""
    parts: list[str] = []
    nums = sorted(nums)
    i = 0
    while i < len(nums) and len(parts) < limit:
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        parts.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    text = ", ".join(parts)
    return text + (f", ... ({len(nums)} in all)" if i < len(nums) else "")


def note_skipped(res_notes: list[str], skipped: dict[str, list[int]], where: str, unit: str) -> None:
    """Sentences for the rows a reader saw and did not take as data (``unit``: 'line' or 'row')."""
    blank = skipped.get("blank") or []
    if blank:
        res_notes.append(f"{where}: {len(blank)} blank {unit}{'s' if len(blank) > 1 else ''} skipped "
                         f"({unit}{'s' if len(blank) > 1 else ''} {line_list(blank)})")
    foot = skipped.get("footer") or []
    if foot:
        res_notes.append(f"{where}: {len(foot)} {unit}{'s' if len(foot) > 1 else ''} of the footer below the data "
                         f"not read as data ({unit}{'s' if len(foot) > 1 else ''} {line_list(foot)})")
