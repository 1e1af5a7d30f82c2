"""The gate's verdict on one staged batch, as every flow takes it: gate, then hold or pass. Prefect-free.

``settle_batch`` runs the gate (``gate.gate_batch``: the checks, one ledger row per check, the batch's counts as
the gate left them), then settles the batch:
- passed: it stays in staging, and core and marts take it;
- failed (a critical check failed, or the checks themselves crashed on it): its staged file moves to ``_held/``
  (``ingest.hold_batch``), so no mart takes it until an operator releases it; the run then fails and alerts.
The nightly flow's gate task and the pull flow's gate (which ``pull_to_warehouse`` calls before it moves the
watermark) both call it; ``finish`` says who records the batch's status in the ledger.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from transforms.ingest import hold_batch
from transforms.quality.gate import gate_batch
from transforms.quality.model import GateResult

PASSED, HELD = "passed", "gate_failed"  # the batch's status in the ledger once settled


def settle_batch(warehouse: Path, source: str, entity: str, batch_id: str, *, ledger, run_id: str | None,
                 settings=None, as_of: date | None = None, finish: bool = True) -> GateResult:
    """Gate one staged batch, hold it when it failed, and (``finish``) record its status in the ledger: ``passed``,
    or ``gate_failed`` with the gate's one-line summary as the error. ``finish=False`` when the caller records the
    status itself (a pull: ``pull_to_warehouse`` writes it and decides the watermark from the verdict)."""
    g = gate_batch(warehouse, source, entity, batch_id, ledger=ledger, run_id=run_id, settings=settings, as_of=as_of)
    if not g.passed:  # kept out of core and marts, without losing it
        hold_batch(warehouse, source, entity, batch_id)
    if finish:
        if g.passed:
            ledger.finish_batch(batch_id, PASSED)
        else:
            ledger.finish_batch(batch_id, HELD, error=g.summary_line())
    return g


def counts_after_gate(outcome, g: GateResult | None) -> None:
    """A file's or a pull's staged and quarantined rows as the gate left them (it moves the rows breaking a critical
    row rule to quarantine), so what the run reports is what the ledger says."""
    moved = g.set_aside if g is not None else {}
    if moved.get("moved"):
        outcome.rows_staged, outcome.rows_quarantined = moved["rows_staged"], moved["rows_quarantined"]


def passed_batches(results: list[GateResult]) -> list[tuple[str, str, str]]:
    """``(source, entity, batch_id)`` of every batch that passed: what core and marts may take tonight."""
    out = []
    for g in results:
        if g.passed:
            source, _, entity = g.table.removeprefix("stg_").partition("__")
            out.append((source, entity, g.batch_id))
    return out
