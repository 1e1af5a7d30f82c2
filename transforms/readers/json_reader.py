"""JSON exports in the national sync shape: ``.json`` (an array, or ``{"data": [...]}``) and ``.jsonl`` (one
object a line), and the shaping of pulled records (HTTP API pages, SQL rows) into raw batches."""

from __future__ import annotations

import io
import json
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from transforms.readers._common import (
    EXTRA,
    SOURCE_LINE,
    SOURCE_ROW,
    FileRejected,
    HeaderMatch,
    ReadResult,
    cell_text,
    check_required,
    extra_text,
    file_label,
    header_lookup,
    json_value_text,
    nfc,
    normalize_header,
    note_skipped,
    raw_schema,
)
from transforms.readers._text import DecodeProblem, bom_of, decode_all, utf16_without_bom


# A JSONL line that is no JSON object (cut in half, a stray line) is a row problem, not a file problem: it
# becomes a row whose mapped columns are empty and whose ``_extra`` holds the line's text under this key, so raw
# keeps it and staging sets it aside (its required columns are empty).
MALFORMED_KEY = "_malformed_json"


def _key_lookup(fmt: str, entity: str) -> tuple[dict[str, str], dict[str, str]]:
    """(exact field name -> canonical, normalized field name -> canonical) for one entity of one format."""
    from transforms.readers._common import entity_mapping

    exact: dict[str, str] = {}
    for canon, names in entity_mapping(fmt, entity).items():
        for n in names:
            exact.setdefault(n, canon)
    return exact, header_lookup(fmt, entity)


def records_to_raw_batch(
    records: list[dict],
    source: str,
    entity: str,
    fmt: str = "national_sync",
    start_row: int = 1,
    lines: list[int] | None = None,
) -> pa.RecordBatch:
    """Records (dicts keyed by the format's field names) -> one raw batch with ``raw_schema(source, entity)``.

    Used for JSON files and for the HTTP / SQL pulls. Values become text (see ``json_value_text``; SQL
    datetimes become ``YYYY-MM-DD HH:MM:SS``); fields the mapping does not know go to ``_extra``.
    ``_source_row`` counts from ``start_row``; ``_source_line`` is ``lines`` when given, else ``_source_row``
    (the 1-based element index of a JSON array or a pulled page sequence)."""
    schema = raw_schema(source, entity)
    exact, normalized = _key_lookup(fmt, entity)
    names = [f.name for f in schema]
    cols: dict[str, list[str | None]] = {n: [None] * len(records) for n in names}
    extras: list[str | None] = [None] * len(records)
    key_cache: dict[str, str | None] = {}
    for r, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise ValueError(f"record {start_row + r} is a {type(rec).__name__}, expected a JSON object")
        extra: dict[str, Any] = {}
        for k, v in rec.items():
            canon = key_cache.get(k, "?")
            if canon == "?":
                canon = exact.get(k) or normalized.get(normalize_header(k))
                if canon is not None and canon not in cols:
                    canon = None
                key_cache[k] = canon
            text = json_value_text(v) if fmt != "onestop_sql" else _sql_text(v)
            if canon is None:
                if text is not None:
                    extra[k] = text
            elif cols[canon][r] is None:
                cols[canon][r] = text
        extras[r] = extra_text(extra)
    n = len(records)
    cols[EXTRA] = extras
    arrays = []
    for f in schema:
        if f.name == SOURCE_ROW:
            arrays.append(pa.array(np.arange(start_row, start_row + n, dtype=np.int64)))
        elif f.name == SOURCE_LINE:
            arrays.append(pa.array(lines if lines is not None else np.arange(start_row, start_row + n,
                                                                               dtype=np.int64), pa.int64()))
        else:
            arrays.append(nfc(pa.array(cols[f.name], pa.string())))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _sql_text(v: Any) -> str | None:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, dict)):
        return json_value_text(v)
    return cell_text(v)


