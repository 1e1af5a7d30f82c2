"""The benchmarks' floors double as independent cross-checks of the pipeline on random bulk data.

Each bench computes, besides its timings (never asserted here), the pipeline's result a second way: the ingest
floor types the CSV in one hand-written DuckDB statement and must produce exactly the pipeline's staged rows;
the marts floor counts population, on-time, online and digitised dossiers per month in one hand-written query
and must equal the built mart's province rows, and the incremental build must equal a full rebuild. Run small,
so the suite stays quick; a failure means the pipeline and its independent restatement disagree.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bench(script: str, *args: str) -> list[str]:
    res = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], capture_output=True, text=True,
                         timeout=600, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.strip().splitlines()
    assert re.fullmatch(r"ratio=\d+\.\d\d peak_rss_mb=\d+", lines[-1]), lines[-1]  # what scripts read
    return lines


def test_ingest_floor_types_exactly_like_the_pipeline(tmp_path):
    out = _bench("ingest.py", "--rows", "20000", "--seed", "5", "--repeat", "1", "--workdir", str(tmp_path))
    assert "floor output = pipeline staging on 22 columns: yes" in out, out
    assert "pipeline: 20,000 staged, 0 quarantined" in out


def test_marts_floor_counts_like_the_marts_and_a_night_like_a_full_build(tmp_path):
    out = _bench("marts.py", "--rows", "30000", "--incremental", "--check", "--repeat", "1", "--work", str(tmp_path))
    assert "floor counts = mart counts (population, on time, online, digitised; 36 months): yes" in out, out
    assert any(line.startswith("incremental_s=") and line.endswith("marts_equal_full_rebuild=True")
               for line in out), out
