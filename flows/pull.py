"""The pull flow: every configured source (export APIs, one-stop replica) -> raw/staging -> gate -> watermark.

Orchestration only; the work is ``transforms.pull.run.pull_to_warehouse``. One task per source/entity; a source
that fails (bad token, retries exhausted, unstable window, failed gate) does not stop the others: the flow ends
Failed naming it, alerts go out through ``flows.alerts`` and that source's watermark stays put, so the next run
pulls the same window again. With ``date_from``/``date_to`` it is ``tthc backfill``: the window is re-pulled as
new batches and no watermark moves. Core and marts are rebuilt by the nightly flow (or ``flows.nightly``'s
rebuild step, which the lead wires after this flow).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NONE
from prefect.states import Completed, Failed

from flows.alerts import notify, on_crashed_hook, on_failure_hook
from flows.runs import warehouse_run
from transforms import agencies as agency_list
from transforms.pull.run import PullOutcome, PullSpec, backfill_window, configured_pulls, pull_to_warehouse
from transforms.quality import settle
from tthc.settings import Settings, get_settings
from warehouse.ledger import Ledger

SECRET_BLOCKS = {"dvc_portal": "tthc-dvc-portal-token", "one_stop": "tthc-one-stop-token"}


def _with_secret_blocks(specs: list[PullSpec]) -> list[PullSpec]:
    """Fill missing API tokens from Prefect Secret blocks (``tthc-dvc-portal-token``, ``tthc-one-stop-token``)."""
    out = []
    for s in specs:
        if s.kind == "api" and not s.token and s.source in SECRET_BLOCKS:
            try:
                from prefect.blocks.system import Secret

                s = PullSpec(s.source, s.entity, s.kind, s.base_url, Secret.load(SECRET_BLOCKS[s.source]).get(),
                             s.db_url)
            except Exception:  # no block: pull_to_warehouse reports the missing token for this source only
                pass
        out.append(s)
    return out


@task(name="pull-source", cache_policy=NONE, task_run_name="pull {spec.source}/{spec.entity} ({spec.kind})")
def pull_task(spec: PullSpec, warehouse: Path, ledger_url: str, run_id: str, agency_codes: list[str],
              pseudonym_key: bytes, settings: Settings, use_gate: bool, backfill: tuple[date, date] | None,
              as_of: date | None = None) -> PullOutcome:
    log = get_run_logger()
    ledger = Ledger(ledger_url)
    captured: list = []

    def gate(stage) -> bool:
        """The gate's verdict on the pulled batch (``settle.settle_batch``): held when it fails, and the watermark
        then stays, so the window is pulled again next run; ``pull_to_warehouse`` records the batch's status."""
        g = settle.settle_batch(warehouse, spec.source, spec.entity, stage.batch_id, ledger=ledger, run_id=run_id,
                                settings=settings, as_of=as_of, finish=False)
        captured.append(g)
        return g.passed

    kw = dict(warehouse=warehouse, ledger=ledger, run_id=run_id, agency_codes=agency_codes,
              pseudonym_key=pseudonym_key, overlap_minutes=settings.pull_overlap_minutes,
              page_size=settings.pull_page_size, gate=gate if use_gate else None)
    try:
        if backfill:
            kw.pop("overlap_minutes")
            out = backfill_window([spec], backfill[0], backfill[1], **kw)[0]
        else:
            out = pull_to_warehouse(spec, **kw)
    finally:
        ledger.dispose()
    out.gate_result = captured[-1] if captured else None
    settle.counts_after_gate(out, out.gate_result)  # rows the gate set aside left staging for quarantine
    if out.status in ("failed", "gate_failed"):
        log.error("%s: %s", spec.name, out.error)
    else:
        log.info("%s: window [%s, %s): %d records, %d staged, %d quarantined; watermark %s -> %s %s",
                 spec.name, out.window_from, out.window_to, out.records, out.rows_staged, out.rows_quarantined,
                 out.watermark_before, out.watermark_after, out.details)
    return out


@flow(name="tthc-pull", on_failure=[on_failure_hook], on_crashed=[on_crashed_hook])
def pull(warehouse: str | None = None, inbox: str | None = None, date_from: date | None = None,
         date_to: date | None = None, use_gate: bool = True):
    """Pull every configured source once (incremental), or re-pull ``[date_from, date_to]`` (backfill)."""
    log = get_run_logger()
    settings = get_settings(warehouse=warehouse, inbox=inbox)
    with warehouse_run(settings, "p", None, "pull") as run:
        wh, ledger, run_id = run.warehouse, run.ledger, run.run_id
        if run.rolled_back:
            log.warning("rolled back %d unfinished batch(es): %s", len(run.rolled_back), ", ".join(run.rolled_back))
        specs = _with_secret_blocks(configured_pulls(settings))
        if not specs:
            ledger.finish_run(run_id, "completed", {"pulls": 0})
            return Completed(message="no source to pull configured (TTHC_DVC_PORTAL_URL, TTHC_ONE_STOP_URL, "
                                     "TTHC_ONE_STOP_DB_URL)")
        # the same list the nightly flow uses: today's, or the warehouse's last good one when today's is broken
        night = agency_list.for_night(settings.resolved_agencies_path, wh)
        if night.rows is None:  # none usable and none kept: nothing is pulled (the sources keep their records)
            message = night.alert()
            ledger.finish_run(run_id, "failed", {"pulls": 0, "agencies": message})
            notify(settings, {"run_id": run_id, "rejected_files": [
                {"file": str(settings.resolved_agencies_path), "message": message}]})
            return Failed(message=message)
        if night.problem:
            log.error("%s", night.alert())
        codes = night.codes
        key = settings.pseudonym_key_bytes(create=True)
        backfill = (date_from, date_to or date_from) if date_from else None
        outcomes = [pull_task(s, wh, settings.resolved_ledger_url, run_id, codes, key, settings, use_gate,
                              backfill) for s in specs]
        ledger.check_balance(run_id)
        create_table_artifact(key="pull-sources", description=f"Pulls of run {run_id}", table=[
            {"source": o.source, "entity": o.entity, "via": o.kind, "status": o.status,
             "window": f"[{o.window_from}, {o.window_to})", "records": o.records, "staged": o.rows_staged,
             "quarantined": o.rows_quarantined, "watermark": str(o.watermark_after), "error": o.error or ""}
            for o in outcomes])
        bad = [o for o in outcomes if o.status in ("failed", "gate_failed")]
        summary = {"pulls": len(outcomes), "failed": len(bad),
                   "records": sum(o.records for o in outcomes)}
        ledger.finish_run(run_id, "failed" if bad else "completed", summary)
        data = {"run_id": run_id, "outcomes": [o.as_dict() for o in outcomes]}
        if bad:
            notify(settings, {"run_id": run_id, "rejected_files": [
                {"file": f"pull {o.source}/{o.entity} ({o.kind})", "message": o.error} for o in bad]})
            return Failed(message="; ".join(o.error or o.source for o in bad), data=data)
        return Completed(message=f"{len(outcomes)} pull(s), {summary['records']} record(s)", data=data)
