"""Alerts that reach people: one message per notification URL per run, through apprise.

``TTHC_ALERT_URLS`` holds apprise URLs, comma-separated (``json://host/path``, ``mailto://...``,
``tgram://...``, ``slack://...``). ``notify(settings, summary)`` sends when the run has a critical failure, a
warning over its threshold, a rejected file, or a crash; the body names the unit (agency), file, rule, counts,
example ids and where the report is. No personal data: examples are record ids and source row numbers only.
``on_failure_hook`` / ``on_crashed_hook`` are Prefect flow state hooks (``@flow(on_failure=[...],
on_crashed=[...])``) that send the same kind of message when the flow itself fails or crashes.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)
MAX_LINES = 40
# runs (pipeline run id and Prefect flow run id) already alerted by this process: one message per URL per run,
# so a flow that fails because of a critical DQ result is not alerted twice by its on_failure hook
_SENT: set[str] = set()


def _current_flow_run_id() -> str | None:
    import sys

    if "prefect" not in sys.modules:
        return None
    try:
        from prefect.runtime import flow_run

        return str(flow_run.id) if flow_run.id else None
    except Exception:  # pragma: no cover - outside a flow run
        return None


def _unit(r: dict) -> str:
    if r.get("agency_code"):
        return r["agency_code"]
    ex = (r.get("examples") or [""])[0]
    return ex.split("-")[0] if "-" in ex else "-"


def should_alert(summary: dict) -> bool:
    return bool(summary.get("n_critical") or summary.get("n_warning") or summary.get("rejected_files")
                or summary.get("crash"))


def render(summary: dict) -> tuple[str, str]:
    """(title, body) in Vietnamese with English rule names; ids only."""
    from transforms.quality.report import rule_vi

    run = summary.get("run_id", "?")
    if summary.get("crash"):
        title = f"[TTHC] Lần chạy {run} bị lỗi / crashed"
    elif summary.get("n_critical"):
        title = f"[TTHC] {summary['n_rejected_batches']} lô bị chặn do lỗi dữ liệu nghiêm trọng ({run})"
    else:
        title = f"[TTHC] Cảnh báo chất lượng dữ liệu ({run})"
    lines = [f"Lần chạy: {run}"]
    if summary.get("crash"):
        lines.append(f"Trạng thái: {summary['crash']}")
    if "batches" in summary:
        lines.append(f"Lô kiểm tra: {len(summary['batches'])}; bị chặn: {summary.get('n_rejected_batches', 0)}; "
                     f"lỗi nghiêm trọng: {summary.get('n_critical', 0)}; cảnh báo: {summary.get('n_warning', 0)}")
    n = 0
    for b in summary.get("batches", []):
        q = sum(b.get("quarantine", {}).values())
        for r in b.get("criticals", []) + b.get("warnings", []):
            n += 1
            if n > MAX_LINES:
                continue
            sev = "NGHIÊM TRỌNG" if r["severity"] == "critical" else "cảnh báo"
            ex = ", ".join(r.get("examples", [])[:3])
            lines.append(f"- [{sev}] đơn vị {_unit(r)}; tệp {b['file']}; quy tắc {r['name']} ({rule_vi(r['name'])}); "
                         f"{r['unexpected_count']:,} dòng sai / {r['element_count']:,} "
                         f"({r['unexpected_percent']:.2f}%); dòng cách ly của lô: {q}"
                         + (f"; ví dụ: {ex}" if ex else ""))
    if n > MAX_LINES:
        lines.append(f"... và {n - MAX_LINES} kiểm tra khác (xem báo cáo)")
    for f in summary.get("rejected_files", []):
        lines.append(f"- [TỆP BỊ TỪ CHỐI] {f.get('file')}: {f.get('message')}")
    if summary.get("report"):
        lines.append(f"Báo cáo: {summary['report']}")
    return title, "\n".join(lines)


def notify(settings, summary: dict) -> None:
    """Send one message per URL in ``settings.alert_url_list`` when ``summary`` calls for it."""
    urls = list(getattr(settings, "alert_url_list", []) or [])
    if not urls or not should_alert(summary):
        return
    keys = {str(k) for k in (summary.get("run_id"), summary.get("flow_run_id") or _current_flow_run_id()) if k}
    if keys & _SENT:
        log.info("alert for run %s already sent", summary.get("run_id"))
        return
    _SENT.update(keys)
    import apprise

    title, body = render(summary)
    if getattr(settings, "report_url_base", None) and summary.get("report"):
        from pathlib import Path

        body += f"\nLink: {settings.report_url_base.rstrip('/')}/{Path(summary['report']).name}"
    ap = apprise.Apprise()
    for u in urls:
        if not ap.add(u):
            log.error("alert URL rejected by apprise: %s", u.split("://")[0] + "://...")
    if not ap.notify(title=title, body=body, body_format=apprise.NotifyFormat.TEXT):
        log.error("at least one alert could not be delivered")


def _hook_summary(flow_run, state, kind: str) -> dict:
    msg = getattr(state, "message", None) or kind
    return {"run_id": getattr(flow_run, "name", None) or str(getattr(flow_run, "id", "?")),
            "flow_run_id": str(getattr(flow_run, "id", "")) or None, "crash": f"{kind}: {msg}"}


def on_failure_hook(flow, flow_run, state) -> None:
    from tthc.settings import get_settings

    notify(get_settings(), _hook_summary(flow_run, state, "Failed"))


def on_crashed_hook(flow, flow_run, state) -> None:
    from tthc.settings import get_settings

    notify(get_settings(), _hook_summary(flow_run, state, "Crashed"))
