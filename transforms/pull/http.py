"""Client for the export HTTP API (sources.md section 2), built on httpx; no Prefect here.

``GET {base_url}/api/v1/export/{entity}?updated_from=..&updated_to=..&page=N&page_size=M`` with a bearer token,
answering ``{"data": [...], "page", "page_size", "total_pages", "total_records"}``.

Failure handling, per request: time-outs, connection errors, truncated or unreadable bodies and 5xx answers are
retried with exponential backoff and jitter; 429 waits for ``Retry-After``; 401/403 fail at once with a message
naming the source (a wrong token never gets better by retrying); other 4xx fail at once. All waiting of one pull
shares a budget (``RetryPolicy.max_retry_seconds``): past it the pull fails instead of hanging the night.

Completeness while pages shift (records updated during the read): see ``pull_entity`` and docs/pulling.md.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import datetime

import httpx

from transforms.pull.window import RECORD_KEYS, Window, format_param, parse_timestamp, record_key

API_PATH = "/api/v1/export/{entity}"
TOKEN_ENV = {"dvc_portal": "TTHC_DVC_PORTAL_TOKEN", "one_stop": "TTHC_ONE_STOP_TOKEN"}


class PullError(RuntimeError):
    """A pull of one source/entity failed; the message says which and why. The watermark stays where it was."""

    def __init__(self, message: str, *, source: str | None = None, entity: str | None = None):
        super().__init__(message)
        self.source = source
        self.entity = entity


class SourceAuthError(PullError):
    """The source refused our credentials (401/403). Not retried."""


class RetryBudgetExceeded(PullError):
    """Retries of one pull used up their time (or attempt) budget."""


class UnstableWindowError(PullError):
    """The window kept changing while it was read, more passes than allowed."""


@dataclass
class RetryPolicy:
    timeout: float = 30.0  # seconds per request (connect, read, write, pool)
    max_attempts: int = 8  # per request, the first one included
    base_delay: float = 0.5  # backoff: base * 2**retry, capped by max_delay, with jitter
    max_delay: float = 30.0
    max_retry_seconds: float = 600.0  # all waiting of one pull: sleeps + failed attempts
    max_passes: int = 5  # full reads of the window until it is seen stable

    def backoff(self, retry: int, rng: random.Random) -> float:
        cap = min(self.max_delay, self.base_delay * (2 ** retry))
        return cap / 2 + rng.uniform(0, cap / 2)  # "equal jitter": never 0, never above the cap


@dataclass
class _Budget:
    spent: float = 0.0
    retries: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _where(source: str | None, entity: str) -> str:
    return f"{source or 'export API'}/{entity}"


def _auth_message(source: str | None, entity: str, base_url: str, status: int) -> str:
    env = TOKEN_ENV.get(source or "", "the source's token setting")
    return (f"{source or 'export API'}: the export API at {base_url} refused our token (HTTP {status}) while "
            f"pulling {entity}; check {env} (or its Prefect Secret block). Not retried; this source's "
            f"watermark stays where it was.")


def _fetch_page(client: httpx.Client, base_url: str, entity: str, params: dict, *, source: str | None,
                policy: RetryPolicy, budget: _Budget, rng: random.Random,
                sleep: Callable[[float], None]) -> dict:
    url = API_PATH.format(entity=entity)
    attempt = 0
    while True:
        started = time.monotonic()
        delay: float
        try:
            resp = client.get(url, params=params)
            status = resp.status_code
            if status in (401, 403):
                raise SourceAuthError(_auth_message(source, entity, base_url, status), source=source,
                                      entity=entity)
            if status == 429:
                ra = _retry_after_seconds(resp.headers.get("Retry-After"))
                reason = "HTTP 429 (rate limited)"
                delay = ra if ra is not None else policy.backoff(attempt, rng)
            elif status >= 500:
                reason = f"HTTP {status}"
                delay = policy.backoff(attempt, rng)
            elif status != 200:
                raise PullError(f"{_where(source, entity)}: the export API answered HTTP {status} to "
                                f"{url} {params}: {resp.text[:200]!r}", source=source, entity=entity)
            else:
                try:
                    body = resp.json()
                    _check_shape(body)
                    return body
                except ValueError as exc:
                    reason = f"unreadable body ({exc.__class__.__name__}: {str(exc)[:80]})"
                    delay = policy.backoff(attempt, rng)
        except httpx.TimeoutException:
            reason = "time-out"
            delay = policy.backoff(attempt, rng)
        except httpx.TransportError as exc:  # connection refused/reset, body cut short, ...
            reason = f"{exc.__class__.__name__}"
            delay = policy.backoff(attempt, rng)
        attempt += 1
        budget.retries += 1
        budget.reasons[reason] = budget.reasons.get(reason, 0) + 1
        budget.spent += time.monotonic() - started
        if attempt >= policy.max_attempts or budget.spent + delay > policy.max_retry_seconds:
            raise RetryBudgetExceeded(
                f"{_where(source, entity)}: giving up on page {params.get('page')} after {attempt} attempts "
                f"({budget.spent:.1f}s of the {policy.max_retry_seconds:.0f}s retry budget used; next wait "
                f"{delay:.1f}s); last problem: {reason}", source=source, entity=entity)
        sleep(delay)
        budget.spent += delay


def _check_shape(body: object) -> None:
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise ValueError("answer is not an object with a 'data' list")
    for name in ("total_pages", "total_records"):
        if not isinstance(body.get(name), int):
            raise ValueError(f"answer lacks an integer {name!r}")


def make_client(base_url: str, token: str, policy: RetryPolicy) -> httpx.Client:
    return httpx.Client(
        base_url=base_url.rstrip("/"),
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json",
                 "User-Agent": "tthc-pipeline/pull"},
        timeout=httpx.Timeout(policy.timeout, connect=min(10.0, policy.timeout)),
        follow_redirects=False,
    )


@dataclass
class PullStats:
    """What one ``pull_entity`` call went through (filled in while it runs)."""

    passes: int = 0
    pages: int = 0
    records: int = 0  # distinct (id, updated_at) yielded
    repeats_dropped: int = 0  # versions seen again (page shifts, re-reads) and not yielded twice
    outside_window_dropped: int = 0
    retries: int = 0
    retry_seconds: float = 0.0
    retry_reasons: dict[str, int] = field(default_factory=dict)


def pull_entity(base_url: str, token: str, entity: str, window_from: datetime, window_to: datetime,
                page_size: int = 500, *, source: str | None = None, policy: RetryPolicy | None = None,
                client: httpx.Client | None = None, stats: PullStats | None = None,
                sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None,
                ) -> Iterator[list[dict]]:
    """Yield the records of ``entity`` updated in ``[window_from, window_to)``, page by page.

    Each (id, updated_at) version is yielded exactly once. The upper bound is frozen by the caller (the
    moment the pull started), so while the window is read a record can only *leave* it (an update moves its
    ``NgayCapNhat`` past the bound); a departure lowers ``total_records``. A pass over all pages is accepted
    when every page reported the same ``total_records`` and the pass saw exactly that many distinct versions:
    then nothing moved under it and it is the whole window. Otherwise the window is read again (versions seen
    before are not yielded twice) until a pass is clean, at most ``policy.max_passes`` times. A version read
    before its record was updated is a real version and is kept; the update itself is in the next window.
    """
    if entity not in RECORD_KEYS:
        raise PullError(f"unknown entity {entity!r} for the export API (known: {sorted(RECORD_KEYS)})",
                        source=source, entity=entity)
    window = Window(window_from, window_to)
    policy = policy or RetryPolicy()
    rng = rng or random.Random()
    stats = stats if stats is not None else PullStats()
    own_client = client is None
    client = client or make_client(base_url, token, policy)
    read = _WindowRead(client, base_url, entity, source, window, page_size, policy, rng, sleep, stats)
    try:
        for pass_no in range(1, policy.max_passes + 1):
            stats.passes = pass_no
            totals, pass_keys = yield from read.one_pass()
            if len(totals) == 1 and len(pass_keys) == next(iter(totals)):
                return
        raise UnstableWindowError(
            f"{_where(source, entity)}: the window {window} kept changing while it was read "
            f"({policy.max_passes} passes, totals seen {sorted(totals)}); nothing committed, retry later",
            source=source, entity=entity)
    finally:
        if own_client:
            client.close()


@dataclass
class _WindowRead:
    """The reading of one window by ``pull_entity``: its passes over the pages, the versions seen so far."""

    client: httpx.Client
    base_url: str
    entity: str
    source: str | None
    window: Window
    page_size: int
    policy: RetryPolicy
    rng: random.Random
    sleep: Callable[[float], None]
    stats: PullStats
    budget: _Budget = field(default_factory=_Budget)  # all waiting of the pull, shared by its requests
    seen: set[tuple[str, str]] = field(default_factory=set)  # versions yielded, over all passes

    def one_pass(self) -> Generator[list[dict], None, tuple[set[int], set[tuple[str, str]]]]:
        """Yields the new versions of every page of one pass; returns the ``total_records`` the pages reported
        and the versions the pass saw."""
        totals: set[int] = set()
        pass_keys: set[tuple[str, str]] = set()
        page = 1
        while True:
            body = self._fetch(page)
            totals.add(body["total_records"])
            data = body["data"]
            fresh = self._fresh(page, data, pass_keys)
            if fresh:
                self.stats.records += len(fresh)
                yield fresh
            if not data or page >= body["total_pages"]:
                break
            page += 1
        return totals, pass_keys

    def _fetch(self, page: int) -> dict:
        params = {"updated_from": format_param(self.window.window_from),
                  "updated_to": format_param(self.window.window_to), "page": page, "page_size": self.page_size}
        body = _fetch_page(self.client, self.base_url, self.entity, params, source=self.source, policy=self.policy,
                           budget=self.budget, rng=self.rng, sleep=self.sleep)
        self.stats.retries, self.stats.retry_seconds = self.budget.retries, self.budget.spent
        self.stats.retry_reasons = dict(self.budget.reasons)
        self.stats.pages += 1
        return body

    def _fresh(self, page: int, data: list, pass_keys: set[tuple[str, str]]) -> list[dict]:
        """The page's records inside the window and not seen before; every version goes into ``pass_keys``."""
        ts_field = RECORD_KEYS[self.entity][1]
        fresh: list[dict] = []
        for rec in data:
            if not isinstance(rec, dict):
                raise PullError(f"{_where(self.source, self.entity)}: page {page} holds a non-object record",
                                source=self.source, entity=self.entity)
            key = record_key(rec, self.entity)
            pass_keys.add(key)
            if not self.window.contains(parse_timestamp(rec.get(ts_field))):
                self.stats.outside_window_dropped += 1
                continue
            if key in self.seen:
                self.stats.repeats_dropped += 1
                continue
            self.seen.add(key)
            fresh.append(rec)
        return fresh
