"""The export API client against the fake portal, one injected fault at a time: nothing lost, nothing doubled."""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import datetime

import pytest

from devkit.fakeportal.server import FakePortal, Faults
from transforms.pull.http import (PullStats, RetryBudgetExceeded, RetryPolicy, SourceAuthError,
                                  UnstableWindowError, pull_entity)
from transforms.pull.window import local_now, parse_timestamp, record_key

FAST = dict(base_delay=0.005, max_delay=0.05, max_retry_seconds=30, timeout=5)
START = datetime(2000, 1, 1)


def _pull(portal: FakePortal, *, token="secret", policy=None, window_to=None, page_size=100, sleep=time.sleep,
          source="one_stop"):
    stats = PullStats()
    window_to = window_to or local_now()
    out = []
    for page in pull_entity(portal.base_url, token, "dossiers", START, window_to, page_size, source=source,
                            policy=policy or RetryPolicy(**FAST), stats=stats, sleep=sleep,
                            rng=random.Random(0)):
        out.extend(page)
    return out, stats, window_to


def _keys(records):
    return [record_key(r, "dossiers") for r in records]


def _assert_exact(got, expected):
    keys = _keys(got)
    dupes = [k for k, n in Counter(keys).items() if n > 1]
    assert not dupes, f"duplicated versions: {dupes[:5]}"
    assert set(keys) == set(_keys(expected)), "lost or extra versions"


def test_clean_pull_reads_the_window_once(dossiers):
    with FakePortal({"dossiers": dossiers}, token="secret") as portal:
        got, stats, _ = _pull(portal)
    _assert_exact(got, dossiers)
    assert stats.passes == 1 and stats.pages == 12 and stats.retries == 0


def test_window_bounds_are_respected(dossiers):
    stamps = sorted(parse_timestamp(d["NgayCapNhat"]) for d in dossiers)
    lo, hi = stamps[100], stamps[700]
    with FakePortal({"dossiers": dossiers}, token="secret") as portal:
        got = [r for p in pull_entity(portal.base_url, "secret", "dossiers", lo, hi, 50) for r in p]
    expected = [d for d in dossiers if lo <= parse_timestamp(d["NgayCapNhat"]) < hi]
    _assert_exact(got, expected)
    assert len(got) == 600


@pytest.mark.parametrize("faults,fault_counter", [
    (Faults(error_rate=0.3, seed=1), "errors"),
    (Faults(truncate_rate=0.3, seed=2), "truncated"),
    (Faults(slow_rate=0.25, slow_seconds=0.6, seed=3), "slow"),
])
def test_transient_faults_lose_and_double_nothing(dossiers, faults, fault_counter):
    policy = RetryPolicy(**{**FAST, "timeout": 0.3})
    with FakePortal({"dossiers": dossiers}, token="secret", faults=faults) as portal:
        got, stats, _ = _pull(portal, policy=policy)
        injected = getattr(portal.log, fault_counter)
    assert injected > 0, "the fault was never injected"
    assert stats.retries >= injected
    _assert_exact(got, dossiers)


def test_429_waits_for_retry_after(dossiers):
    waits: list[float] = []

    def sleep(s):
        waits.append(s)
        time.sleep(s)

    with FakePortal({"dossiers": dossiers}, token="secret",
                    faults=Faults(rate_limit_every=3, retry_after=0.07)) as portal:
        got, stats, _ = _pull(portal, sleep=sleep)
        limited = portal.log.rate_limited
    assert limited >= 3
    assert waits.count(0.07) == limited  # exactly the server's Retry-After, not our own backoff
    _assert_exact(got, dossiers)


def test_page_shift_by_updates_loses_nothing_and_next_window_gets_the_new_versions(dossiers):
    faults = Faults(shift_after_page=2, shift_count=7)
    with FakePortal({"dossiers": dossiers}, token="secret", faults=faults) as portal:
        before = portal.records_in("dossiers", START, datetime(2100, 1, 1))
        got, stats, window_to = _pull(portal)
        shifted = set(portal.log.shifted_ids)
        assert portal.log.shifts == 1 and len(shifted) == 7
        _assert_exact(got, before)  # every version present when the pull started, once
        assert stats.passes == 2  # the shift was noticed and the window re-read
        # the next night: the updated versions are in the next window
        watermark = max(parse_timestamp(r["NgayCapNhat"]) for r in got)
        nxt = [r for p in pull_entity(portal.base_url, "secret", "dossiers", watermark, local_now().replace(
            year=2100), 100) for r in p]
    assert {r["MaHoSo"] for r in nxt} >= shifted


def test_page_shift_by_late_inserts_is_caught_by_a_second_pass(dossiers):
    faults = Faults(shift_after_page=3, shift_count=4, shift_mode="insert")
    with FakePortal({"dossiers": dossiers}, token="secret", faults=faults) as portal:
        got, stats, _ = _pull(portal)
        after = portal.records_in("dossiers", START, datetime(2100, 1, 1))
        assert len(portal.log.shifted_ids) == 4
    _assert_exact(got, after)  # the late arrivals too, and no page read twice counted twice
    assert stats.passes == 2 and stats.repeats_dropped > 0


def test_endless_shifting_fails_instead_of_committing(dossiers):
    faults = Faults(shift_after_page=2, shift_count=1, shift_times=99)
    with FakePortal({"dossiers": dossiers}, token="secret", faults=faults) as portal:
        with pytest.raises(UnstableWindowError, match="one_stop/dossiers"):
            _pull(portal, policy=RetryPolicy(**FAST, max_passes=3))


@pytest.mark.parametrize("faults,token", [(Faults(bad_token=True), "secret"), (Faults(), "wrong")])
def test_bad_token_fails_at_once_naming_the_source(dossiers, faults, token):
    with FakePortal({"dossiers": dossiers}, token="secret", faults=faults) as portal:
        with pytest.raises(SourceAuthError) as err:
            _pull(portal, token=token, source="dvc_portal")
        assert portal.log.unauthorized == 1  # no retry
    msg = str(err.value)
    assert "dvc_portal" in msg and "401" in msg and "TTHC_DVC_PORTAL_TOKEN" in msg
    assert token not in msg.replace("token", "")  # the token itself is never echoed


def test_retry_budget_caps_a_dead_source(dossiers):
    with FakePortal({"dossiers": dossiers}, token="secret", faults=Faults(error_rate=1.0)) as portal:
        with pytest.raises(RetryBudgetExceeded, match="one_stop/dossiers.*HTTP 5"):
            _pull(portal, policy=RetryPolicy(base_delay=0.01, max_delay=0.02, max_attempts=50,
                                             max_retry_seconds=0.3))
        assert 3 <= portal.log.errors < 50


def test_fake_portal_agencies_file_covers_the_generated_dossiers(tmp_path):
    """`tthc fake-portal --generate N --agencies-out F`: F is an agencies.csv the pipeline loads, holding every
    agency a generated dossier names (without it, pulling the fake portal quarantines every dossier)."""
    from transforms.ingest import load_agencies
    from devkit.fakeportal.generate import generate_dossiers, write_agencies_csv

    write_agencies_csv(tmp_path / "a" / "agencies.csv")
    codes = {a["agency_code"] for a in load_agencies(tmp_path / "a" / "agencies.csv")}
    assert {d["MaDonVi"] for d in generate_dossiers(500, seed=3)} <= codes
