"""Batch-level checks that need history: what a row rule cannot see.

- schema drift: against the previous batch of the same table and source format (``_format``): a column that
  disappeared or changed type (critical), a new column (warning), a column that was filled and is now empty in
  every row (warning: the export stopped sending it).
- volume anomaly: per agency (or per table when it has no agency), rows per covered day of this batch against
  the median of its trailing batches; a commune that usually sends 30 a day and now sends 0 or 3,000.
- freshness: a source's newest ``updated_at`` (this batch's and every earlier staged batch's of the same source
  format) is older than ``as_of - freshness_lag_days``; judged on the format's latest-ingested batch only, so a
  first load of three years of exports, or an old export sent again, is one verdict, not a warning per old file.
- null-share jump: the share of empty values of a column rose sharply against the previous batch of the format.
History comes from the staged Parquet itself (two narrow columns per earlier batch), so it works without a ledger
and a rebuilt ledger cannot make it lie.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq

from transforms.quality.model import CheckResult
from transforms.quality.rules import lit
from warehouse.store import table_files

LINEAGE = ("_batch_id", "_source_file", "_source_row", "_ingested_at", "_format", "_source_line", "_extra")
FRESHNESS_EXEMPT = {"stg_dvc_portal__procedures"}  # a catalogue snapshot legitimately keeps old updated_at


@dataclass
class Thresholds:
    freshness_lag_days: int = 3
    volume_history_batches: int = 30
    volume_min_history: int = 3
    volume_low_factor: float = 0.2
    volume_high_factor: float = 5.0
    volume_min_expected_rows: float = 10.0
    null_jump: float = 0.30
    null_jump_min_rows: int = 20

    @classmethod
    def from_settings(cls, settings) -> Thresholds:
        t = cls()
        if settings is not None:
            for name in t.__dataclass_fields__:
                v = getattr(settings, name, None) if hasattr(type(settings), "model_fields") and \
                    name in type(settings).model_fields else getattr(settings, name, None)
                if v is not None:
                    setattr(t, name, type(getattr(t, name))(v))
        return t


def batch_index(con, warehouse: Path, table: str, newest_before: datetime | None = None) -> list[dict]:
    """Every staged batch of the table, oldest first: batch_id, format, ingested_at, path, and ``newest``: its
    latest ``updated_at`` before ``newest_before`` (None without that bound or that column). One scan of three
    narrow columns over all the table's files (3,000 batches: ~1 s; a query per file took twice as long)."""
    files = table_files(warehouse, table)
    if not files:
        return []
    src = f"read_parquet({[str(f) for f in files]!r}, union_by_name=true, filename=true)"
    cols = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()}
    newest = "NULL"
    if newest_before is not None and "updated_at" in cols:
        newest = f"max(updated_at) FILTER (WHERE updated_at < CAST({lit(str(newest_before))} AS TIMESTAMP))"
    got = {r[0]: r[1:] for r in con.execute(
        f"SELECT filename, any_value(_format), max(_ingested_at), {newest} FROM {src} GROUP BY filename").fetchall()}
    out = []
    for f in files:  # a file without rows has no group: it is still a batch
        fmt, ingested, upd = got.get(str(f), (None, None, None))
        out.append({"batch_id": f.stem, "format": fmt, "ingested_at": ingested, "path": f, "newest": upd})
    out.sort(key=lambda b: (b["ingested_at"] or datetime.min, b["batch_id"]))
    return out


def _hres(name, severity, ok, message, *, count=0, pct=0.0, elements=0, agency=None, observed=None,
          etype="") -> CheckResult:
    return CheckResult(name=name, severity=severity, success=ok, unexpected_count=count, unexpected_percent=pct,
                       element_count=elements, message=message, kind="history", agency_code=agency,
                       observed=observed or {}, expectation_type=etype)


