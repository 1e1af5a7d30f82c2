"""Conformance: the full pipeline on the shared sample inbox must reproduce the independently computed marts in
../shared/samples/expected beside the repository (as_of 2025-12-31): same rows on the key columns, counts exact, values, ratios and
scores within 1e-9."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples"  # ../shared/samples beside the repository
AS_OF = date(2025, 12, 31)
KEYS = {
    "mart_kpi__agency_period": ["agency_code", "period_type", "period", "kpi_code"],
    "mart_766__agency_period": ["agency_code", "period_type", "period", "indicator_code"],
    "mart_tt01_form06__agency_period": ["agency_code", "period_basis", "period_type", "period", "field_code",
                                        "field_name"],
}


def _rows(path: Path, keys: list[str]) -> tuple[dict, dict]:
    import duckdb

    rel = duckdb.sql(f"SELECT * FROM read_parquet('{path}/*.parquet')")
    types = dict(zip(rel.columns, [str(t) for t in rel.types], strict=True))
    out = {}
    for rec in rel.fetchall():
        row = dict(zip(rel.columns, rec, strict=True))
        k = tuple(row[c] for c in keys)
        assert k not in out, f"duplicate key {k} in {path}"
        out[k] = row
    return out, types


def compare_mart(expected_dir: Path, actual_dir: Path, keys: list[str], tol: float = 1e-9) -> list[str]:
    """Differences between two versions of a mart (empty list when they conform)."""
    exp, exp_types = _rows(expected_dir, keys)
    act, act_types = _rows(actual_dir, keys)
    problems = []
    if exp_types != act_types:
        problems.append(f"column types differ: expected {exp_types}, got {act_types}")
    for k in sorted(set(exp) - set(act), key=str)[:20]:
        problems.append(f"missing row {k}")
    for k in sorted(set(act) - set(exp), key=str)[:20]:
        problems.append(f"unexpected row {k}")
    for k in sorted(set(exp) & set(act), key=str):
        e, a = exp[k], act[k]
        for c, ev in e.items():
            av = a.get(c)
            if isinstance(ev, float) or isinstance(av, float):
                same = (ev is None and av is None) or (
                    ev is not None and av is not None and (math.isclose(ev, av, rel_tol=0, abs_tol=tol)))
            else:
                same = ev == av
            if not same:
                problems.append(f"{k} {c}: expected {ev!r}, got {av!r}")
    return problems


def run_pipeline(inbox: Path, warehouse: Path) -> None:
    """Ingest every inbox file with the lead's ingest (transforms.ingest), then build core and marts."""
    from transforms.core import build_core
    from transforms.ingest import discover, ingest_file, load_agencies
    from transforms.marts import build_marts
    from warehouse.ledger import Ledger

    warehouse.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(f"sqlite:///{warehouse / '_ledger.sqlite'}")
    try:
        ledger.start_run("r-conformance", AS_OF, str(inbox))
        codes = [a["agency_code"] for a in load_agencies(inbox / "agencies.csv")]
        for f in discover(inbox):
            out = ingest_file(f, warehouse=warehouse, ledger=ledger, run_id="r-conformance", agency_codes=codes,
                              pseudonym_key=b"conformance-test-key")
            assert out.status in ("staged", "duplicate"), f"{f.rel}: {out.status} {out.error}"
    finally:
        ledger.dispose()
    build_core(warehouse, inbox / "agencies.csv")
    build_marts(warehouse, AS_OF)


@pytest.mark.integration
@pytest.mark.skipif(not (SAMPLES / "expected").is_dir(), reason="../shared/samples (inbox + expected marts) absent")
def test_marts_match_expected(tmp_path):
    pytest.importorskip("transforms.ingest", reason="the lead's ingest (transforms.ingest) is not on main yet")
    wh = tmp_path / "wh"
    run_pipeline(SAMPLES / "inbox", wh)
    problems = {}
    for mart, keys in KEYS.items():
        p = compare_mart(SAMPLES / "expected" / mart, wh / mart, keys)
        if p:
            problems[mart] = p
    report = "\n".join(f"{m}: {len(p)} differences\n  " + "\n  ".join(p[:15]) for m, p in problems.items())
    assert not problems, report