def _found_columns(records: list[dict], fmt: str, entity: str) -> tuple[HeaderMatch, set[str]]:
    exact, normalized = _key_lookup(fmt, entity)
    keys: list[str] = []
    seen: set[str] = set()
    for rec in records:
        if isinstance(rec, dict):
            for k in rec:
                if k not in seen and k != MALFORMED_KEY:
                    seen.add(k)
                    keys.append(k)
    canonical: list[str | None] = []
    unknown: list[int] = []
    got: set[str] = set()
    for i, k in enumerate(keys):
        c = exact.get(k) or normalized.get(normalize_header(k))
        if c is not None and c not in got:
            got.add(c)
            canonical.append(c)
        else:
            canonical.append(None)
            unknown.append(i)
    hm = HeaderMatch(keys, canonical, unknown, {i: unicodedata.normalize("NFC", keys[i]) for i in unknown})
    return hm, got


def _check_objects(path: Path, name: str, records: list, where: str) -> None:
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise FileRejected(path, f"file {name}: {where} {i + 1} is a {type(rec).__name__}, "
                                     "expected a JSON object (one record)")


def read_json(path: Path, source: str, entity: str, batch_rows: int, notes: list[str] | None = None) -> ReadResult:
    """A JSON array of records, or ``{"data": [...]}``; UTF-8 (BOM or not) or UTF-16. Control characters inside
    strings are kept (staging quarantines such a row), not a reason to reject the file."""
    fmt = "national_sync"
    name = file_label(path, source, entity)
    try:
        enc, text = decode_all(path.read_bytes())
    except DecodeProblem as p:
        raise FileRejected(path, f"file {name}, line {p.line}: {p.detail}; JSON exports must be UTF-8") from None
    if not text.strip():
        raise FileRejected(path, f"file {name}: the file is empty")
    try:
        doc = json.loads(text, strict=False)
    except json.JSONDecodeError as e:
        raise FileRejected(path, f"file {name}, line {e.lineno}, column {e.colno}: malformed JSON ({e.msg})")
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        records = doc["data"]
    elif isinstance(doc, list):
        records = doc
    else:
        raise FileRejected(path, f"file {name}: expected a JSON array of records or an object "
                                 f'{{"data": [...]}}, found a {type(doc).__name__}')
    _check_objects(path, name, records, "element")
    hm, _ = _found_columns(records, fmt, entity)
    notes = notes if notes is not None else []
    if records:
        check_required(path, hm, source, entity, fmt, where=" in any record")
    else:
        notes.append(f"file {name}: no records (an empty list): no data rows")

    def batches() -> Iterator[pa.RecordBatch]:
        if not records:
            yield pa.RecordBatch.from_pylist([], schema=raw_schema(source, entity))
            return
        for start in range(0, len(records), batch_rows):
            yield records_to_raw_batch(records[start:start + batch_rows], source, entity, fmt, start_row=start + 1)

    return ReadResult(path=path, source=source, entity=entity, format=fmt, file_kind="json", encoding=enc.label,
                      delimiter=None, header_rows=[], first_data_line=None, columns=hm.columns,
                      unknown_columns=hm.unknown_columns, batches=batches(), notes=notes)


def _jsonl_lines(path: Path, kind: str, bom: int) -> Iterator[tuple[int, bytes | str]]:
    """(line number, line) of a JSONL file: bytes for UTF-8 (decoded per line), text for UTF-16."""
    with path.open("rb") as fh:
        fh.seek(bom)
        if kind == "utf-8":
            yield from enumerate(fh, start=1)
            return
        with io.TextIOWrapper(fh, encoding=kind, newline="\n") as tf:
            lineno = 0
            while True:
                try:
                    line = tf.readline()
                except UnicodeDecodeError as e:
                    raise DecodeProblem(lineno + 1, f"bytes that are not {kind.upper()} text ({e.reason})") from None
                if not line:
                    return
                lineno += 1
                yield lineno, line


