"""Warehouses on object storage (``s3://bucket/prefix``): a local working copy and a conditional-write publish.

The pipeline writes a folder (atomic renames, links, an OS lock). On object storage a run works in a local copy of
the warehouse (a persistent cache per URL, ``TTHC_CACHE_DIR`` or ``~/.cache/tthc/warehouses``) that ``pull`` makes
equal to what the bucket holds (only changed objects are downloaded), and ``publish`` sends what the run changed
back with S3's documented conditional writes as the commit:

1. ``_sync/publishing.json`` is written (a publish is under way);
2. every changed file but the marts' generations and the ledger (batch files, core, reports, config);
3. the ledger (``_ledger.sqlite``, checkpointed): it names the batches whose files step 2 sent (a ledger outside
   the warehouse, PostgreSQL, is no file: nothing is sent, and warehouse/external_ledger.py keeps it one history
   with what was published);
4. the new generation's files ``_marts/<generation>/...`` (immutable: a new name per build), manifest last;
5. the pointer ``_marts/CURRENT`` (``{"generation": ...}``) with ``If-Match`` the ETag the run read at its start
   (``If-None-Match: *`` for the first): the one write that changes which marts readers see. A pointer changed
   meanwhile by another writer is refused (HTTP 412) and nothing is overwritten;
6. objects the run removed (pruned generations, rolled-back batch files) are deleted, then the marker.

Readers resolve ``CURRENT`` once and read that generation's files, which never change: they see the three KPI marts
of one build, never half of one. A publish interrupted at any step leaves the marker: the next ``pull`` reports it
(``Pulled.interrupted``) and the run removes batch files the ledger does not name and rebuilds core and marts in
full before publishing again (``remove_orphan_batches``; flows/provinces.py). Endpoint and credentials come from
the standard AWS settings (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from warehouse import generations, store

POINTER = f"{generations.GENERATIONS}/CURRENT"
MARKER = "_sync/publishing.json"
STATE = ".tthc_sync.json"  # local: what each file was when it last matched the bucket (rel -> etag, size, mtime)
LEDGER = "_ledger.sqlite"
BATCH_LAYERS = ("raw_", "stg_", "quarantine_")
_THREADS = 8


class PublishConflict(RuntimeError):
    """Another run published this warehouse between our pull and our publish (the pointer's ETag changed)."""


def is_url(where: str | os.PathLike | None) -> bool:
    return str(where or "").startswith("s3://")


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> (``bucket``, ``a/b``)."""
    if not is_url(url):
        raise ValueError(f"{url} is not an s3://bucket/prefix URL")
    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not bucket:
        raise ValueError(f"{url} names no bucket (expected s3://bucket/prefix)")
    return bucket, prefix.strip("/")


def join_url(url: str, *parts: str) -> str:
    return "/".join([url.rstrip("/"), *(p.strip("/") for p in parts)])


def client():
    """An S3 client from the standard AWS settings (boto3 reads AWS_ENDPOINT_URL and the credentials itself)."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
                        region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
                        or "us-east-1",
                        config=Config(retries={"max_attempts": 5, "mode": "standard"},
                                      max_pool_connections=_THREADS * 2))


def cache_dir(url: str, kind: str = "work") -> Path:
    """The persistent local copy of ``url`` (``work``: a run's working copy; ``read``: what ``tthc query`` reads)."""
    root = Path(os.environ.get("TTHC_CACHE_DIR") or Path.home() / ".cache" / "tthc" / "warehouses")
    return root / hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:20] / kind


def _is_error(exc: Exception, *codes: str) -> bool:
    return getattr(exc, "response", {}).get("Error", {}).get("Code") in codes


@dataclass
class Pulled:
    generation: str | None      # the published generation of the KPI marts (None: none yet)
    interrupted: dict | None    # the marker of a publish that did not finish, when there is one
    downloaded: int
    removed: int


