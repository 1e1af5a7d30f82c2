"""The dossier counters (dates ceiled to the cut dates, equal dossiers collapsed, received/resolved counters on one
period each) equal the plain count over every classified (dossier, period) pair, on random dossiers that hit the
edges: dates on period boundaries (1st, 14th, 15th, month ends), end before receipt, due dates around E, JSON
supplement lists, flat supplement fields, ratings, payments, linked feedback, as_of mid-month, selected periods."""

import random
from datetime import date, datetime, timedelta

import pytest

from transforms import marts
from transforms.core import duck

BOUNDARY_DAYS = (1, 2, 13, 14, 15, 16, 27, 28, 29, 30, 31)


def _day(rng: random.Random, lo: date, hi: date) -> date:
    if rng.random() < 0.6:  # near a period boundary
        for _ in range(10):
            d = lo + timedelta(days=rng.randrange((hi - lo).days + 1))
            try:
                d = d.replace(day=rng.choice(BOUNDARY_DAYS))
            except ValueError:
                continue
            if lo <= d <= hi:
                return d
    return lo + timedelta(days=rng.randrange((hi - lo).days + 1))


def _ts(d: date, hour: int = 9) -> datetime:
    return datetime(d.year, d.month, d.day, hour)


def _fill(staged, n: int, seed: int) -> None:
    rng = random.Random(seed)
    staged.procedure(legal_days=5)
    staged.procedure(code="1.000002", legal_days=None, is_paper_result=False)
    lo, hi = date(2022, 11, 20), date(2026, 2, 10)
    for i in range(n):
        agency = rng.choice(["C1", "C2", "C9", "S1", "D1"])
        rd = _day(rng, lo, hi)
        kw = {"procedure_code": rng.choice(["1.000001", "1.000002"]), "channel": rng.choice([1, 2]),
              "status": rng.choice([2, 4, 5, 7, 9, 10]), "field_code": rng.choice(["F1", "F2", None]),
              "has_digitized_components": rng.random() < 0.5, "reused_digitized_data": rng.random() < 0.3,
              "has_e_result": rng.random() < 0.5, "fee_vnd": rng.choice([0, 0, 20000])}
        if rng.random() < 0.7:
            kw["due_at"] = _ts(rd + timedelta(days=rng.randrange(-3, 60)))
        r = rng.random()
        if r < 0.6:
            kw["finished_at"] = _ts(rd + timedelta(days=rng.randrange(-20, 150)))
        elif r < 0.7:
            kw["status"] = 9
            kw["returned_at"] = _ts(rd + timedelta(days=rng.randrange(0, 90)))
        fmt = "flat_export"
        if rng.random() < 0.3:
            fmt = "national_sync"
            reqs = []
            for _ in range(rng.randrange(0, 4)):
                q = rd + timedelta(days=rng.randrange(0, 90))
                sup = q + timedelta(days=rng.randrange(0, 40)) if rng.random() < 0.6 else None
                reqs.append({"requested_at": _ts(q), "received_at": _ts(sup) if sup else None})
            kw["supplement_requests"] = reqs if reqs or rng.random() < 0.5 else None
        elif rng.random() < 0.4:
            q = rd + timedelta(days=rng.randrange(0, 90))
            kw["supplement_count"] = rng.randrange(1, 4)
            kw["supplement_requested_at"] = _ts(q)
            if rng.random() < 0.5:
                kw["supplement_received_at"] = _ts(q + timedelta(days=rng.randrange(0, 40)))
        did = f"{agency}-{i}"
        staged.dossier(did, received=_ts(rd), fmt=fmt, **kw)
        if rng.random() < 0.2:
            for j in range(rng.randrange(1, 3)):
                staged.add("ratings", rating_id=f"R{i}-{j}", dossier_id=did, rating=rng.choice([1, 3, 4]),
                           rated_at=_ts(rd + timedelta(days=rng.randrange(0, 120)), 9 + j))
        if kw["fee_vnd"] and rng.random() < 0.7:
            staged.add("payments", payment_id=f"P{i}", dossier_id=did, amount_vnd=20000, status="success",
                       paid_at=_ts(rd + timedelta(days=rng.randrange(-2, 60))))
        if rng.random() < 0.1:
            staged.add("feedback", feedback_id=f"F{i}", agency_code="S1", dossier_id=did,
                       received_at=_ts(rd + timedelta(days=rng.randrange(0, 90))))


def _both(wh, as_of: date, selected: set[str] | None):
    con = duck(wh)
    try:
        marts.load_agencies(con, wh)
        marts.load_periods(con, as_of, selected)
        D, R = marts.core_table(wh, "core_dossiers"), marts.core_table(wh, "core_ratings")
        marts.load_dossier_rows(con, D, R, as_of)  # dossier_rows, as explain reads them
        marts.pairs_reference_agg(con, marts.bases_sql(con))
        marts.count_dossiers(con, D, R, as_of)
        cols = ", ".join(f"CAST({c} AS BIGINT)" for c in marts.DOSSIER_COUNTERS)
        q = (f"SELECT owner_code, period_id, k.field_code, k.field_name, {cols} FROM {{}} x "
             f"JOIN field_keys k USING (field_key) ORDER BY ALL")
        return (con.execute(q.format("dossier_counts")).fetchall(),
                con.execute(q.format("dossier_counts_reference")).fetchall())
    finally:
        con.close()


@pytest.mark.parametrize("seed", [1, 2])
def test_dossier_counters_equal_the_pair_by_pair_count(staged, seed):
    _fill(staged, 400, seed)
    staged.build(as_of=date(2025, 12, 31))
    for as_of, selected in [(date(2025, 12, 31), None), (date(2025, 11, 20), None), (date(2025, 11, 14), None),
                            (date(2025, 12, 31), marts.changed_periods([date(2025, 10, 3)], date(2025, 12, 31)))]:
        fast, ref = _both(staged.wh, as_of, selected)
        assert len(ref) > 50
        assert fast == ref, (as_of, [r for r in fast if r not in ref][:3], [r for r in ref if r not in fast][:3])
