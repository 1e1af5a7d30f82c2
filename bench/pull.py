"""Records per second pulled from the fake portal over loopback and from PostgreSQL (no staging).

    .venv/bin/python bench/pull.py [--records 100000] [--page-size 500] [--pg-url URL]

Prints a table. PostgreSQL is skipped (with the reason) when unreachable.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devkit.fakeportal.generate import generate_dossiers  # noqa: E402
from devkit.fakeportal.server import FakePortal  # noqa: E402
from transforms.pull.http import PullStats, pull_entity  # noqa: E402
from transforms.pull.sql import OneStopSqlSettings, pull_sql_dossiers  # noqa: E402

START, END = datetime(2000, 1, 1), datetime(2100, 1, 1)


def bench_api(records, page_size):
    with FakePortal({"dossiers": records}, token="bench") as portal:
        stats = PullStats()
        t0 = time.perf_counter()
        n = sum(len(p) for p in pull_entity(portal.base_url, "bench", "dossiers", START, END, page_size,
                                            source="one_stop", stats=stats))
        dt = time.perf_counter() - t0
    return n, dt, f"{stats.pages} pages, {stats.passes} pass(es)"


def bench_sql(records, url, chunk):
    import sqlalchemy as sa

    from devkit.fakeportal.replica import create_replica

    eng = sa.create_engine(url, poolclass=sa.pool.NullPool)
    schema = f"tthc_bench_{uuid.uuid4().hex[:8]}"
    with eng.begin() as c:
        c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        t0 = time.perf_counter()
        create_replica(eng, records, schema=schema)
        load = time.perf_counter() - t0
        t0 = time.perf_counter()
        n = sum(len(c) for c in pull_sql_dossiers(None, START, END, config=OneStopSqlSettings(db_schema=schema),
                                                  engine=eng, chunk_rows=chunk))
        dt = time.perf_counter() - t0
    finally:
        with eng.begin() as c:
            c.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        eng.dispose()
    return n, dt, f"chunks of {chunk}; loading the table took {load:.1f} s"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--page-size", type=int, default=500)
    ap.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    a = ap.parse_args()
    t0 = time.perf_counter()
    records = generate_dossiers(a.records, seed=1)
    print(f"generated {len(records):,} dossiers in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    rows = [("fake portal (HTTP, loopback)", *bench_api(records, a.page_size))]
    try:
        rows.append(("PostgreSQL (server-side cursor)", *bench_sql(records, a.pg_url, a.page_size)))
    except Exception as exc:  # pragma: no cover - depends on the machine
        rows.append(("PostgreSQL", 0, 0.0, f"skipped: {type(exc).__name__}: {str(exc)[:80]}"))
    print(f"\n{'source':34} {'records':>9} {'seconds':>8} {'records/s':>10}  notes")
    for name, n, dt, note in rows:
        rate = f"{n / dt:,.0f}" if dt else "-"
        print(f"{name:34} {n:>9,} {dt:>8.2f} {rate:>10}  {note}")


if __name__ == "__main__":
    main()
