"""Core's build state, ``<warehouse>/_core_meta.json``: the staged batches core was built from, the digests of
agencies.csv and the days-off file, and a ``state`` (``building``, ``swapping``, ``ok``); from it, which staged
batches are new."""

from __future__ import annotations

import hashlib
from pathlib import Path

from transforms.core.tables import STAGED
from warehouse.state import read_state, write_state
from warehouse.store import table_files

CORE_META = "_core_meta.json"


def staged_batches(wh: Path) -> dict[str, list[str]]:
    """Batch ids present in every staged table (what a full build would read)."""
    return {t: sorted(p.stem for p in table_files(wh, t)) for t in STAGED.values()}


def _digest(path: Path | None) -> str | None:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path and Path(path).exists() else None


def read_core_meta(wh: Path) -> dict:
    return read_state(Path(wh) / CORE_META)


def _set_meta_state(wh: Path, state: str) -> None:
    Path(wh).mkdir(parents=True, exist_ok=True)
    meta = read_core_meta(wh)
    meta["state"] = state
    write_state(Path(wh) / CORE_META, meta)


def _write_core_meta(wh: Path, agencies_csv: Path, extra_days_off: Path | None,
                     batches: dict[str, list[str]]) -> None:
    write_state(Path(wh) / CORE_META, {"state": "ok", "agencies_sha256": _digest(agencies_csv),
                                       "extra_days_off_sha256": _digest(extra_days_off), "staged": batches})


def new_staged_batches(wh: Path) -> dict[str, list[str]]:
    """Staged batches not yet in core (per staged table), as the core meta records it."""
    built = read_core_meta(wh).get("staged", {})
    return {t: [b for b in ids if b not in set(built.get(t, []))] for t, ids in staged_batches(wh).items()}
