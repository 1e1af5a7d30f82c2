"""The nightly flow: inbox files -> raw/staging/quarantine -> (gate) -> core -> marts, with a run summary.

Runs locally on Prefect's ephemeral API (``tthc run``) or on a server when ``PREFECT_API_URL`` is set
(deployment ``nightly`` in prefect.yaml). Business rules live in transforms/; this module only orchestrates.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE
from prefect.states import Completed, Failed

from flows import progress
from transforms import ingest
from tthc.settings import Settings, get_settings
from warehouse.ledger import Ledger

LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


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
    elif out.status == "duplicate":
        log.info("%s: same content already ingested as batch %s; skipped", f.rel, out.duplicate_of)
    else:
        log.error("%s: %s", f.rel, out.error)
    return out


def _summary_markdown(run_id: str, as_of: date, outcomes: list[ingest.FileOutcome], extra: dict) -> str:
    s = ingest.summarize(outcomes)
    lines = [f"# Nightly run {run_id} (as of {as_of})", "",
             f"Files: {s['files']} (staged {s['staged']}, already ingested {s['duplicate']}, "
             f"rejected {s['rejected']}, failed {s['failed']}); rows raw {s['rows_raw']}, staged "
             f"{s['rows_staged']}, quarantined {s['rows_quarantined']}.", ""]
    problems = [o for o in outcomes if o.status in ("rejected", "failed")]
    if problems:
        lines += ["## Files not loaded", ""] + [f"- `{o.rel}`: {o.error}" for o in problems] + [""]
    for k, v in extra.items():
        lines.append(f"- {k}: {v}")
    return "\n".join(lines)


@flow(name="tthc-nightly", log_prints=False)
def nightly(inbox: str | None = None, warehouse: str | None = None, as_of: date | None = None,
            full_rebuild: bool = False):
    """Ingest every new inbox file, check the ledger's row balance, build core and marts."""
    log = get_run_logger()
    settings: Settings = get_settings(inbox=inbox, warehouse=warehouse, as_of=as_of)
    as_of = settings.as_of or default_as_of()
    wh = Path(settings.warehouse)
    wh.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(settings.resolved_ledger_url)
    run_id = f"r{datetime.now(LOCAL_TZ):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    ledger.start_run(run_id, as_of, str(settings.inbox))
    rolled_back = ingest.recover(wh, ledger)
    if rolled_back:
        log.warning("rolled back %d batch(es) left unfinished by an interrupted run: %s", len(rolled_back),
                    ", ".join(rolled_back))
    try:
        agencies = ingest.load_agencies(settings.resolved_agencies_path)
        key = settings.pseudonym_key_bytes(create=True)
        files = ingest.discover(Path(settings.inbox))
        log.info("inbox %s: %d file(s); as_of %s; warehouse %s", settings.inbox, len(files), as_of, wh)
        outcomes: list[ingest.FileOutcome] = []
        codes = [a["agency_code"] for a in agencies]
        for i, f in enumerate(files):
            progress.report("ingest", i, len(files), f.rel)
            outcomes.append(ingest_file_task(f, wh, settings.resolved_ledger_url, run_id, codes, key,
                                             settings.batch_rows))
        progress.report("ingest", len(files), len(files), "")
        ledger.check_balance(run_id)
        extra: dict = {}
        summary = ingest.summarize(outcomes)
        create_table_artifact(
            key="nightly-files", description=f"Files of run {run_id}",
            table=[{"file": o.rel, "status": o.status, "batch": o.batch_id or o.duplicate_of, "raw": o.rows_raw,
                    "staged": o.rows_staged, "quarantined": o.rows_quarantined,
                    "rules": ", ".join(f"{k}={v}" for k, v in sorted(o.rules.items())),
                    "error": o.error or ""} for o in outcomes])
        create_markdown_artifact(key="nightly-summary", markdown=_summary_markdown(run_id, as_of, outcomes, extra))
        bad = [o for o in outcomes if o.status in ("rejected", "failed")]
        status = "failed" if bad else "completed"
        ledger.finish_run(run_id, status, {**summary, **extra, "as_of": str(as_of)})
        result = {"run_id": run_id, "as_of": str(as_of), "summary": summary, "extra": extra,
                  "outcomes": [o.as_dict() for o in outcomes]}
        if bad:
            return Failed(message="; ".join(o.error or o.rel for o in bad), data=result)
        return Completed(message=f"{summary['staged']} file(s) staged", data=result)
    except BaseException as exc:
        ledger.finish_run(run_id, "failed", {"error": f"{type(exc).__name__}: {exc}"})
        raise
    finally:
        ledger.dispose()
