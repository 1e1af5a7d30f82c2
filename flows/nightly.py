"""The nightly flow: pulls + inbox files -> raw/staging/quarantine -> quality gate -> core -> marts.

Runs locally on Prefect's ephemeral API (``tthc run``) or on a server when ``PREFECT_API_URL`` is set
(deployment ``nightly`` in prefect.yaml). Business rules live in transforms/; this module only orchestrates:
tasks, retries, logs, artifacts, alerts.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE
from prefect.states import Completed, Failed

from flows import progress
from flows.alerts import notify, on_crashed_hook, on_failure_hook
from flows.runs import LOCAL_TZ, warehouse_run
from transforms import agencies as agency_list
from transforms import ingest
from tthc.settings import Settings, get_settings
from warehouse.ledger import Ledger
from warehouse.store import validation

def default_as_of() -> date:
    """Yesterday in Vietnam: the nightly run at 01:30 reports on the day that just ended."""
    return datetime.now(LOCAL_TZ).date() - timedelta(days=1)


def _retry_on_io(task, task_run, state) -> bool:
    try:
        state.result()
    except OSError:
        return True
    except Exception:
        return False
    return False


@task(name="ingest-file", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_retry_on_io,
      cache_policy=NONE, task_run_name="ingest {f.rel}")
def ingest_file_task(f: ingest.InboxFile, warehouse: Path, ledger_url: str, run_id: str,
                     agency_codes: list[str], pseudonym_key: bytes, batch_rows: int) -> ingest.FileOutcome:
    log = get_run_logger()
    ledger = Ledger(ledger_url)
    try:
        out = ingest.ingest_file(f, warehouse=warehouse, ledger=ledger, run_id=run_id, agency_codes=agency_codes,
                                 pseudonym_key=pseudonym_key, batch_rows=batch_rows)
    finally:
        ledger.dispose()
    if out.status == "staged":
        log.info("%s: %d rows read, %d staged, %d quarantined %s (%.1f s)", f.rel, out.rows_raw, out.rows_staged,
                 out.rows_quarantined, out.rules or "", out.seconds)
        if out.unknown_columns:
            log.warning("%s: unknown column(s) kept in raw: %s", f.rel, ", ".join(out.unknown_columns))
        for note in out.notes:
            log.warning("%s", note)
    elif out.status == "duplicate":
        log.log(30 if out.error else 20, "%s", out.error or f"{f.rel}: same content already ingested as batch "
                                                             f"{out.duplicate_of}; skipped")
    elif out.status == "rejected_before":  # reported when it was rejected; not a new failure
        log.warning("%s", out.error)
    elif out.status in ("skipped", "skipped_before"):  # only listed (hidden, temporary, not data)
        log.info("%s", out.error)
    else:
        log.error("%s", out.error if f.rel in (out.error or "") else f"{f.rel}: {out.error}")
    return out


@task(name="quality-gate", cache_policy=NONE, task_run_name="gate {source}/{entity} {batch_id}")
def gate_task(warehouse: Path, source: str, entity: str, batch_id: str, ledger_url: str, run_id: str,
              settings: Settings, as_of: date):
    """Great Expectations contract + batch checks on one staged batch; a critical failure holds the batch."""
    from transforms.quality import gate

    log = get_run_logger()
    ledger = Ledger(ledger_url)
    try:
        # checks that crash on the batch hold it (not re-gated, and crashing, every night before anything is built)
        g = gate.gate_batch(warehouse, source, entity, batch_id, ledger=ledger, run_id=run_id, settings=settings,
                            as_of=as_of)
        if g.passed:
            ledger.finish_batch(batch_id, "passed")
            for w in g.warnings:
                log.warning("%s", w.message)
        else:
            ingest.hold_batch(warehouse, source, entity, batch_id)
            ledger.finish_batch(batch_id, "gate_failed", error=g.summary_line())
            log.error("%s", g.summary_line())
    finally:
        ledger.dispose()
    return g


@task(name="build-core-and-marts", cache_policy=NONE)
def build_task(warehouse: Path, settings: Settings, as_of: date, new_batches: list[tuple[str, str, str]],
               full_rebuild: bool, run_id: str | None = None) -> dict:
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


def _pull_sources(settings: Settings, wh: Path, run_id: str, codes: list[str], key: bytes, as_of: date,
                  gate_results: list, backfill: tuple[date, date] | None = None) -> list:
    """Pull every configured export API / replica source; each pull is one batch through the same gate."""
    from flows.pull import _with_secret_blocks, pull_task
    from transforms.pull.run import configured_pulls

    specs = _with_secret_blocks(configured_pulls(settings))
    outcomes = []
    for i, spec in enumerate(specs):
        progress.report("pull", i, len(specs), spec.name)
        out = pull_task(spec, wh, settings.resolved_ledger_url, run_id, codes, key, settings, True, backfill,
                        as_of=as_of)
        if out.gate_result is not None:
            gate_results.append(out.gate_result)
        outcomes.append(out)
    if specs:
        progress.report("pull", len(specs), len(specs), "")
    return outcomes


@flow(name="tthc-nightly", log_prints=False, on_failure=[on_failure_hook], on_crashed=[on_crashed_hook])
def nightly(inbox: str | None = None, warehouse: str | None = None, as_of: date | None = None,
            full_rebuild: bool = False, pull: bool = True, backfill_from: date | None = None,
            backfill_to: date | None = None):
    """Pull configured sources, ingest every new inbox file, gate each batch, build core and marts, report.

    ``backfill_from``/``backfill_to``: re-pull that window of every configured source (watermarks untouched)
    and rebuild every period; running the same backfill twice gives identical marts.
    """
    from transforms.quality.report import build_reports

    log = get_run_logger()
    settings: Settings = get_settings(inbox=inbox, warehouse=warehouse, as_of=as_of)
    as_of = settings.as_of or default_as_of()
    night_source = settings.resolved_agencies_path
    with warehouse_run(settings, "r", as_of, str(settings.inbox)) as run:
        wh, ledger, run_id = run.warehouse, run.ledger, run.run_id
        if run.rolled_back:
            log.warning("rolled back %d batch(es) left unfinished by an interrupted run: %s",
                        len(run.rolled_back), ", ".join(run.rolled_back))
        # the agency list: today's when it reads cleanly (kept in the warehouse as the last good one), else the
        # last good one (the run then fails and says so); with none, nothing is ingested and nothing rebuilt
        night = agency_list.for_night(settings.resolved_agencies_path, wh)
        agencies_alert = night.alert()
        if night.rows is None:
            return _without_agency_list(settings, wh, ledger, run_id, as_of, agencies_alert, log)
        if agencies_alert:
            log.error("%s", agencies_alert)
        # ingest, gate, core and marts read the kept copy (one encoding, delimiter and date format for DuckDB)
        settings = settings.model_copy(update={"agencies_path": night.path})
        codes = night.codes
        key = settings.pseudonym_key_bytes(create=True)

        # 1. pulls (export API, replica): staged and gated one batch per source/entity
        gate_results: list = []
        backfill = (backfill_from, backfill_to or backfill_from) if backfill_from else None
        if backfill:
            full_rebuild = True
        pulls = _pull_sources(settings, wh, run_id, codes, key, as_of, gate_results, backfill) if pull else []

        # 2. inbox files
        files = ingest.discover(Path(settings.inbox)) if Path(settings.inbox).exists() else []
        log.info("inbox %s: %d file(s); as_of %s; warehouse %s", settings.inbox, len(files), as_of, wh)
        outcomes: list[ingest.FileOutcome] = []
        for i, f in enumerate(files):
            progress.report("ingest", i, len(files), f.rel)
            try:
                outcomes.append(ingest_file_task(f, wh, settings.resolved_ledger_url, run_id, codes, key,
                                                 settings.batch_rows))
            except OSError as exc:  # transient I/O still failing after the retries: that file waits for tomorrow
                if exc.errno in ingest.MACHINE_ERRNOS:
                    raise  # the warehouse's disk or the machine: no file is to blame, the run fails
                outcomes.append(ingest.FileOutcome(
                    rel=f.rel, status="failed", source=f.source, entity=f.entity, file_kind=f.kind,
                    error=f"cannot read file {f.rel}: {exc.strerror or exc} (3 attempts); it is tried again at the "
                          f"next run"))
        progress.report("ingest", len(files), len(files), "")
        ledger.check_balance(run_id)

        # 3. quality gate on every staged file batch, and on batches an interrupted run staged but never gated
        staged = [(o.source, o.entity, o.batch_id, o.rel) for o in outcomes if o.status == "staged"]
        leftover = ledger.ungated_batches(exclude_run=run_id)
        if leftover:
            log.warning("gating %d batch(es) staged by an interrupted run: %s", len(leftover),
                        ", ".join(b["batch_id"] for b in leftover))
        staged = [(b["source"], b["entity"], b["batch_id"], b["path"]) for b in leftover] + staged
        for i, (source, entity, batch_id, rel) in enumerate(staged):
            progress.report("gate", i, len(staged), rel)
            gate_results.append(gate_task(wh, source, entity, batch_id, settings.resolved_ledger_url,
                                          run_id, settings, as_of))
        progress.report("gate", len(staged), len(staged), "")
        _counts_after_gate(outcomes, gate_results)
        passed = [(g.table.removeprefix("stg_").split("__")[0], g.table.split("__")[1], g.batch_id)
                  for g in gate_results if g.passed]
        held = [g for g in gate_results if not g.passed]

        # 4. core and marts, only from batches that passed
        build = build_task(wh, settings, as_of, passed, full_rebuild, run_id)
        dq_violation = _build_mart_dq(wh, settings, run_id, ledger, log)

        # 5. reports, artifacts, alerts
        # files refused or not read, and (the first night they are seen) the ones only listed
        rejected = ([{"file": str(night_source), "message": agencies_alert}] if agencies_alert else []) + (
                    [{"file": o.rel, "message": o.error} for o in outcomes if o.status in ("rejected", "failed")]
                    + listed_entries(outcomes)
                    + [{"file": f"pull {p.source}/{p.entity} ({p.kind})", "message": p.error}
                       for p in pulls if p.status == "failed"]
                    + ([{"file": "core/marts", "message": build["contract_violation"]}]
                       if build.get("contract_violation") else [])
                    + ([{"file": "mart_dq", "message": dq_violation}] if dq_violation else []))
        reports = build_reports(wh, run_id, gate_results, rejected=rejected)
        summary = ingest.summarize(outcomes)
        if agencies_alert:
            summary["agencies"] = f"broken; the last good list of {night.kept_on} was used"
        summary.update({"batches_passed": len(passed), "batches_held": len(held),
                        "pulls": len(pulls), "pulls_failed": sum(p.status == "failed" for p in pulls),
                        "rebuild": build.get("rebuild"), "report": str(reports["html"])})
        create_table_artifact(
            key="nightly-files", description=f"Files of run {run_id}",
            table=[{"file": o.rel, "status": o.status, "batch": o.batch_id or o.duplicate_of, "raw": o.rows_raw,
                    "staged": o.rows_staged, "quarantined": o.rows_quarantined,
                    "rules": ", ".join(f"{k}={v}" for k, v in sorted(o.rules.items())),
                    "error": o.error or ""} for o in outcomes] or [{"file": "(no file in the inbox)"}])
        create_markdown_artifact(key="nightly-summary",
                                 markdown=_summary_markdown(run_id, as_of, outcomes, build) + "\n\n"
                                 + reports["markdown"])
        notify(settings, reports["summary"])
        problems = ([agencies_alert] if agencies_alert else []) + (
                    [o.error or o.rel for o in outcomes if o.status in ("rejected", "failed")]
                    + [g.summary_line() for g in held]
                    + ([build["contract_violation"]] if build.get("contract_violation") else [])
                    + ([dq_violation] if dq_violation else [])
                    + [p.error or p.source for p in pulls if p.status in ("failed", "gate_failed")])
        ledger.finish_run(run_id, "failed" if problems else "completed",
                          {**summary, "as_of": str(as_of), "build": build})
        if problems:
            return Failed(message="; ".join(problems))
        return Completed(message=f"{summary['staged']} file(s) staged, {len(pulls)} pull(s); "
                                 f"core/marts: {build.get('rebuild')} ({build.get('reason')})")


def _without_agency_list(settings: Settings, wh: Path, ledger: Ledger, run_id: str, as_of: date, message: str,
                         log):
    """The night when agencies.csv is unusable and no good list was ever kept: every row would be quarantined as
    an unknown agency, so nothing new is pulled or ingested (the inbox files wait, unchanged), core and marts stay
    as they were, and the run fails with a critical alert that says why."""
    from transforms.quality.report import build_reports

    log.error("%s", message)
    inbox = Path(settings.inbox)
    waiting = ingest.discover(inbox) if inbox.is_dir() else []
    rejected = [{"file": str(settings.resolved_agencies_path), "message": message}]
    reports = build_reports(wh, run_id, [], rejected=rejected, data_docs=False)
    notify(settings, reports["summary"])
    create_markdown_artifact(key="nightly-summary", markdown=(
        f"# Nightly run {run_id} (as of {as_of})\n\n{message}\n\n{len(waiting)} inbox entr(ies) wait for a usable "
        f"agencies.csv; nothing was ingested, core and marts are unchanged.\n\n" + reports["markdown"]))
    ledger.finish_run(run_id, "failed", {"as_of": str(as_of), "files": 0, "waiting": len(waiting),
                                         "agencies": message.splitlines()[0], "rebuild": "none",
                                         "report": str(reports["html"])})
    return Failed(message=message)


def _counts_after_gate(outcomes: list[ingest.FileOutcome], gate_results: list) -> None:
    """The files' staged and quarantined rows as the gate left them (it moves rows breaking a row rule to
    quarantine), so the run's summary and artifact say what the ledger says."""
    by_batch = {g.batch_id: g.set_aside for g in gate_results if getattr(g, "set_aside", None)}
    for o in outcomes:
        moved = by_batch.get(o.batch_id) or {}
        if moved.get("moved"):
            o.rows_staged, o.rows_quarantined = moved["rows_staged"], moved["rows_quarantined"]