class ObjectWarehouse:
    """One warehouse at ``url`` and its local copy ``local`` (default: ``cache_dir(url)``)."""

    def __init__(self, url: str, local: Path | None = None, s3=None):
        self.url = url.rstrip("/")
        self.bucket, self.prefix = split_url(self.url)
        self.local = Path(local) if local is not None else cache_dir(self.url)
        self.s3 = s3 or client()

    # -- keys and listing ------------------------------------------------------------------------------------
    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def listing(self) -> dict[str, tuple[str, int]]:
        """Every object under the prefix: relative path -> (ETag, size)."""
        out: dict[str, tuple[str, int]] = {}
        base = f"{self.prefix}/" if self.prefix else ""
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base):
            for o in page.get("Contents", []):
                out[o["Key"][len(base):]] = (o["ETag"], o["Size"])
        return out

    def read_json(self, rel: str) -> tuple[dict | None, str | None]:
        """An object's JSON and ETag, or (None, None) when it does not exist."""
        try:
            r = self.s3.get_object(Bucket=self.bucket, Key=self.key(rel))
        except Exception as exc:  # noqa: BLE001 - botocore's ClientError
            if _is_error(exc, "NoSuchKey", "404"):
                return None, None
            raise
        return json.loads(r["Body"].read()), r["ETag"]

    def published_generation(self) -> tuple[str | None, str | None]:
        """The generation readers see now and the pointer's ETag."""
        doc, etag = self.read_json(POINTER)
        return (doc or {}).get("generation"), etag

    # -- local state -------------------------------------------------------------------------------------------
    def _state(self) -> dict:
        p = self.local / STATE
        return json.loads(p.read_text()) if p.is_file() else {"files": {}}

    def _save_state(self, state: dict) -> None:
        p = self.local / STATE
        tmp = p.with_name(f".{STATE}.{uuid.uuid4().hex[:6]}")
        tmp.write_text(json.dumps(state, sort_keys=True))
        os.replace(tmp, p)

    def _local_files(self) -> dict[str, Path]:
        """Files of the local copy that belong to the warehouse: not dot-named (work in progress, the lock, the
        sync state), not links (``current`` and the marts' root links are made from the pointer), not SQLite's
        -wal/-shm side files (the ledger is checkpointed before it is sent)."""
        out: dict[str, Path] = {}
        for dirpath, dirnames, filenames in os.walk(self.local):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")
                           and not os.path.islink(os.path.join(dirpath, d))]
            for f in filenames:
                p = Path(dirpath) / f
                if f.startswith(".") or p.is_symlink() or f.endswith(("-wal", "-shm", "-journal")):
                    continue
                out[p.relative_to(self.local).as_posix()] = p
        return out

    @staticmethod
    def _stat(p: Path) -> list[int]:
        st = p.stat()
        return [st.st_size, st.st_mtime_ns]

    # -- pull ----------------------------------------------------------------------------------------------------
    def pull(self, select: Callable[[str], bool] | None = None) -> Pulled:
        """Make the local copy what the bucket holds (``select``: only the relative paths it accepts, and the
        published generation's marts only). Unchanged files (same ETag, same size and time since) stay."""
        self.local.mkdir(parents=True, exist_ok=True)
        remote = self.listing()
        remote.pop(POINTER, None)
        interrupted = self.read_json(MARKER)[0] if remote.pop(MARKER, None) else None
        generation, etag = self.published_generation()
        if select is not None:
            gen_prefix = f"{generations.GENERATIONS}/{generation}/"
            remote = {r: v for r, v in remote.items() if select(r) and (
                not r.startswith(f"{generations.GENERATIONS}/") or r.startswith(gen_prefix))}
        # SQLite's side files hold what a run wrote after the last publish (publish checkpoints them away): a run
        # killed before publishing left them, and they would put its unpublished batches back into the ledger
        for side in ("-wal", "-shm", "-journal"):
            (self.local / f"{LEDGER}{side}").unlink(missing_ok=True)
        state = self._state()
        files = state["files"]
        local = self._local_files()
        todo = []
        for rel, (et, size) in remote.items():
            known = files.get(rel)
            p = local.get(rel)
            if known and p is not None and known[0] == et and self._stat(p) == known[1:]:
                continue
            todo.append((rel, et))
        with ThreadPoolExecutor(_THREADS) as pool:
            for rel, et, st in pool.map(lambda a: self._download(*a), todo):
                files[rel] = [et, *st]
        removed = 0
        for rel, p in local.items():
            if rel not in remote:
                p.unlink(missing_ok=True)
                files.pop(rel, None)
                removed += 1
        state["pointer_etag"] = etag
        self._save_state(state)
        self._link_current(generation)
        return Pulled(generation, interrupted, len(todo), removed)

    def _download(self, rel: str, etag: str) -> tuple[str, str, list[int]]:
        final = self.local / rel
        table = rel.split("/", 1)[0]
        private = store.is_private(table) or table == "_secrets"
        final.parent.mkdir(parents=True, exist_ok=True)
        if private:
            os.chmod(final.parent, 0o700)
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
        r = self.s3.get_object(Bucket=self.bucket, Key=self.key(rel))
        with open(tmp, "wb") as fh:
            for chunk in r["Body"].iter_chunks(1 << 20):
                fh.write(chunk)
        os.chmod(tmp, 0o600 if private else 0o644)
        os.replace(tmp, final)
        return rel, r["ETag"], self._stat(final)

    def _link_current(self, generation: str | None) -> None:
        """``_marts/current`` -> the pointer's generation, and the marts' links at the root (store's layout)."""
        root = generations.generations_root(self.local)
        cur = root / generations.CURRENT
        if generation is None or not (root / generation / generations.GENERATION_MANIFEST).is_file():
            if cur.is_symlink():
                cur.unlink()
            return
        link = root / f".{generations.CURRENT}.{uuid.uuid4().hex[:8]}.lnk"
        os.symlink(generation, link)
        os.replace(link, cur)
        generations.link_tables(self.local, generations.generation_manifest(root / generation).get("tables", []))

    # -- publish -------------------------------------------------------------------------------------------------
    def publish(self, run_id: str = "") -> str | None:
        """Send what changed locally since ``pull`` and switch the pointer to the local current generation (steps
        1-6 of the module's docstring). Returns the published generation."""
        _checkpoint(self.local / LEDGER)
        state = self._state()
        files = state["files"]
        remote = self.listing()
        remote.pop(POINTER, None)
        remote.pop(MARKER, None)
        local = self._local_files()
        changed = [rel for rel, p in local.items()
                   if rel not in remote or rel not in files or files[rel][0] != remote[rel][0]
                   or files[rel][1:] != self._stat(p)]
        self._put_bytes(MARKER, json.dumps({"run": run_id, "started": datetime.now(UTC).isoformat()}).encode())
        gens = [r for r in changed if r.startswith(f"{generations.GENERATIONS}/")]
        first = [r for r in changed if r not in gens and r != LEDGER]
        manifests = [r for r in gens if r.endswith(generations.GENERATION_MANIFEST)]
        for batch in (first, [r for r in changed if r == LEDGER], [r for r in gens if r not in manifests],
                      manifests):
            with ThreadPoolExecutor(_THREADS) as pool:
                for rel, et, st in pool.map(lambda r: self._upload(r, local[r]), batch):
                    files[rel] = [et, *st]
        store.crash_point("objectstore_before_pointer")
        current = generations.current_generation(self.local)
        generation = current.name if current is not None else None
        if generation is not None and generation != self.published_generation()[0]:
            body = json.dumps({"generation": generation, "run": run_id,
                               "published_at": datetime.now(UTC).isoformat()}).encode()
            cond = {"IfMatch": state["pointer_etag"]} if state.get("pointer_etag") else {"IfNoneMatch": "*"}
            try:
                r = self.s3.put_object(Bucket=self.bucket, Key=self.key(POINTER), Body=body,
                                       ContentType="application/json", **cond)
            except Exception as exc:  # noqa: BLE001 - botocore's ClientError
                if _is_error(exc, "PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                    raise PublishConflict(f"another run published {self.url} while this one ran; its marts stay "
                                          f"published and this run's are not (run again)") from None
                raise
            state["pointer_etag"] = r["ETag"]
        store.crash_point("objectstore_after_pointer")
        gone = [self.key(rel) for rel in remote if rel not in local]
        for i in range(0, len(gone), 1000):
            self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in gone[i:i + 1000]],
                                                               "Quiet": True})
        for rel in gone:
            files.pop(rel[len(self.prefix) + 1:] if self.prefix else rel, None)
        self.s3.delete_object(Bucket=self.bucket, Key=self.key(MARKER))
        self._save_state(state)
        return generation

    def _put_bytes(self, rel: str, body: bytes) -> str:
        return self.s3.put_object(Bucket=self.bucket, Key=self.key(rel), Body=body)["ETag"]

    def _upload(self, rel: str, p: Path) -> tuple[str, str, list[int]]:
        st = self._stat(p)
        with open(p, "rb") as fh:
            etag = self.s3.put_object(Bucket=self.bucket, Key=self.key(rel), Body=fh)["ETag"]
        return rel, etag, st


def _checkpoint(db: Path) -> None:
    """Fold SQLite's write-ahead log into the ledger file, so the one file sent holds every committed row."""
    if db.is_file():
        con = sqlite3.connect(db)
        try:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            con.close()


def remove_orphan_batches(warehouse: Path, ledger_url: str) -> list[Path]:
    """After an interrupted publish: batch files (raw_, stg_, quarantine_) of batches the ledger does not name
    were sent before the ledger that would have named them; they are removed (the inbox file is ingested again)."""
    import sqlalchemy as sa

    engine = sa.create_engine(ledger_url)
    try:
        with engine.connect() as con:
            known = {r[0] for r in con.execute(sa.text("SELECT batch_id FROM batches"))}
    except sa.exc.OperationalError:  # no ledger yet: every batch file is an orphan
        known = set()
    finally:
        engine.dispose()
    removed = []
    for t in store.list_tables(warehouse):
        if t.startswith(BATCH_LAYERS):
            for f in store.table_files(warehouse, t):
                if f.stem not in known:
                    f.unlink()
                    removed.append(f)
    return removed


def clear_cache(url: str) -> None:
    shutil.rmtree(cache_dir(url).parent, ignore_errors=True)
