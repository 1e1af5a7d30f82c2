"""A fake export API (sources.md section 2) on 127.0.0.1, with switches that inject faults.

Serves, per entity, the *current state* of each record (the latest version per id, as a source system holds it),
filtered by ``updated_from <= updated_at < updated_to`` and ordered by (updated_at, id), paged by page number.
Faults (all off by default, random ones drawn from a seeded generator so tests are repeatable):
- ``error_rate``: that share of requests answer 500/502/503;
- ``rate_limit_every``: every n-th request answers 429 with ``Retry-After: retry_after``;
- ``slow_rate`` / ``slow_seconds``: that share of requests wait before answering (client time-outs);
- ``truncate_rate``: that share of requests send half the body under the full ``Content-Length`` and hang up;
- ``shift_after_page`` / ``shift_count`` / ``shift_mode``: once page ``shift_after_page`` has been served, the
  first ``shift_count`` records of the window are updated (``update``: their updated_at becomes now, so they
  leave a frozen window) or that many new records appear at the front of the window (``insert``: late arrivals
  with a past updated_at), shifting every later page;
- ``bad_token``: every request answers 401, whatever the token.
"""

from __future__ import annotations

import bisect
import json
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from transforms.pull.window import RECORD_KEYS, local_now, parse_timestamp

SYNC_TS_FIELDS = {"NgayCapNhat"}  # fields written as yyyyMMddHHmmss when a record is updated


@dataclass
class Faults:
    error_rate: float = 0.0
    rate_limit_every: int = 0
    retry_after: float = 1.0
    slow_rate: float = 0.0
    slow_seconds: float = 0.0
    truncate_rate: float = 0.0
    shift_after_page: int = 0
    shift_count: int = 1
    shift_mode: str = "update"  # or "insert"
    shift_times: int = 1  # how many reads get shifted
    bad_token: bool = False
    seed: int = 0


@dataclass
class FaultLog:
    errors: int = 0
    rate_limited: int = 0
    slow: int = 0
    truncated: int = 0
    shifts: int = 0
    unauthorized: int = 0
    requests: int = 0
    shifted_ids: list[str] = field(default_factory=list)


class _Entity:
    """Records of one entity sorted by (updated_at, id); each record kept with its JSON text."""

    def __init__(self, name: str, records: list[dict]):
        self.name = name
        self.id_field, self.ts_field = RECORD_KEYS[name]
        latest: dict[str, tuple[datetime, dict]] = {}
        for rec in records:
            ts = parse_timestamp(rec.get(self.ts_field)) or datetime.min
            rid = str(rec.get(self.id_field))
            if rid not in latest or ts >= latest[rid][0]:
                latest[rid] = (ts, rec)
        self.keys: list[tuple[datetime, str]] = []
        self.blobs: list[str] = []
        for rid, (ts, rec) in sorted(latest.items(), key=lambda kv: (kv[1][0], kv[0])):
            self.keys.append((ts, rid))
            self.blobs.append(json.dumps(rec, ensure_ascii=False))
        self.by_id = {k[1]: k[0] for k in self.keys}

    def span(self, lo: datetime, hi: datetime) -> tuple[int, int]:
        return bisect.bisect_left(self.keys, (lo, "")), bisect.bisect_left(self.keys, (hi, ""))

    def upsert(self, rec: dict) -> None:
        rid = str(rec.get(self.id_field))
        ts = parse_timestamp(rec.get(self.ts_field)) or datetime.min
        if rid in self.by_id:
            i = bisect.bisect_left(self.keys, (self.by_id[rid], rid))
            del self.keys[i]
            del self.blobs[i]
        i = bisect.bisect_left(self.keys, (ts, rid))
        self.keys.insert(i, (ts, rid))
        self.blobs.insert(i, json.dumps(rec, ensure_ascii=False))
        self.by_id[rid] = ts

    def record(self, i: int) -> dict:
        return json.loads(self.blobs[i])


def load_data_dir(path: Path) -> dict[str, list[dict]]:
    """Records per entity from ``*.json``/``*.jsonl`` under ``path``; the entity is the nearest folder (or file
    stem) named like one (``<dir>/<entity>/x.jsonl``, an inbox's ``<dir>/<source>/<entity>/``, ``<entity>.json``)."""
    out: dict[str, list[dict]] = {}
    for f in sorted(Path(path).rglob("*")):
        if f.suffix.lower() not in (".json", ".jsonl") or not f.is_file() or f.name == "manifest.json":
            continue
        entity = next((p for p in [f.stem, *[q.name for q in f.relative_to(path).parents]] if p in RECORD_KEYS),
                      None)
        if entity is None:
            continue
        text = f.read_text(encoding="utf-8-sig")
        if f.suffix.lower() == ".jsonl":
            recs = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            doc = json.loads(text)
            recs = doc["data"] if isinstance(doc, dict) else doc
        out.setdefault(entity, []).extend(recs)
    return out