def listed_entries(outcomes: list[ingest.FileOutcome]) -> list[dict]:
    """What the night saw and did not take as data, said once and not as a failure: entries only listed (hidden,
    temporary, not data), a copy of content already taken, and what a reader set aside from a file it read (a
    footer, blank rows, other sheets)."""
    out = [{"file": o.rel, "message": o.error, "listed": True} for o in outcomes
           if o.status == "skipped" or (o.status == "duplicate" and o.error)]
    out += [{"file": o.rel, "message": "; ".join(o.notes), "listed": True} for o in outcomes
            if o.status == "staged" and o.notes]
    return out


def _build_mart_dq(wh: Path, settings: Settings, run_id: str, ledger: Ledger, log) -> str | None:
    """The data-quality mart, checked against its contract before it replaces the published one; the
    violation's message when it broke a critical rule (the previous mart then stays)."""
    from transforms.quality import mart_dq
    from transforms.quality.tables import ContractViolation

    try:
        with validation(_contract_checks(wh, settings, run_id, ledger)):
            mart_dq.build(wh)
    except ContractViolation as exc:
        log.error("%s", exc)
        return str(exc)
    return None


def _summary_markdown(run_id: str, as_of: date, outcomes: list[ingest.FileOutcome], build: dict) -> str:
    s = ingest.summarize(outcomes)
    lines = [f"# Nightly run {run_id} (as of {as_of})", "",
             f"Files: {s['files']} (staged {s['staged']}, already ingested {s['duplicate']}, "
             f"rejected {s['rejected']}, rejected before and unchanged {s['rejected_before']}, "
             f"failed {s['failed']}, only listed {s['skipped'] + s['skipped_before']}); rows raw {s['rows_raw']}, "
             f"staged "
             f"{s['rows_staged']}, quarantined {s['rows_quarantined']}.", "",
             f"Core and marts: {build.get('rebuild')} ({build.get('reason')}).", ""]
    problems = [o for o in outcomes if o.status in ("rejected", "rejected_before", "failed")]
    if problems:
        lines += ["## Files not loaded", ""] + [f"- `{o.rel}`: {o.error}" for o in problems] + [""]
    listed = [o for o in outcomes if o.status in ("skipped", "skipped_before")]
    if listed:
        lines += ["## Entries only listed (not data, not read)", ""] + [f"- `{o.rel}`: {o.error}" for o in listed]
        lines += [""]
    return "\n".join(lines)
