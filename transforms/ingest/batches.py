"""Batches out of the normal path: what a killed run left half-done (rolled back), a batch the quality gate holds
out of core and marts, and an operator's release of one."""

from __future__ import annotations

from pathlib import Path

from warehouse import store
from warehouse.ledger import Ledger


def recover(warehouse: Path, ledger: Ledger, current_run_id: str | None = None) -> list[str]:
    """Remove what a killed run left half-done; return the batch ids that were rolled back.

    Batches still ``running`` lose their files and are marked failed (their input is ingested again); runs still
    ``running`` are marked failed. Batches the killed run had already staged stay, and the next run gates them
    (``Ledger.ungated_batches``).
    """
    crashed = ledger.crashed_batches()
    store.remove_batch_files(warehouse, crashed)
    ledger.mark_crashed(crashed)
    if current_run_id is not None:
        ledger.close_interrupted_runs(current_run_id)
    return crashed



HELD_DIR = "_held"


def hold_batch(warehouse: Path, source: str, entity: str, batch_id: str) -> Path | None:
    """Keep a batch that failed a critical quality check out of core and marts without losing it.

    Its staged file moves to ``<warehouse>/_held/stg_<source>__<entity>/`` (raw and quarantine stay where they
    are); an operator can inspect it there and move it back once the export is understood to be right.
    """
    from transforms.contracts import stg_table

    src = store.table_dir(warehouse, stg_table(source, entity)) / f"{batch_id}.parquet"
    if not src.exists():
        return None
    dst_dir = Path(warehouse) / HELD_DIR / stg_table(source, entity)
    dst_dir.mkdir(parents=True, exist_ok=True)
    dst = dst_dir / src.name
    src.replace(dst)
    return dst


def held_batches(warehouse: Path) -> list[Path]:
    """Staged files a critical quality check is holding out of core and marts."""
    root = Path(warehouse) / HELD_DIR
    return sorted(root.glob("stg_*/*.parquet")) if root.is_dir() else []


class ReleaseRefused(RuntimeError):
    """A held batch whose row rules cannot be applied stays held (its rows would reach core unchecked)."""


def release_batch(warehouse: Path, ledger: Ledger, batch_id: str, reason: str) -> Path:
    """An operator's decision that a held batch is right after all: its clean rows go back to staging, the ledger
    records who-knows-why as ``reason``, and the next run takes them into core and marts.

    The row rules are applied again first: a row breaking a critical one is set aside to the batch's quarantine
    (the gate already did so before holding; a batch held before it did, or one whose checks crashed, is cleaned
    here), so a release never brings a bad row into core. When they cannot be applied, the batch stays held
    (``ReleaseRefused``)."""
    from transforms.quality import setaside
    from transforms.quality.gate import _machine_trouble

    matches = [p for p in held_batches(warehouse) if p.stem == batch_id]
    if not matches:
        raise FileNotFoundError(f"batch {batch_id} is not held in {Path(warehouse) / HELD_DIR}")
    src = matches[0]
    try:
        moved = setaside.apply_row_rules(warehouse, src.parent.name, batch_id, src)
    except Exception as exc:
        if _machine_trouble(exc):
            raise
        raise ReleaseRefused(f"batch {batch_id} stays held: its rows cannot be checked again before release "
                             f"({type(exc).__name__}: {exc})") from exc
    dst = store.table_dir(warehouse, src.parent.name) / src.name
    dst.parent.mkdir(parents=True, exist_ok=True)
    src.replace(dst)
    aside = f"; {moved.moved:,} rows breaking a rule set aside at release" if moved.moved else ""
    ledger.finish_batch(batch_id, "passed", rows_staged=moved.rows_staged, rows_quarantined=moved.rows_quarantined,
                        error=f"released by an operator after the quality gate held it: {reason}{aside}")
    return dst