class FakePortal:
    """The server; ``with FakePortal(data, token=...) as portal: portal.base_url``."""

    def __init__(self, data: dict[str, list[dict]], *, token: str = "secret", faults: Faults | None = None,
                 host: str = "127.0.0.1", port: int = 0, max_page_size: int = 5000):
        self.token = token
        self.faults = faults or Faults()
        self.log = FaultLog()
        self.max_page_size = max_page_size
        self.entities = {name: _Entity(name, recs) for name, recs in data.items()}
        self._lock = threading.Lock()
        self._rng = random.Random(self.faults.seed)
        self._insert_seq = 0
        portal = self

        class Handler(_Handler):
            pass

        Handler.portal = portal
        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakePortal:
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-portal", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FakePortal:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # state changes, also used by tests to play "the source system" ------------------------------------------
    def update(self, entity: str, rec: dict) -> None:
        with self._lock:
            self.entities[entity].upsert(rec)

    def records_in(self, entity: str, lo: datetime, hi: datetime) -> list[dict]:
        with self._lock:
            e = self.entities[entity]
            a, b = e.span(lo, hi)
            return [e.record(i) for i in range(a, b)]

    def _shift(self, e: _Entity, lo: datetime, hi: datetime) -> None:
        f = self.faults
        a, b = e.span(lo, hi)
        if f.shift_mode == "insert":
            for _ in range(f.shift_count):
                self._insert_seq += 1
                src = e.record(a) if b > a else {e.id_field: "x", e.ts_field: lo.strftime("%Y%m%d%H%M%S")}
                new = dict(src)
                new[e.id_field] = f"{src[e.id_field]}-late{self._insert_seq}"
                ts = parse_timestamp(src.get(e.ts_field)) or lo
                new[e.ts_field] = _like(src.get(e.ts_field), max(lo, ts - timedelta(seconds=1)))
                e.upsert(new)
                self.log.shifted_ids.append(new[e.id_field])
        else:
            now = local_now() + timedelta(seconds=1)
            for i in range(a, min(b, a + f.shift_count))[::-1]:
                rec = e.record(i)
                rec[e.ts_field] = _like(rec.get(e.ts_field), now)
                e.upsert(rec)
                self.log.shifted_ids.append(str(rec[e.id_field]))
        self.log.shifts += 1


def _like(example: object, ts: datetime) -> str:
    """``ts`` written the way ``example`` was (compact sync form or ISO)."""
    if isinstance(example, str) and len(example) == 14 and example.isdigit():
        return ts.strftime("%Y%m%d%H%M%S")
    return ts.strftime("%Y-%m-%dT%H:%M:%S")


class _Handler(BaseHTTPRequestHandler):
    portal: FakePortal
    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16  # headers and body leave in one write (no Nagle / delayed-ACK stalls)
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # quiet
        pass

    def _send(self, status: int, body: bytes, headers: dict | None = None, truncate: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if truncate:
            self.send_header("Connection", "close")
        self.end_headers()
        if truncate:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def _error(self, status: int, message: str, headers: dict | None = None) -> None:
        self._send(status, json.dumps({"error": message}).encode(), headers)

    def do_GET(self):  # noqa: N802
        p = self.portal
        f = p.faults
        url = urlparse(self.path)
        parts = url.path.strip("/").split("/")
        with p._lock:
            p.log.requests += 1
            n = p.log.requests
            roll_err, roll_slow, roll_trunc = p._rng.random(), p._rng.random(), p._rng.random()
        if f.bad_token or self.headers.get("Authorization") != f"Bearer {p.token}":
            with p._lock:
                p.log.unauthorized += 1
            return self._error(401, "invalid or expired token")
        if len(parts) != 4 or parts[:3] != ["api", "v1", "export"] or parts[3] not in p.entities:
            return self._error(404, f"no such export: {url.path}")
        if f.rate_limit_every and n % f.rate_limit_every == 0:
            with p._lock:
                p.log.rate_limited += 1
            return self._error(429, "too many requests", {"Retry-After": f"{f.retry_after:g}"})
        if roll_err < f.error_rate:
            with p._lock:
                p.log.errors += 1
            return self._error(random.choice([500, 502, 503]), "upstream failure")
        if roll_slow < f.slow_rate:
            with p._lock:
                p.log.slow += 1
            time.sleep(f.slow_seconds)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            lo = parse_timestamp(q.get("updated_from")) or datetime.min
            hi = parse_timestamp(q.get("updated_to")) or datetime.max
            page = int(q.get("page", 1))
            size = min(int(q.get("page_size", 500)), p.max_page_size)
            if page < 1 or size < 1:
                raise ValueError
        except ValueError:
            return self._error(400, "bad query parameters")
        e = p.entities[parts[3]]
        with p._lock:
            a, b = e.span(lo, hi)
            total = b - a
            start = a + (page - 1) * size
            blobs = e.blobs[start: min(b, start + size)] if start < b else []
            if f.shift_after_page and page == f.shift_after_page and p.log.shifts < f.shift_times:
                p._shift(e, lo, hi)
        body = (f'{{"data": [{", ".join(blobs)}], "page": {page}, "page_size": {size}, '
                f'"total_pages": {max(1, -(-total // size))}, "total_records": {total}}}').encode("utf-8")
        truncate = roll_trunc < f.truncate_rate
        if truncate:
            with p._lock:
                p.log.truncated += 1
        self._send(200, body, truncate=truncate)


def serve(data_dir: Path | None, *, port: int, token: str, faults: Faults,
          generated: int = 0, seed: int = 0) -> FakePortal:
    data: dict[str, list[dict]] = load_data_dir(data_dir) if data_dir else {}
    if generated:
        from devkit.fakeportal.generate import generate_dossiers

        data.setdefault("dossiers", []).extend(generate_dossiers(generated, seed=seed))
    return FakePortal(data, token=token, faults=faults, port=port)
