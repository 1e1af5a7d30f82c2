"""The night's build steps: core and marts, then the data-quality mart; every core_ and mart_ table that has a
contract is checked against it before it replaces the published one (a violation keeps the previous one and says
so). Orchestration only: what to rebuild is ``transforms.plan``'s decision, the tables are built by
``transforms.core``, ``transforms.marts`` and ``transforms.quality.mart_dq``."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from flows import progress
from tthc.settings import Settings
from warehouse.ledger import Ledger
from warehouse.store import validation


@task(name="build-core-and-marts", cache_policy=NONE)
def build_task(warehouse: Path, settings: Settings, as_of: date, new_batches: list[tuple[str, str, str]],
               full_rebuild: bool, run_id: str | None = None) -> dict:
    """Core, then the three marts, as ``plan.plan_rebuild`` decides from the batches that passed: skipped, only
    what is new, or every period; what was built (or why nothing was) as a dict for the run's summary."""
    from transforms import plan
    from transforms.quality.tables import ContractViolation

    log = get_run_logger()
    agencies = settings.resolved_agencies_path
    digest = plan.file_digest(agencies)
    # judged against what the published marts were built from: a run killed after core and before the marts
    # were published left them behind core, and this run rebuilds them
    p = plan.plan_rebuild(warehouse, new_batches, as_of, agencies_digest=digest, full_rebuild=full_rebuild,
                          targets_csv=settings.resolved_targets_path,
                          extra_days_off=settings.resolved_extra_days_off_path)
    if p.mode == "skip":
        log.info("core and marts unchanged: %s", p.reason)
        return {"rebuild": "skip", "reason": p.reason}
    progress.report("core+marts", 0, 2, p.reason)
    ledger = Ledger(settings.resolved_ledger_url)
    try:
        with validation(_contract_checks(warehouse, settings, run_id, ledger)):
            return _build(warehouse, settings, as_of, p, agencies, log)
    except ContractViolation as exc:  # that table and the marts were not published; the previous ones stay
        log.error("%s", exc)
        return {"rebuild": "failed", "reason": str(exc), "contract_violation": str(exc)}
    finally:
        ledger.dispose()


def _contract_checks(warehouse: Path, settings: Settings, run_id: str | None, ledger: Ledger):
    """Every core_ and mart_ table that has a contract is checked before it replaces the published one."""
    from transforms.quality.tables import validator

    suites = Path(__file__).resolve().parent.parent / "expectations" / "suites"

    def factory(table: str):
        if table.startswith(("core_", "mart_")) and (suites / f"{table}.json").exists():
            return validator(table, ledger=ledger, run_id=run_id, warehouse=warehouse, settings=settings)
        return None

    return factory


def _build(warehouse: Path, settings: Settings, as_of: date, p, agencies, log) -> dict:
    from transforms import core, marts
    from warehouse.store import crash_point

    if p.mode == "full" and p.core_full:
        core_rows = core.build_core(warehouse, agencies, extra_days_off=settings.resolved_extra_days_off_path)
    else:  # only the staged batches core has not seen; falls back to a full build when it must
        update = core.update_core(warehouse, agencies, extra_days_off=settings.resolved_extra_days_off_path)
        core_rows = update.counts
        p = p.after_core(update)
    crash_point("between_core_and_marts")
    progress.report("core+marts", 1, 2, "marts")
    periods = p.periods(as_of)
    # the three marts are published together, with what they were built from (their generation's manifest)
    mart_rows = marts.build_marts(warehouse, as_of, targets_csv=settings.resolved_targets_path, periods=periods)
    progress.report("core+marts", 2, 2, "")
    log.info("core %s; marts %s (%s, %s)", core_rows, mart_rows, p.mode, p.reason)
    return {"rebuild": p.mode, "reason": p.reason, "periods": len(periods) if periods is not None else "all",
            "core": core_rows, "marts": mart_rows}


def build_mart_dq(warehouse: Path, settings: Settings, run_id: str, ledger: Ledger) -> str | None:
    """The data-quality mart, checked against its contract before it replaces the published one; the
    violation's message when it broke a critical rule (the previous mart then stays)."""
    from transforms.quality import mart_dq
    from transforms.quality.tables import ContractViolation

    try:
        with validation(_contract_checks(warehouse, settings, run_id, ledger)):
            mart_dq.build(warehouse)
    except ContractViolation as exc:
        get_run_logger().error("%s", exc)
        return str(exc)
    return None
