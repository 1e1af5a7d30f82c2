"""JSON exports in the national sync shape: ``.json`` (an array, or ``{"data": [...]}``) and ``.jsonl`` (one
object a line), and the shaping of pulled records (HTTP API pages, SQL rows) into raw batches."""

from __future__ import annotations

import json
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
    header_lookup,
    json_value_text,
    normalize_header,
    raw_schema,
)


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
            arrays.append(pa.array(cols[f.name], pa.string()))
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
                if k not in seen:
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
    hm = HeaderMatch(keys, canonical, unknown, {i: keys[i] for i in unknown})
    return hm, got


def _check_objects(path: Path, records: list, where: str) -> None:
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise FileRejected(path, f"file {path.name}: {where} {i + 1} is a {type(rec).__name__}, "
                                     "expected a JSON object (one record)")


def read_json(path: Path, source: str, entity: str, batch_rows: int) -> ReadResult:
    fmt = "national_sync"
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise FileRejected(path, f"file {path.name}: not UTF-8 text (byte {e.start}); JSON exports must be UTF-8")
    if not text.strip():
        raise FileRejected(path, f"file {path.name}: the file is empty")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise FileRejected(path, f"file {path.name}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}")
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        records = doc["data"]
    elif isinstance(doc, list):
        records = doc
    else:
        raise FileRejected(path, f"file {path.name}: expected a JSON array of records or an object "
                                 f'{{"data": [...]}}, found a {type(doc).__name__}')
    _check_objects(path, records, "element")
    hm, _ = _found_columns(records, fmt, entity)
    if records:
        check_required(path, hm, source, entity, fmt, where=" in any record")

    def batches() -> Iterator[pa.RecordBatch]:
        if not records:
            yield pa.RecordBatch.from_pylist([], schema=raw_schema(source, entity))
            return
        for start in range(0, len(records), batch_rows):
            yield records_to_raw_batch(records[start:start + batch_rows], source, entity, fmt, start_row=start + 1)

    return ReadResult(path=path, source=source, entity=entity, format=fmt, file_kind="json", encoding="utf-8",
                      delimiter=None, header_rows=[], first_data_line=None, columns=hm.columns,
                      unknown_columns=hm.unknown_columns, batches=batches())


def _jsonl_records(path: Path, batch_rows: int) -> Iterator[tuple[list[dict], list[int]]]:
    """Parses a JSONL file lazily: lists of (records, physical line numbers). Blank lines are skipped."""
    recs: list[dict] = []
    lines: list[int] = []
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise FileRejected(path, f"file {path.name}, line {lineno}: not UTF-8 text (byte {e.start})")
            except json.JSONDecodeError as e:
                raise FileRejected(path, f"file {path.name}, line {lineno}: malformed JSON "
                                         f"(column {e.colno}: {e.msg}); every line must be one JSON object")
            if not isinstance(rec, dict):
                raise FileRejected(path, f"file {path.name}, line {lineno}: a {type(rec).__name__}, expected one "
                                         "JSON object")
            recs.append(rec)
            lines.append(lineno)
            if len(recs) >= batch_rows:
                yield recs, lines
                recs, lines = [], []
    if recs:
        yield recs, lines


def read_jsonl(path: Path, source: str, entity: str, batch_rows: int) -> ReadResult:
    fmt = "national_sync"
    if path.stat().st_size == 0:
        raise FileRejected(path, f"file {path.name}: the file is empty")
    chunks = _jsonl_records(path, batch_rows)
    first = next(chunks, None)  # the first batch is parsed now: its keys tell the columns found
    if first is None:
        raise FileRejected(path, f"file {path.name}: no records (only blank lines)")
    hm, _ = _found_columns(first[0], fmt, entity)
    check_required(path, hm, source, entity, fmt, where=" in any record of the first batch")

    def batches() -> Iterator[pa.RecordBatch]:
        row = 1
        for recs, lines in _chain(first, chunks):
            yield records_to_raw_batch(recs, source, entity, fmt, start_row=row, lines=lines)
            row += len(recs)

    return ReadResult(path=path, source=source, entity=entity, format=fmt, file_kind="jsonl", encoding="utf-8",
                      delimiter=None, header_rows=[], first_data_line=None, columns=hm.columns,
                      unknown_columns=hm.unknown_columns, batches=batches())


def _chain(first, rest):
    yield first
    yield from rest