def schema_drift(prev_path: Path | None, path: Path, prev_profile: dict | None, profile: dict,
                 label: str) -> list[CheckResult]:
    if prev_path is None:
        return [_hres("schema_drift", "critical", True, f"{label}: no earlier batch of this format to compare",
                      etype="batch:schema_drift", observed={"previous_batch": None})]
    prev = {f.name: str(f.type) for f in pq.read_schema(prev_path)}
    cur = profile["types"]
    gone = sorted(c for c in prev if c not in cur)
    changed = sorted(c for c in prev if c in cur and prev[c] != cur[c] and cur[c] != "null")
    new = sorted(c for c in cur if c not in prev)
    emptied = sorted(c for c in cur if c not in LINEAGE and c in prev
                     and prev_profile["non_null"].get(c, 0) > 0 and profile["non_null"].get(c, 0) == 0
                     and profile["rows"] > 0)
    out = [_hres("schema_drift:columns", "critical", not gone and not changed,
                 f"{label}: against the previous batch of this format ({prev_path.stem}) columns missing {gone or '-'}, "
                 f"type changed {[f'{c}: {prev[c]} -> {cur[c]}' for c in changed] or '-'}"
                 if gone or changed else f"{label}: same columns and types as {prev_path.stem}",
                 count=len(gone) + len(changed), elements=len(prev), etype="batch:schema_drift",
                 observed={"missing": gone, "type_changed": {c: [prev[c], cur[c]] for c in changed},
                           "previous_batch": prev_path.stem})]
    out.append(_hres("schema_drift:new_or_emptied", "warning", not new and not emptied,
                     f"{label}: new columns {new or '-'}; columns filled before and now empty in every row {emptied or '-'} "
                     f"(against {prev_path.stem})" if new or emptied else f"{label}: no new or emptied column",
                     count=len(new) + len(emptied), elements=len(cur), etype="batch:schema_drift",
                     observed={"new": new, "emptied": emptied, "previous_batch": prev_path.stem}))
    return out


def null_share_jump(prev_profile: dict | None, profile: dict, label: str, th: Thresholds,
                    prev_batch: str | None) -> list[CheckResult]:
    if prev_profile is None or prev_profile["rows"] < th.null_jump_min_rows or profile["rows"] < th.null_jump_min_rows:
        return []
    jumps = {}
    for c, nn in profile["non_null"].items():
        if c not in prev_profile["non_null"] or nn == 0:  # fully emptied columns are schema drift
            continue
        before = 1 - prev_profile["non_null"][c] / prev_profile["rows"]
        now = 1 - nn / profile["rows"]
        if now - before >= th.null_jump:
            jumps[c] = (round(before, 3), round(now, 3))
    msg = (f"{label}: share of empty values jumped against {prev_batch}: "
           + ", ".join(f"{c} {b:.0%} -> {n:.0%}" for c, (b, n) in jumps.items())) if jumps else \
        f"{label}: no empty-share jump"
    return [_hres("null_share_jump", "warning", not jumps, msg, count=len(jumps),
                  elements=len(profile["non_null"]), etype="batch:null_share_jump",
                  observed={"jumps": jumps, "previous_batch": prev_batch, "threshold": th.null_jump})]


def freshness(table: str, index: list[dict], batch_id: str, as_of: date, th: Thresholds,
              label: str) -> list[CheckResult]:
    """A source is fresh when its newest ``updated_at`` is within ``freshness_lag_days`` of ``as_of``: its newest
    over this batch and the earlier staged batches of the same source format (``index``: ``batch_index``, bounded
    by the day following as_of so a clock error cannot make a stale source look fresh for ever; another system's
    fresh export must not hide a stale one). Judged on the format's latest-ingested batch only: an older batch's
    verdict would be the source's, given again."""
    me = next(b for b in index if b["batch_id"] == batch_id)
    same = [b for b in index if b["format"] == me["format"]]
    pos = same.index(me)
    if table in FRESHNESS_EXEMPT or pos < len(same) - 1:
        return []
    batch, earlier = me, same[:pos]
    stamps = [b["newest"] for b in same if b.get("newest") is not None]
    newest = max(stamps, default=None)
    newest_d = newest.date() if isinstance(newest, datetime) else newest
    limit = as_of - timedelta(days=th.freshness_lag_days)
    ok = newest_d is not None and newest_d >= limit
    lag = (as_of - newest_d).days if newest_d else None
    fmt = f" (format {batch.get('format')})" if batch.get("format") else ""
    where = (f"newest updated_at of this file and the {len(earlier)} staged before it{fmt}"
             if earlier else "newest updated_at")
    if newest_d is None:
        msg = f"{label}: no updated_at staged yet{fmt}: freshness unknown"
    elif not ok:
        msg = (f"{label}: stale data, {where} is {newest_d} ({lag} days before {as_of}); at most "
               f"{th.freshness_lag_days} days allowed")
    else:
        msg = f"{label}: {where} {newest_d} is fresh"
    return [_hres("freshness", "warning", ok, msg, count=0 if ok else 1, elements=1, etype="batch:freshness",
                  observed={"max_updated_at": str(newest_d), "batch_max_updated_at": str(batch.get("newest")),
                            "format": batch.get("format"), "earlier_batches": len(earlier), "as_of": str(as_of),
                            "lag_days": lag, "allowed_lag_days": th.freshness_lag_days})]


