"""The nightly flow: pulls + inbox files -> raw/staging/quarantine -> quality gate -> core -> marts.

Runs locally on Prefect's ephemeral API (``tthc run``) or on a server when ``PREFECT_API_URL`` is set
(deployment ``nightly`` in prefect.yaml). Business rules live in transforms/; this module only orchestrates:
tasks, retries, logs, artifacts, alerts. ``nightly`` reads as the night's story, one named step a line; each step
is a function or task below it, in the order the night meets them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE
from prefect.states import Completed, Failed

from flows import progress
from flows.alerts import notify, on_crashed_hook, on_failure_hook
from flows.build import build_mart_dq, build_task
from flows.period_reports import PeriodStep, period_reports_task
from flows.runs import WarehouseRun, warehouse_run
from transforms import agencies as agency_list
from transforms import calendar, ingest
from transforms.quality import settle
from tthc.settings import Settings, get_settings
from warehouse.ledger import Ledger


@dataclass
class Night:
    """One nightly run as its steps fill it in: where it writes, the agency list it uses, what each step gave."""

    settings: Settings  # with agencies_path set to the warehouse's kept copy of the list the night uses
    run: WarehouseRun
    as_of: date
    agencies: agency_list.NightList
    agencies_source: Path  # the configured agencies.csv (named when it is broken)
    key: bytes  # the pseudonym key
    pulls: list = field(default_factory=list)  # PullOutcome, one per configured source/entity
    files: list[ingest.FileOutcome] = field(default_factory=list)
    gated: list = field(default_factory=list)  # GateResult of every batch settled tonight (pulls first)
    build: dict = field(default_factory=dict)
    dq_violation: str | None = None
    periods: PeriodStep | None = None  # the KPI reports of the latest closed month and quarter, the alerts sent

    @property
    def warehouse(self) -> Path:
        return self.run.warehouse

    @property
    def held(self) -> list:
        return [g for g in self.gated if not g.passed]


@flow(name="tthc-nightly", log_prints=False, on_failure=[on_failure_hook], on_crashed=[on_crashed_hook])
def nightly(inbox: str | None = None, warehouse: str | None = None, as_of: date | None = None,
            full_rebuild: bool = False, pull: bool = True, backfill_from: date | None = None,
            backfill_to: date | None = None, ledger_url: str | None = None):
    """Pull configured sources, ingest every new inbox file, gate each batch, build core and marts, report.

    ``backfill_from``/``backfill_to``: re-pull that window of every configured source (watermarks untouched)
    and rebuild every period; running the same backfill twice gives identical marts.
    ``ledger_url``: this run's ledger, given explicitly (flows/provinces.py: runs sharing a worker process must not
    share TTHC_LEDGER_URL); None: TTHC_LEDGER_URL, else the SQLite file in the warehouse.
    """
    settings: Settings = get_settings(inbox=inbox, warehouse=warehouse, as_of=as_of, ledger_url=ledger_url)
    as_of = settings.as_of or calendar.yesterday()  # the run at 01:30 reports on the day that just ended
    backfill = (backfill_from, backfill_to or backfill_from) if backfill_from else None
    with warehouse_run(settings, "r", as_of, str(settings.inbox)) as run:
        _say_rolled_back(run)
        # 1. the agency list: today's when it reads cleanly, else the last good one; with none, the night stops
        agencies = agency_list.for_night(settings.resolved_agencies_path, run.warehouse)
        if agencies.rows is None:
            return _without_agency_list(settings, run, as_of, agencies.alert())
        night = _open_night(settings, run, as_of, agencies)
        # 2. pulls (export API, replica): one batch per source/entity, settled by the gate as it is staged
        night.pulls = _pull_sources(night, backfill) if pull else []
        # 3. the inbox: every file discovered and ingested, one batch each
        night.files = _ingest_inbox(night)
        # 4. the gate settles every staged batch: passed, or held out of core and marts
        night.gated = [p.gate_result for p in night.pulls if p.gate_result is not None] + _gate_staged(night)
        # 5. core and marts, only from the batches that passed (every period after a backfill)
        night.build = build_task(night.warehouse, night.settings, as_of, settle.passed_batches(night.gated),
                                 full_rebuild or backfill is not None, run.run_id)
        # 6. the data-quality mart
        night.dq_violation = build_mart_dq(night.warehouse, night.settings, run.run_id, run.ledger)
        # 7. the night's data-quality report and summary (HTML, Markdown, Prefect artifacts)
        reports = _reports(night)
        # 8. the KPI reports of the latest closed month and quarter, their index; KPI and due-list alerts
        night.periods = period_reports_task(night.warehouse, night.settings, as_of)
        # 9. the data-quality alert, then the run's verdict: the ledger's row and the flow's state (the exit code)
        notify(night.settings, reports["summary"])
        return _finish(night, reports)


def _say_rolled_back(run: WarehouseRun) -> None:
    if run.rolled_back:
        get_run_logger().warning("rolled back %d batch(es) left unfinished by an interrupted run: %s",
                                 len(run.rolled_back), ", ".join(run.rolled_back))


def _open_night(settings: Settings, run: WarehouseRun, as_of: date, agencies: agency_list.NightList) -> Night:
    """The night with a usable agency list (today's, or the last good one: the run then fails and says so).
    Ingest, gate, core and marts read the kept copy (one encoding, delimiter and date format for DuckDB)."""
    if agencies.alert():
        get_run_logger().error("%s", agencies.alert())
    night_settings = settings.model_copy(update={"agencies_path": agencies.path})
    return Night(night_settings, run, as_of, agencies, settings.resolved_agencies_path,
                 night_settings.pseudonym_key_bytes(create=True))


def _pull_sources(night: Night, backfill: tuple[date, date] | None) -> list:
    """Pull every configured export API / replica source; each pull is one batch through the same gate."""
    from flows.pull import _with_secret_blocks, pull_task
    from transforms.pull.run import configured_pulls

    s = night.settings
    specs = _with_secret_blocks(configured_pulls(s))
    outcomes = []
    for i, spec in enumerate(specs):
        progress.report("pull", i, len(specs), spec.name)
        outcomes.append(pull_task(spec, night.warehouse, s.resolved_ledger_url, night.run.run_id,
                                  night.agencies.codes, night.key, s, True, backfill, as_of=night.as_of))
    if specs:
        progress.report("pull", len(specs), len(specs), "")
    return outcomes


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


def _ingest_inbox(night: Night) -> list[ingest.FileOutcome]:
    """Every inbox file as one batch (raw, staging, quarantine); a file that cannot be read after the retries waits
    for the next run, trouble of the machine itself fails the run. The ledger's rows are checked to balance."""
    s, run_id = night.settings, night.run.run_id
    files = ingest.discover(Path(s.inbox)) if Path(s.inbox).exists() else []
    get_run_logger().info("inbox %s: %d file(s); as_of %s; warehouse %s", s.inbox, len(files), night.as_of,
                          night.warehouse)
    outcomes: list[ingest.FileOutcome] = []
    for i, f in enumerate(files):
        progress.report("ingest", i, len(files), f.rel)
        try:
            outcomes.append(ingest_file_task(f, night.warehouse, s.resolved_ledger_url, run_id, night.agencies.codes,
                                             night.key, s.batch_rows))
        except OSError as exc:  # transient I/O still failing after the retries: that file waits for tomorrow
            if exc.errno in ingest.MACHINE_ERRNOS:
                raise  # the warehouse's disk or the machine: no file is to blame, the run fails
            outcomes.append(ingest.FileOutcome(
                rel=f.rel, status="failed", source=f.source, entity=f.entity, file_kind=f.kind,
                error=f"cannot read file {f.rel}: {exc.strerror or exc} (3 attempts); it is tried again at the "
                      f"next run"))
    progress.report("ingest", len(files), len(files), "")
    night.run.ledger.check_balance(run_id)
    return outcomes


@task(name="quality-gate", cache_policy=NONE, task_run_name="gate {source}/{entity} {batch_id}")
def gate_task(warehouse: Path, source: str, entity: str, batch_id: str, ledger_url: str, run_id: str,
              settings: Settings, as_of: date):
    """The gate's verdict on one staged batch (``settle.settle_batch``): passed, or held out of core and marts."""
    log = get_run_logger()
    ledger = Ledger(ledger_url)
    try:
        g = settle.settle_batch(warehouse, source, entity, batch_id, ledger=ledger, run_id=run_id,
                                settings=settings, as_of=as_of)
    finally:
        ledger.dispose()
    if g.passed:
        for w in g.warnings:
            log.warning("%s", w.message)
    else:
        log.error("%s", g.summary_line())
    return g


def _gate_staged(night: Night) -> list:
    """The gate on every file batch staged tonight, and first on the batches an interrupted run staged but never
    gated; the files' counts then say what the gate left (it may move rows to quarantine)."""
    ledger, run_id = night.run.ledger, night.run.run_id
    staged = [(o.source, o.entity, o.batch_id, o.rel) for o in night.files if o.status == "staged"]
    leftover = ledger.ungated_batches(exclude_run=run_id)
    if leftover:
        get_run_logger().warning("gating %d batch(es) staged by an interrupted run: %s", len(leftover),
                                 ", ".join(b["batch_id"] for b in leftover))
    staged = [(b["source"], b["entity"], b["batch_id"], b["path"]) for b in leftover] + staged
    results = []
    for i, (source, entity, batch_id, rel) in enumerate(staged):
        progress.report("gate", i, len(staged), rel)
        results.append(gate_task(night.warehouse, source, entity, batch_id, night.settings.resolved_ledger_url,
                                 run_id, night.settings, night.as_of))
    progress.report("gate", len(staged), len(staged), "")
    by_batch = {g.batch_id: g for g in results}
    for o in night.files:
        settle.counts_after_gate(o, by_batch.get(o.batch_id))
    return results




def _reports(night: Night) -> dict:
    """The night's HTML and Markdown reports (``quality.report.build_reports``) and its two Prefect artifacts: the
    files table and the summary."""
    from transforms.quality.report import build_reports

    run_id = night.run.run_id
    reports = build_reports(night.warehouse, run_id, night.gated, rejected=_rejected(night))
    create_table_artifact(
        key="nightly-files", description=f"Files of run {run_id}",
        table=[{"file": o.rel, "status": o.status, "batch": o.batch_id or o.duplicate_of, "raw": o.rows_raw,
                "staged": o.rows_staged, "quarantined": o.rows_quarantined,
                "rules": ", ".join(f"{k}={v}" for k, v in sorted(o.rules.items())),
                "error": o.error or ""} for o in night.files] or [{"file": "(no file in the inbox)"}])
    create_markdown_artifact(key="nightly-summary",
                             markdown=_summary_markdown(run_id, night.as_of, night.files, night.build) + "\n\n"
                             + reports["markdown"])
    return reports


def _rejected(night: Night) -> list[dict]:
    """What the report lists as refused or not read: a broken agencies.csv, files refused or failed, (the first
    night they are seen) entries only listed, failed pulls, a core/mart or mart_dq contract violation."""
    alert, build = night.agencies.alert(), night.build
    return (([{"file": str(night.agencies_source), "message": alert}] if alert else [])
            + [{"file": o.rel, "message": o.error} for o in night.files if o.status in ("rejected", "failed")]
            + listed_entries(night.files)
            + [{"file": f"pull {p.source}/{p.entity} ({p.kind})", "message": p.error}
               for p in night.pulls if p.status == "failed"]
            + ([{"file": "core/marts", "message": build["contract_violation"]}]
               if build.get("contract_violation") else [])
            + ([{"file": "mart_dq", "message": night.dq_violation}] if night.dq_violation else []))


def _problems(night: Night) -> list[str]:
    """What fails the run, one sentence each."""
    alert, build = night.agencies.alert(), night.build
    return (([alert] if alert else [])
            + [o.error or o.rel for o in night.files if o.status in ("rejected", "failed")]
            + [g.summary_line() for g in night.held]
            + ([build["contract_violation"]] if build.get("contract_violation") else [])
            + ([night.dq_violation] if night.dq_violation else [])
            + [p.error or p.source for p in night.pulls if p.status in ("failed", "gate_failed")])


def _finish(night: Night, reports: dict):
    """The run's row in the ledger (completed, or failed with its problems) and the flow's final state."""
    build, pulls = night.build, night.pulls
    summary = ingest.summarize(night.files)
    if night.agencies.alert():
        summary["agencies"] = f"broken; the last good list of {night.agencies.kept_on} was used"
    summary.update({"batches_passed": len(night.gated) - len(night.held), "batches_held": len(night.held),
                    "pulls": len(pulls), "pulls_failed": sum(p.status == "failed" for p in pulls),
                    "rebuild": build.get("rebuild"), "report": str(reports["html"])})
    if night.periods is not None and night.periods.reports is not None:
        summary["kpi_reports"] = sorted(night.periods.reports.written)
        summary["report_index"] = str(night.periods.reports.index)
    problems = _problems(night)
    night.run.ledger.finish_run(night.run.run_id, "failed" if problems else "completed",
                                {**summary, "as_of": str(night.as_of), "build": build})
    if problems:
        return Failed(message="; ".join(problems))
    return Completed(message=f"{summary['staged']} file(s) staged, {len(pulls)} pull(s); "
                             f"core/marts: {build.get('rebuild')} ({build.get('reason')})")


def _without_agency_list(settings: Settings, run: WarehouseRun, as_of: date, message: str):
    """The night when agencies.csv is unusable and no good list was ever kept: every row would be quarantined as
    an unknown agency, so nothing new is pulled or ingested (the inbox files wait, unchanged), core and marts stay
    as they were, and the run fails with a critical alert that says why."""
    from transforms.quality.report import build_reports

    get_run_logger().error("%s", message)
    inbox = Path(settings.inbox)
    waiting = ingest.discover(inbox) if inbox.is_dir() else []
    rejected = [{"file": str(settings.resolved_agencies_path), "message": message}]
    reports = build_reports(run.warehouse, run.run_id, [], rejected=rejected, data_docs=False)
    notify(settings, reports["summary"])
    create_markdown_artifact(key="nightly-summary", markdown=(
        f"# Nightly run {run.run_id} (as of {as_of})\n\n{message}\n\n{len(waiting)} inbox entr(ies) wait for a "
        f"usable agencies.csv; nothing was ingested, core and marts are unchanged.\n\n" + reports["markdown"]))
    run.ledger.finish_run(run.run_id, "failed", {"as_of": str(as_of), "files": 0, "waiting": len(waiting),
                                                 "agencies": message.splitlines()[0], "rebuild": "none",
                                                 "report": str(reports["html"])})
    return Failed(message=message)


def listed_entries(outcomes: list[ingest.FileOutcome]) -> list[dict]:
    """What the night saw and did not take as data, said once and not as a failure: entries only listed (hidden,
    temporary, not data), a copy of content already taken, and what a reader set aside from a file it read (a
    footer, blank rows, other sheets)."""
    out = [{"file": o.rel, "message": o.error, "listed": True} for o in outcomes
           if o.status == "skipped" or (o.status == "duplicate" and o.error)]
    out += [{"file": o.rel, "message": "; ".join(o.notes), "listed": True} for o in outcomes
            if o.status == "staged" and o.notes]
    return out


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
