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

from flows.naming import current_flow_run_id

log = logging.getLogger(__name__)
MAX_LINES = 40
# runs (pipeline run id and Prefect flow run id) already alerted by this process: one message per URL per run,
# so a flow that fails because of a critical DQ result is not alerted twice by its on_failure hook
_SENT: set[str] = set()


def _units(r: dict) -> str:
    """The agencies the item is about: its own agency, else the agencies of all its examples (an id starts with
    the agency code: ``H19.26293-250101-0001``), never one unit picked for examples of several."""
    if r.get("agency_code"):
        return r["agency_code"]
    units = []
    for ex in r.get("examples") or []:
        head = str(ex).split(" ")[0]
        if "-" in head and head.split("-")[0] not in units:
            units.append(head.split("-")[0])
    return ", ".join(units) if units else "không xác định"


def is_failure(summary: dict) -> bool:
    """A run that held a batch, rejected a file or crashed failed: it is alerted as an error (Lỗi), not a
    warning."""
    return bool(summary.get("crash") or summary.get("n_critical") or _failed_files(summary))


def _failed_files(summary: dict) -> list[dict]:
    return [f for f in summary.get("rejected_files", []) if not f.get("listed")]


def should_alert(summary: dict) -> bool:
    return bool(is_failure(summary) or summary.get("n_warning")
                or any(f.get("listed") for f in summary.get("rejected_files", [])))


# what an official or operator does next, per kind of item (Vietnamese: they act on it)
NEXT_HELD = ("Việc cần làm: đề nghị đơn vị kiểm tra và xuất lại tệp; nếu dữ liệu đúng, cán bộ vận hành cho lô "
             "vào bằng lệnh: {cmd}")
NEXT_WARNING = "Việc cần làm: xem các dòng bị cách ly trong báo cáo và đề nghị đơn vị sửa ở lần xuất sau."
NEXT_REJECTED = "Việc cần làm: đề nghị đơn vị xuất lại tệp đúng định dạng (hoặc sửa tệp) rồi để vào hộp thư đến."


def release_command(batch_id: str) -> str:
    return f'tthc release {batch_id} --reason "..."'


def render(summary: dict) -> tuple[str, str]:
    """(title, body) in Vietnamese: what happened, where (file, rule, count, units), and what to do next; ids only,
    never personal data."""
    from transforms.quality.report import rule_vi

    run = summary.get("run_id", "?")
    n_files = len(_failed_files(summary))
    if summary.get("crash"):
        title = f"[TTHC] Lỗi: lần chạy {run} bị dừng"
    elif summary.get("n_critical") or n_files:
        parts = []
        if summary.get("n_rejected_batches"):
            parts.append(f"{summary['n_rejected_batches']} lô bị giữ lại")
        if n_files:
            parts.append(f"{n_files} tệp không đọc được")
        title = f"[TTHC] Lỗi: {', '.join(parts) or 'dữ liệu không đạt'} ({run})"
    else:
        title = f"[TTHC] Cảnh báo chất lượng dữ liệu ({run})"
    lines = [f"Lần chạy: {run}"]
    if summary.get("crash"):
        lines.append(f"Trạng thái: {summary['crash']}")
        lines.append("Việc cần làm: cán bộ vận hành xem nhật ký của lần chạy; lần chạy sau sẽ làm lại phần dở dang.")
    if "batches" in summary:
        lines.append(f"Lô kiểm tra: {len(summary['batches'])}; bị giữ lại: {summary.get('n_rejected_batches', 0)}; "
                     f"lỗi nghiêm trọng: {summary.get('n_critical', 0)}; cảnh báo: {summary.get('n_warning', 0)}")
    n = 0
    for b in summary.get("batches", []):
        q = sum(b.get("quarantine", {}).values())
        items = b.get("criticals", []) + b.get("warnings", [])
        for r in items:
            n += 1
            if n > MAX_LINES:
                continue
            sev = "LỖI" if r["severity"] == "critical" else "cảnh báo"
            ex = ", ".join(r.get("examples", [])[:3])
            lines.append(f"- [{sev}] tệp {b['file']}; đơn vị {_units(r)}; {rule_vi(r['name'])} (quy tắc {r['name']}); "
                         f"{r['unexpected_count']:,} dòng sai / {r['element_count']:,} "
                         f"({r['unexpected_percent']:.2f}%); dòng cách ly của tệp: {q}"
                         + (f"; ví dụ: {ex}" if ex else ""))
        if items and n <= MAX_LINES:
            if not b.get("passed", True):
                lines.append(f"  Lô {b['batch_id']} bị giữ lại, chưa vào số liệu. "
                             + NEXT_HELD.format(cmd=release_command(b["batch_id"])))
            else:
                lines.append("  " + NEXT_WARNING)
    if n > MAX_LINES:
        lines.append(f"... và {n - MAX_LINES} kiểm tra khác (xem báo cáo)")
    for f in _failed_files(summary):
        lines.append(f"- [LỖI: TỆP KHÔNG ĐƯỢC ĐỌC] {f.get('file')}: {f.get('message')}")
    if n_files:
        lines.append("  " + NEXT_REJECTED)
    for f in summary.get("rejected_files", []):
        if f.get("listed"):
            lines.append(f"- [lưu ý: không phải dữ liệu / không đọc lại] {f.get('file')}: {f.get('message')}")
    if summary.get("report"):
        lines.append(f"Báo cáo: {summary['report']}")
    return title, "\n".join(lines)


def notify(settings, summary: dict) -> None:
    """Send one message per URL in ``settings.alert_url_list`` when ``summary`` calls for it."""
    urls = list(getattr(settings, "alert_url_list", []) or [])
    if not urls or not should_alert(summary):
        return
    keys = {str(k) for k in (summary.get("run_id"), summary.get("flow_run_id") or current_flow_run_id()) if k}
    if keys & _SENT:
        log.info("alert for run %s already sent", summary.get("run_id"))
        return
    _SENT.update(keys)
    title, body = render(summary)
    if getattr(settings, "report_url_base", None) and summary.get("report"):
        from pathlib import Path

        body += f"\nXem báo cáo: {settings.report_url_base.rstrip('/')}/{Path(summary['report']).name}"
    send(urls, title, body, failure=is_failure(summary))


def send(urls: list[str], title: str, body: str, *, failure: bool = False) -> bool:
    """One message to every apprise URL in ``urls``; False (and a logged sentence) when one was refused or not
    delivered. Never raises for a delivery problem: an alert that fails must not cost the night."""
    import apprise

    ap = apprise.Apprise()
    for u in urls:
        if not ap.add(u):
            log.error("alert URL rejected by apprise: %s", u.split("://")[0] + "://...")
    kind = apprise.NotifyType.FAILURE if failure else apprise.NotifyType.WARNING
    if not ap.notify(title=title, body=body, body_format=apprise.NotifyFormat.TEXT, notify_type=kind):
        log.error("at least one alert could not be delivered")
        return False
    return True


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
