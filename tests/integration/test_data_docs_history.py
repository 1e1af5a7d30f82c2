"""GX Data Docs keep every run's pages (each run is its own process with its own GX context) and open offline:
no page references a CDN, and headless Chromium renders them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration

RUN = textwrap.dedent("""
    import sys
    from datetime import date
    from pathlib import Path
    from types import SimpleNamespace
    from transforms.quality.gate import check_batch
    from transforms.quality.report import build_reports
    from devkit.synth import DOSSIERS, write_dossier_batch
    wh, seed = Path(sys.argv[1]), int(sys.argv[2])
    b = write_dossier_batch(wh, 200, end=date(2025, 12, 31), seed=seed)
    g = check_batch(wh, DOSSIERS, b, settings=SimpleNamespace(dq_gx_sample_rows=200), as_of=date(2025, 12, 31))
    build_reports(wh, f"run-{seed}", [g])
    print(b)
""")


def test_data_docs_keep_history_across_runs_and_open_offline(tmp_path):
    wh = tmp_path / "wh"
    batches = []
    for seed in (1, 2, 3):
        r = subprocess.run([sys.executable, "-c", RUN, str(wh), str(seed)], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        batches.append(r.stdout.strip().splitlines()[-1])
    site = wh / "_reports" / "data_docs"
    pages = sorted(site.glob("validations/**/*.html"))
    assert len(pages) == 3  # one per run: earlier runs' pages are kept (GX's own builder deleted them)
    index = (site / "index.html").read_text(encoding="utf-8")
    assert all(b in index for b in batches) and "3 lần kiểm tra" in index
    for page in [site / "index.html", *pages]:
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"""(?:src|href)=["']https?://""", text), page  # nothing loads from the internet
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install -y chromium): the offline pages were checked as text")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             f"--user-data-dir={tmp_path / 'chrome'}"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", pages[0].as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    assert "stg_one_stop__dossiers" in dom and "<table" in dom
    dom = subprocess.run([chromium, *flags, "--dump-dom", (site / "index.html").as_uri()], capture_output=True,
                         text=True, timeout=120).stdout
    assert all(b in dom for b in batches)
