"""Bench of the data-quality gate: time and peak RSS per batch size, beside the DuckDB floor.

Floor = the suite's row rules in one DuckDB query on the batch (rules.evaluate alone). Gate = check_batch:
that query + history checks + the GX checkpoint on its bounded sample. Each size runs in a fresh process
(peak RSS is per process); GX's one-off import (~2.5 s) is paid once per process before timing, as in a flow
that checks many batches, and reported on its own line.
Last line: ``ratio=<gate/floor at 1M> peak_rss_mb=<gate peak RSS at 1M>``.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

SIZES = [10_000, 100_000, 1_000_000]


def gen(size: int) -> None:
    from devkit.synth import write_dossier_batch

    wh = Path(tempfile.mkdtemp(prefix="dqbench"))
    b = write_dossier_batch(wh, size, end=date(2025, 12, 30), days=30, agencies=150)
    print(json.dumps({"wh": str(wh), "batch": b}))


def child(wh: str, b: str, mode: str) -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    from types import SimpleNamespace

    from devkit.synth import DOSSIERS

    wh = Path(wh)
    imp = 0.0
    if mode == "gate":
        t = time.perf_counter()
        from transforms.quality import gx_runner

        gx_runner._context()
        imp = time.perf_counter() - t
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    if mode == "floor":
        import duckdb

        from transforms.quality import rules

        con = duckdb.connect(config={"threads": 2})
        rules.evaluate(con, wh / DOSSIERS / f"{b}.parquet", DOSSIERS, wh, "dossier_id")
        con.close()
        gx = 0.0
    else:
        from transforms.quality.gate import check_batch

        g = check_batch(wh, DOSSIERS, b, settings=SimpleNamespace(freshness_lag_days=3), as_of=date(2025, 12, 31))
        gx = g.gx_seconds
        assert g.passed, g.summary_line()
    sec = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": sec, "peak_rss_mb": rss, "rss_before_mb": rss0, "gx_seconds": gx,
                      "gx_import_seconds": imp}))


def _py(*args) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True,
                         env={**os.environ, "GX_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    print(f"{'rows':>10} {'floor_s':>8} {'floor_rss_mb':>12} {'gate_s':>7} {'gx_s':>6} {'gate_rss_mb':>11} {'ratio':>6}")
    last = None
    for n in SIZES:
        d = _py("--gen", str(n))
        f, g = _py("--child", d["wh"], d["batch"], "floor"), _py("--child", d["wh"], d["batch"], "gate")
        shutil.rmtree(d["wh"], ignore_errors=True)
        ratio = g["seconds"] / f["seconds"]
        print(f"{n:>10,} {f['seconds']:>8.2f} {f['peak_rss_mb']:>12.0f} {g['seconds']:>7.2f} {g['gx_seconds']:>6.2f} "
              f"{g['peak_rss_mb']:>11.0f} {ratio:>6.1f}")
        last = (ratio, g)
    print(f"(GX import + context, once per process: {last[1]['gx_import_seconds']:.1f} s, not in gate_s)")
    print(f"ratio={last[0]:.2f} peak_rss_mb={last[1]['peak_rss_mb']:.0f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--gen":
        gen(int(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()
