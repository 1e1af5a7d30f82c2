"""Header matching against the mapping files: a file's headers to canonical names, the raw schema of an entity,
the columns a file must carry.

Vocabulary: a *header* is what a person sees at the top of a column in an export (``Mã hồ sơ``); a *canonical*
name is the pipeline's column name (``dossier_id``). The mapping files (transforms/mappings/*.yaml) say which
headers mean which canonical name for each source format; they are data, not code.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa

from transforms import contracts
from transforms.contracts import FORMATS
from transforms.readers._result import EXTRA, SOURCE_LINE, SOURCE_ROW, FileRejected, file_label

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
def raw_canonical_names(entity: str) -> tuple[str, ...]:
    """Every canonical column any mapping file gives this entity, in mapping order: the raw table's columns."""
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
    fields = [pa.field(n, pa.string()) for n in raw_canonical_names(entity)]
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
