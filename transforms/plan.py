"""Which part of core and marts a night's new data can change (so a night rebuilds a few months, not years).

Rules (each errs towards rebuilding more, never less):
- no mart yet, ``--full-rebuild``, a new procedure catalogue batch (settled details 8 and 15 look versions up
  by date, so a new version can change any period), a changed agencies.csv, or an as_of earlier than the last
  build's: rebuild every period;
- otherwise the periods from the earliest date the new records carry (dossiers and feedback: received date;
  ratings: rated date; payments: paid date; e-certifications: certification date; a later period is reached
  through the carried-over population and the year-earlier target of e_certified_copies) up to as_of, plus,
  when as_of moved forward, the periods from the previous as_of on (their evaluation date E changed);
- nothing new and the same as_of: nothing to rebuild (the marts stay byte-identical).
"New" is judged against what the PUBLISHED marts were built from (``built_from`` in their generation's manifest,
see ``transforms.marts.built_from``), never against core alone: when core moved past the published marts (a run
killed after core was updated and before the marts were published, or marts refused by their contract), when the
last core build did not finish, when a batch they were built from is no longer staged, or when targets.csv or the
extra days-off file changed, every period of the marts is rebuilt from core brought up to date (core itself is
rebuilt whole only when ``update_core`` finds it must).
Core follows the plan: a full plan rebuilds core whole (``build_core``); otherwise ``update_core`` merges only
the staged batches core has not seen (``RebuildPlan.after_core`` then widens the periods to the old versions'
dates, or turns the plan full when core could not be updated incrementally).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb

from warehouse import generations, store

ENTITY_DATE = {
    "dossiers": "received_at",
    "feedback": "received_at",
    "ratings": "rated_at",
    "payments": "paid_at",
    "e_certifications": "certified_at",
}


@dataclass
class RebuildPlan:
    mode: str  # full | incremental | skip
    reason: str
    first_date: date | None = None
    core_full: bool = True  # mode full: rebuild core whole too (False: update_core, which rebuilds it if it must)

    def after_core(self, update) -> RebuildPlan:
        """The plan once core was updated (``transforms.core.CoreUpdate``): full when core had to be rebuilt
        whole; else the periods from the earliest date of any changed record, old version included (a dossier
        whose received date moved changes the periods of both dates)."""
        if self.mode == "full":
            return self
        if update.full:
            return RebuildPlan("full", f"core rebuilt whole: {update.reason}")
        ds = [d for d in (self.first_date, update.first_date) if d is not None]
        if not ds:
            return self
        return RebuildPlan("incremental", self.reason, first_date=min(ds))

    def periods(self, as_of: date) -> set[str] | None:
        from transforms.marts import changed_periods

        if self.mode == "full":
            return None
        if self.mode == "skip" or self.first_date is None:
            return set()
        return changed_periods([self.first_date], as_of)


def file_digest(path: Path) -> str | None:
    p = Path(path)
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None


def behind_published(warehouse: Path, *, targets_csv: Path | None = None,
                     extra_days_off: Path | None = None) -> str | None:
    """Why the published marts are not what core and the reference files give now, so every period must be
    rebuilt (None when they are: then only new batches and a later as_of can change them)."""
    from transforms.core import read_core_meta, staged_batches
    from transforms.marts import DEFAULT_TARGETS

    built = generations.published_manifest(warehouse).get("built_from", {})
    core_built = built.get("core", {})
    if built.get("targets_sha256") != file_digest(targets_csv or DEFAULT_TARGETS):
        return "targets.csv changed since the published marts were built"
    if core_built.get("extra_days_off_sha256") != (file_digest(extra_days_off) if extra_days_off else None):
        return "the extra days-off file changed since the published marts were built"
    core_now = read_core_meta(warehouse)
    if core_now.get("state") != "ok":
        return "the last core build did not finish (an interrupted run): core is brought up to date first"
    if {k: v for k, v in core_now.items() if k != "state"} != core_built:
        return ("core was updated after the published marts were built (a run interrupted before it published "
                "them, or marts refused by their contract)")
    present = staged_batches(Path(warehouse))
    gone = sum(len(set(ids) - set(present.get(t, []))) for t, ids in core_built.get("staged", {}).items())
    if gone:
        return f"{gone} staged batch(es) the published marts were built from are gone (held or removed)"
    return None


def plan_rebuild(warehouse: Path, new_batches: list[tuple[str, str, str]], as_of: date, *,
                 agencies_digest: str | None, full_rebuild: bool = False, targets_csv: Path | None = None,
                 extra_days_off: Path | None = None) -> RebuildPlan:
    """``new_batches``: (source, entity, batch_id) of the batches that passed the gate this run; ``targets_csv``
    and ``extra_days_off`` as the build will use them (None: the default targets, no extra days off)."""
    wh = Path(warehouse)
    built = generations.published_manifest(wh).get("built_from")
    if full_rebuild:
        return RebuildPlan("full", "--full-rebuild asked")
    if not built:
        return RebuildPlan("full", "no published marts record what they were built from (none yet, or built by "
                           "an older version)", core_full=False)
    if built.get("core", {}).get("agencies_sha256") != agencies_digest:
        return RebuildPlan("full", "agencies.csv changed")
    last = date.fromisoformat(built["as_of"])
    if as_of < last:
        return RebuildPlan("full", f"as_of {as_of} is earlier than the published marts' {last}")
    behind = behind_published(wh, targets_csv=targets_csv, extra_days_off=extra_days_off)
    if behind:
        return RebuildPlan("full", behind, core_full=False)
    if any(entity == "procedures" for _s, entity, _b in new_batches):
        return RebuildPlan("full", "a new procedure catalogue batch")
    firsts: list[date] = []
    # staged batches core has not seen yet count as new too (say a run that crashed after its gate)
    from transforms.core import STAGED, new_staged_batches

    unseen = [(t.removeprefix("stg_").split("__")[0], e, b)
              for e, t in STAGED.items() for b in new_staged_batches(wh).get(t, [])]
    new_batches = sorted(set(new_batches) | set(unseen))
    if any(entity == "procedures" for _s, entity, _b in new_batches):
        return RebuildPlan("full", "a new procedure catalogue batch")
    con = duckdb.connect()
    try:
        for source, entity, batch_id in new_batches:
            col = ENTITY_DATE.get(entity)
            path = store.table_dir(wh, f"stg_{source}__{entity}") / f"{batch_id}.parquet"
            if col is None or not path.exists():
                continue
            d = con.execute(f"SELECT min(CAST({col} AS DATE)) FROM read_parquet(?)", [str(path)]).fetchall()[0][0]
            if d is not None:
                firsts.append(d)
    finally:
        con.close()
    if as_of > last:
        firsts.append(last)
    if not firsts:
        return RebuildPlan("skip", "nothing new since the published marts were built, with the same as_of")
    first = min(firsts)
    return RebuildPlan("incremental", f"new data from {first}", first_date=first)