def _jsonl_records(path: Path, name: str, batch_rows: int, kind: str, bom: int, blank: list[int],
                   malformed: list[tuple[int, str]]) -> Iterator[tuple[list[dict], list[int]]]:
    """Parses a JSONL file lazily: lists of (records, physical line numbers). Blank lines are skipped (their
    line numbers go to ``blank``). A line that is no JSON object becomes a record ``{MALFORMED_KEY: text}`` (its
    line and why go to ``malformed``). Control characters inside strings are kept (staging quarantines such a
    row). Bytes that are not text in the file's encoding reject the file (a wrong encoding is a file problem)."""
    recs: list[dict] = []
    lines: list[int] = []
    try:
        for lineno, raw in _jsonl_lines(path, kind, bom):
            if not raw.strip():
                blank.append(lineno)
                continue
            try:
                text = (raw.decode("utf-8") if isinstance(raw, bytes) else raw).rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise FileRejected(path, f"file {name}, line {lineno}: bytes {raw[e.start:e.start + 4].hex(' ')} "
                                         "are not UTF-8 text; JSON Lines exports must be UTF-8") from None
            try:
                rec = json.loads(text, strict=False)
                why = None if isinstance(rec, dict) else f"a JSON {type(rec).__name__}, not an object"
            except json.JSONDecodeError as e:
                why = f"malformed JSON at column {e.colno}: {e.msg}"
            if why:
                malformed.append((lineno, why))
                rec = {MALFORMED_KEY: text}
            recs.append(rec)
            lines.append(lineno)
            if len(recs) >= batch_rows:
                yield recs, lines
                recs, lines = [], []
    except DecodeProblem as p:
        raise FileRejected(path, f"file {name}, line {p.line}: {p.detail}") from None
    if recs:
        yield recs, lines


def read_jsonl(path: Path, source: str, entity: str, batch_rows: int, notes: list[str] | None = None
               ) -> ReadResult:
    fmt = "national_sync"
    name = file_label(path, source, entity)
    if path.stat().st_size == 0:
        raise FileRejected(path, f"file {name}: the file is empty")
    with path.open("rb") as fh:
        head = fh.read(8192)
    enc = bom_of(head)
    kind = enc.kind if enc else (utf16_without_bom(head) or "utf-8")
    bom = enc.bom if enc else 0
    blank: list[int] = []
    malformed: list[tuple[int, str]] = []
    chunks = _jsonl_records(path, name, batch_rows, kind, bom, blank, malformed)
    first = next(chunks, None)  # the first batch is parsed now: its keys tell the columns found
    if first is None:
        raise FileRejected(path, f"file {name}: no records (only blank lines)")
    hm, _ = _found_columns(first[0], fmt, entity)
    check_required(path, hm, source, entity, fmt, where=" in any record of the first batch")
    notes = notes if notes is not None else []
    skipped: dict[str, list[int]] = {}

    def batches() -> Iterator[pa.RecordBatch]:
        row = 1
        for recs, lines in _chain(first, chunks):
            yield records_to_raw_batch(recs, source, entity, fmt, start_row=row, lines=lines)
            row += len(recs)
        if blank:
            skipped["blank"] = blank
            note_skipped(notes, skipped, f"file {name}", "line")
        if malformed:
            many = len(malformed) > 1
            notes.append(f"file {name}: {len(malformed)} line{'s' if many else ''} not a JSON object "
                         f"({'; '.join(f'line {n}: {why}' for n, why in malformed[:5])}"
                         f"{'; ...' if len(malformed) > 5 else ''}): kept as {'rows' if many else 'a row'} holding "
                         f"the line's text under '{MALFORMED_KEY}' in _extra, set aside by staging")

    label = "utf-8-sig" if kind == "utf-8" and bom else kind
    return ReadResult(path=path, source=source, entity=entity, format=fmt, file_kind="jsonl", encoding=label,
                      delimiter=None, header_rows=[], first_data_line=None, columns=hm.columns,
                      unknown_columns=hm.unknown_columns, batches=batches(), notes=notes, skipped=skipped)


def _chain(first, rest):
    yield first
    yield from rest
