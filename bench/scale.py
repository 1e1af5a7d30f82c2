"""Benchmark: many provinces on Dask, warehouses on a folder or on object storage.

    .venv/bin/python bench/scale.py --provinces 2 --rows 50000 --rows 200000

For each size (``--rows``: dossier versions per province), writes ``--provinces`` province inboxes (agencies.csv,
the procedure catalogue and one flat dossier export of that many versions, devkit.sample.bulk, a seed per
province), then runs ``flows.provinces`` (the flow of ``tthc run-provinces``: every province's first night, then
the national roll-up) four times, each into a fresh warehouse root: on a local folder and on an S3 API server
(``moto_server`` started here on 127.0.0.1, in-memory), with a local Dask cluster of 1 and of 2 worker processes.
Prints a table: provinces, versions, storage, workers, wall seconds of the whole flow, the speed-up of 2 workers
over 1, the object-storage / folder ratio, the slowest province's own seconds and the peak RSS of a worker process
(the largest ``ru_maxrss`` the province tasks report). Prefect runs on a temporary API server (as the tests do).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
AS_OF = date(2025, 12, 31)


def make_inboxes(root: Path, provinces: int, rows: int) -> None:
    from devkit.sample import generate_inbox
    from devkit.sample.bulk import write_agencies_csv, write_dossier_csv

    catalogue = root.parent / "catalogue"
    if not catalogue.exists():
        generate_inbox(catalogue, seed=3, scale=0.05)
    for i in range(provinces):
        p = root / f"p{i + 1:02d}"
        write_agencies_csv(p / "agencies.csv")
        procs = p / "dvc_portal" / "procedures"
        procs.mkdir(parents=True, exist_ok=True)
        for f in (catalogue / "dvc_portal" / "procedures").glob("*.csv"):
            shutil.copy2(f, procs / f.name)
        (p / "one_stop" / "dossiers").mkdir(parents=True, exist_ok=True)
        write_dossier_csv(p / "one_stop" / "dossiers" / "export.csv", rows, seed=100 + i)


def run_once(inbox_root: Path, warehouse_root: str, workers: int) -> dict:
    from flows import provinces

    t0 = time.perf_counter()
    state = provinces.run(str(inbox_root), warehouse_root, AS_OF, workers=workers)
    wall = time.perf_counter() - t0
    res = state.result()
    if res["failed"]:
        raise SystemExit(f"provinces failed: {res['failed']}: {[r['message'] for r in res['provinces']]}")
    return {"wall": wall, "slowest": max(r["seconds"] for r in res["provinces"]),
            "rss": max(r["peak_rss_mb"] for r in res["provinces"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--provinces", type=int, default=2)
    ap.add_argument("--rows", type=int, action="append", help="dossier versions per province (repeatable)")
    args = ap.parse_args()
    sizes = args.rows or [50_000]
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("TTHC_PSEUDONYM_KEY", "bench-key")
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from tests.cluster import s3_server

    tmp = Path(tempfile.mkdtemp(prefix="tthc-scale-"))
    os.environ["TTHC_CACHE_DIR"] = str(tmp / "cache")
    rows_out = []
    try:
        with prefect_test_harness(server_startup_timeout=120), s3_server("bench") as s3env:
            os.environ.update(s3env)
            os.environ["PREFECT_API_URL"] = PREFECT_API_URL.value()  # the local cluster's workers inherit it
            for n in sizes:
                inbox_root = tmp / f"inbox_{n}"
                make_inboxes(inbox_root, args.provinces, n)
                got = {}
                for storage in ("folder", "s3"):
                    for workers in (1, 2):
                        where = (f"s3://bench/{storage}-{n}-{workers}" if storage == "s3"
                                 else str(tmp / f"wh_{n}_{workers}"))
                        got[storage, workers] = run_once(inbox_root, where, workers)
                        print(f"  {n} rows, {storage}, {workers} worker(s): {got[storage, workers]}", flush=True)
                for storage in ("folder", "s3"):
                    for workers in (1, 2):
                        g = got[storage, workers]
                        rows_out.append((args.provinces, n, storage, workers, g["wall"],
                                         got[storage, 1]["wall"] / g["wall"],
                                         g["wall"] / got["folder", workers]["wall"], g["slowest"], g["rss"]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nmachine: {os.cpu_count()} cores (shared with other work while measured); moto_server in memory as S3")
    head = ("provinces", "versions/prov", "storage", "workers", "wall s", "speed-up", "s3/folder",
            "slowest prov s", "peak RSS MB/worker")
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for p, n, storage, w, wall, su, ratio, slow, rss in rows_out:
        print(f"{p} | {n:,} | {storage} | {w} | {wall:.1f} | {su:.2f} | {ratio:.2f} | {slow:.1f} | {rss:,}")


if __name__ == "__main__":
    main()