def volume(con, table: str, path: Path, history: list[dict], profile: dict, th: Thresholds,
           label: str, validity: dict | None = None) -> list[CheckResult]:
    """Rows per covered day per agency against the trailing batches. ``validity``: agency -> (valid_from,
    valid_to) dates from agencies.csv; an agency not valid during this batch's window (an old commune after the
    2025 merger) is not expected to send anything."""
    if "updated_at" not in profile["types"]:
        return []
    trail = history[-th.volume_history_batches:]
    if len(trail) < th.volume_min_history:
        return [_hres("volume", "warning", True,
                      f"{label}: only {len(trail)} earlier batches; volume check needs {th.volume_min_history}",
                      etype="batch:volume", observed={"history_batches": len(trail)})]
    has_agency = "agency_code" in profile["types"]
    agency = "agency_code" if has_agency else "NULL"
    files = [str(b["path"]) for b in trail] + [str(path)]
    rows = con.execute(f"""
        WITH t AS (SELECT _batch_id, {agency} AS agency_code, updated_at
                   FROM read_parquet([{', '.join(lit(f) for f in files)}], union_by_name=true)),
             span AS (SELECT _batch_id, greatest(1, date_diff('day', min(updated_at)::DATE,
                            max(updated_at)::DATE) + 1) AS days, min(updated_at) AS lo, max(updated_at) AS hi
                      FROM t GROUP BY _batch_id)
        SELECT t._batch_id, agency_code, count(*) AS n, any_value(span.days) AS days, any_value(span.lo),
               any_value(span.hi)
        FROM t JOIN span USING (_batch_id) GROUP BY ALL""").fetchall()
    cur_id = path.stem
    days: dict[str, int] = {}
    spans: dict[str, tuple] = {}
    counts: dict[tuple[str, str | None], int] = {}
    for b, a, n, d, lo, hi in rows:
        days[b] = d
        spans[b] = (lo, hi)
        counts[(b, a)] = n
    # trailing history in data time: batches whose window started before this one's and ended no later (an old
    # export ingested after newer ones, as in a backfill, is not compared with the newer ones, where agencies
    # created later, e.g. the communes of the 2025 merger, would look like a collapse)
    cur_lo, cur_hi = spans.get(cur_id, (None, None))
    hist_ids = [b["batch_id"] for b in trail if b["batch_id"] in days
                and (cur_lo is None or spans[b["batch_id"]][0] is None
                     or (spans[b["batch_id"]][0] < cur_lo and spans[b["batch_id"]][1] <= cur_hi))]
    agencies = sorted({a for (_, a) in counts}, key=lambda x: (x is None, x or ""))
    out = []
    cur_days = days.get(cur_id, 1)
    for a in agencies:
        if validity and a in validity and cur_lo is not None and cur_hi is not None:
            v_from, v_to = validity[a]
            if (v_to is not None and v_to < cur_lo.date()) or (v_from is not None and v_from > cur_hi.date()):
                continue
        rates = [counts.get((b, a), 0) / days[b] for b in hist_ids]
        # an agency only counts as "usually sending" if it appears in most trailing batches
        if sum(1 for r in rates if r > 0) < th.volume_min_history:
            continue
        base = statistics.median(rates)
        expected = base * cur_days
        n = counts.get((cur_id, a), 0)
        if expected < th.volume_min_expected_rows:
            continue
        rate = n / cur_days
        low, high = rate < base * th.volume_low_factor, rate > base * th.volume_high_factor
        who = a if a is not None else table
        msg = (f"{label}: volume anomaly, agency {who} sent {n} rows over {cur_days} day(s), usually about "
               f"{expected:.0f} ({base:.1f} a day, median of {len(hist_ids)} earlier batches)")
        out.append(_hres(f"volume:{who}", "warning", not (low or high), msg if (low or high) else
                         f"{label}: {who} volume {n} within bounds of {expected:.0f}",
                         count=n, pct=100.0 * rate / base if base else 0.0, elements=int(round(expected)),
                         agency=a, etype="batch:volume",
                         observed={"rows": n, "days": cur_days, "baseline_per_day": base,
                                   "expected_rows": expected, "direction": "low" if low else "high" if high else "ok",
                                   "history_batches": len(hist_ids)}))
    return out
