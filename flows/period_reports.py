"""Step 7 of the night: the KPI reports of the latest closed month and quarter, and the alerts made from the marts.

What is made is decided in ``transforms.reports`` (Prefect-free); this module only runs it as a task, links the
files from the run's Prefect artifact ``kpi-reports`` and sends the two optional alerts:

- ``TTHC_KPI_ALERTS``: one message when an agency's KPI is below its target in a period closed since the last
  night (``nightly.below_target`` over ``PeriodReports.newly_closed``); a message that could not be delivered
  leaves ``.kpi_alert_pending`` in the period's folder and is sent again the next night;
- ``TTHC_DUE_ALERTS``: each agency's open dossiers due within ``TTHC_DUE_DAYS`` working days and those overdue
  (``due.due_lists``); ``CODE=URL`` sends one agency its own list, a plain URL receives every agency's.

Nothing here fails the night: the marts are already published. A report or alert that cannot be made is one
sentence in the log, in the artifact and in ``PeriodStep.notes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from flows.alerts import log, send
from tthc.settings import Settings


@dataclass
class PeriodStep:
    """What step 7 did: the reports (None when turned off), who was alerted, what could not be done."""

    reports: object | None = None  # transforms.reports.nightly.PeriodReports
    kpi_alert_items: int = 0  # (agency, period, KPI) below target that were sent
    due_alerted: list[str] = field(default_factory=list)  # agency codes whose due list was sent
    notes: list[str] = field(default_factory=list)


@task(name="period-reports", cache_policy=NONE)
def period_reports_task(warehouse: Path, settings: Settings, as_of: date) -> PeriodStep:
    log = get_run_logger()
    step = run_period_step(warehouse, settings, as_of)
    for note in step.notes:
        log.warning("%s", note)
    if step.reports is None and not step.notes and not step.kpi_alert_items and not step.due_alerted:
        return step  # reports turned off and nothing sent: no artifact to read
    create_markdown_artifact(key="kpi-reports", markdown=artifact_markdown(step, warehouse, settings),
                             description="KPI reports of the latest closed month and quarter")
    return step


def run_period_step(warehouse: Path, settings: Settings, as_of: date) -> PeriodStep:
    """The reports, then the alerts; each part on its own, so one that fails does not stop the others."""
    from transforms.reports.nightly import alert_periods

    step = PeriodStep()
    if settings.kpi_reports:
        _guarded(step, "báo cáo chỉ tiêu", lambda: _reports(step, warehouse, settings, as_of))
    if settings.kpi_alert_url_list and step.reports is not None and alert_periods(warehouse, step.reports):
        _guarded(step, "cảnh báo chỉ tiêu", lambda: _kpi_alert(step, warehouse, settings))
    if settings.due_alert_routes:
        _guarded(step, "danh sách hồ sơ đến hạn", lambda: _due_alerts(step, warehouse, settings))
    return step


def _guarded(step: PeriodStep, what: str, fn) -> None:
    try:
        fn()
    except Exception as exc:  # a report or an alert never costs the night; it is said instead
        log.debug("period step: %s", what, exc_info=True)  # the traceback for --debug; the operator reads the note
        step.notes.append(f"Không làm được {what} đêm nay ({exc}). Cán bộ vận hành xem nhật ký của lần chạy; đêm "
                          f"sau sẽ làm lại.")


def _reports(step: PeriodStep, warehouse: Path, settings: Settings, as_of: date) -> None:
    from transforms.reports.nightly import write_period_reports

    step.reports = write_period_reports(warehouse, as_of, pdf=settings.report_pdf,
                                        portal_scores=settings.portal_scores_path, due_days=settings.due_days)
    step.notes.extend(step.reports.notes)


def _kpi_alert(step: PeriodStep, warehouse: Path, settings: Settings) -> None:
    from transforms.reports.nightly import alert_periods, alert_text, below_target, mark_alert

    periods = alert_periods(warehouse, step.reports)
    items = below_target(warehouse, periods)
    delivered = True
    if items:
        first = step.reports.written.get(periods[0], {}).get("html")
        body = alert_text(items, report_url=link(settings, warehouse, first) if first else None)
        title = f"[TTHC] Chỉ tiêu không đạt trong kỳ vừa kết thúc ({', '.join(periods)})"
        delivered = send(settings.kpi_alert_url_list, title, body)
    if not delivered:
        step.notes.append("Cảnh báo chỉ tiêu không đạt chưa gửi được (xem nhật ký); danh sách có trong báo cáo; "
                          "đêm sau sẽ gửi lại.")
    else:
        step.kpi_alert_items = len(items)
    mark_alert(warehouse, periods, delivered)


def _due_alerts(step: PeriodStep, warehouse: Path, settings: Settings) -> None:
    from transforms.marts import marts_as_of
    from transforms.reports.due import alerts, due_lists

    if marts_as_of(warehouse) is None:
        step.notes.append("Chưa gửi danh sách hồ sơ đến hạn: kho dữ liệu chưa có số liệu đã công bố (chạy "
                          "`tthc run` trước).")
        return
    days = settings.due_days
    lists = due_lists(warehouse, days=days, extra_days_off=settings.resolved_extra_days_off_path)
    messages = alerts(lists, days)
    names = {a.agency_code: a.agency_name for a in lists}
    routes = settings.due_alert_routes
    for code, urls in routes.items():
        if code is None:
            continue
        if code not in messages:  # nothing open for that agency tonight: no message
            continue
        if send(urls, f"[TTHC] Hồ sơ cần xử lý trước khi hết kỳ: {names[code]} ({code})", messages[code]):
            step.due_alerted.append(code)
        else:
            step.notes.append(f"Danh sách hồ sơ đến hạn của {code} chưa gửi được (xem nhật ký).")
    if routes.get(None) and messages:
        body = "\n\n".join(messages[c] for c in sorted(messages))
        if send(routes[None], f"[TTHC] Hồ sơ cần xử lý trước khi hết kỳ: {len(messages)} đơn vị", body):
            step.due_alerted.extend(c for c in sorted(messages) if c not in step.due_alerted)
        else:
            step.notes.append("Danh sách hồ sơ đến hạn chưa gửi được (xem nhật ký).")


def link(settings: Settings, warehouse: Path, path: Path) -> str:
    """Where a person opens a file of ``_reports/``: under ``TTHC_REPORT_URL_BASE`` when it is served, else its
    file URL."""
    p = Path(path)
    base = getattr(settings, "report_url_base", None)
    if base:
        rel = p.relative_to(Path(warehouse) / "_reports").as_posix()
        return f"{base.rstrip('/')}/{rel}"
    return p.absolute().as_uri()


def artifact_markdown(step: PeriodStep, warehouse: Path, settings: Settings) -> str:
    """The ``kpi-reports`` artifact: a line per period with its files, the index, what was sent, the notes."""
    lines = ["# Báo cáo chỉ tiêu (kỳ vừa kết thúc)", ""]
    res = step.reports
    if res is None:
        lines.append("Báo cáo chỉ tiêu không được tạo đêm nay (TTHC_KPI_REPORTS=false)."
                     if not settings.kpi_reports else "Báo cáo chỉ tiêu chưa được tạo.")
    else:
        for period, files in res.written.items():
            state = ("mới" if period in res.newly_closed
                     else "không đổi" if period in res.unchanged else "cập nhật")
            links = " · ".join(f"[{Path(f).name}]({link(settings, warehouse, f)})" for f in files.values() if f)
            lines.append(f"- {period} ({state}): {links}")
        if res.index is not None:
            lines += ["", f"Mục lục mọi báo cáo: [{res.index.name}]({link(settings, warehouse, res.index)})"]
    if step.kpi_alert_items:
        lines += ["", f"Đã gửi cảnh báo: {step.kpi_alert_items} chỉ tiêu không đạt."]
    if step.due_alerted:
        lines += ["", f"Đã gửi danh sách hồ sơ đến hạn cho: {', '.join(step.due_alerted)}."]
    if step.notes:
        lines += ["", "## Lưu ý", ""] + [f"- {n}" for n in step.notes]
    return "\n".join(lines) + "\n"
