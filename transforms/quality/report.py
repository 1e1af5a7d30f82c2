"""Reports of a run: GX Data Docs, a self-contained Vietnamese HTML report, and the markdown summary.

``build_reports(warehouse, run_id, results)`` returns ``{"data_docs": Path|None, "html": Path, "markdown": str}``.
The HTML opens offline (inline CSS, no script, no external link); labels are Vietnamese, column and rule names
English. Examples are ids and source rows only. Quarantined rows of each batch are counted by rule.
"""

from __future__ import annotations

import html
from datetime import datetime
from pathlib import Path

from transforms.quality.model import GateResult

RULE_VI = {
    "column_present": "Thiếu cột", "column_type": "Sai kiểu dữ liệu", "not_null": "Thiếu giá trị bắt buộc",
    "unique_version": "Trùng mã và ngày cập nhật", "code_in_list": "Mã không có trong danh mục",
    "pattern": "Sai định dạng", "min": "Giá trị nhỏ hơn mức tối thiểu", "date_order": "Thứ tự ngày sai",
    "procedure_known": "Mã TTHC không có trong danh mục TTHC", "row_count": "Số dòng của lô ngoài giới hạn",
    "schema_drift": "Cấu trúc tệp thay đổi so với lô trước", "volume": "Số lượng bản ghi bất thường",
    "freshness": "Dữ liệu không được cập nhật kịp thời", "null_share_jump": "Tỷ lệ ô trống tăng đột biến",
    # rebuilt tables (core_*, mart_*: transforms/quality/tables.py)
    "unique_key": "Trùng khóa", "rate_in_0_1": "Tỷ lệ ngoài khoảng [0, 1]",
    "at_most": "Tử số lớn hơn mẫu số / điểm vượt điểm tối đa", "identity": "Sai đẳng thức kiểm tra",
    "agency_known": "Mã đơn vị không có trong danh mục đơn vị",
    # rows set aside (quarantined) by staging or by the gate, and the file verdict on them
    "quarantined_share": "Dòng bị cách ly trong tệp (vượt ngưỡng thì giữ cả tệp)",
    "duplicate_version": "Trùng phiên bản trong cùng tệp (giữ dòng sau)",
    "control_character": "Ký tự điều khiển trong giá trị", "gate_error": "Không kiểm tra được lô",
}
SEV_VI = {"critical": "Nghiêm trọng (chặn lô)", "warning": "Cảnh báo"}
TITLE = "Báo cáo chất lượng dữ liệu"


def rule_vi(name: str) -> str:
    return RULE_VI.get(name.split(":")[0], name)


def quarantine_counts(warehouse: Path, table: str, batch_id: str) -> dict[str, int]:
    q = Path(warehouse) / table.replace("stg_", "quarantine_", 1) / f"{batch_id}.parquet"
    if not q.exists():
        return {}
    import duckdb

    con = duckdb.connect()
    try:
        return dict(con.execute(f"SELECT _rule, count(*) FROM read_parquet('{q}') GROUP BY 1 ORDER BY 2 DESC"
                                ).fetchall())
    finally:
        con.close()


def summarize(warehouse: Path, run_id: str, results: list[GateResult], rejected: list[dict] | None = None) -> dict:
    """A plain dict every output (HTML, markdown, alerts) is rendered from."""
    batches = []
    for g in results:
        batches.append({"table": g.table, "batch_id": g.batch_id, "file": g.source_file, "rows": g.rows,
                        "passed": g.passed, "criticals": [r.to_dict() for r in g.criticals],
                        "warnings": [r.to_dict() for r in g.warnings],
                        "checks": len(g.results), "quarantine": quarantine_counts(warehouse, g.table, g.batch_id)})
    return {"run_id": run_id, "generated_at": datetime.now().strftime("%Y-%m-%d %H:%M"),
            "batches": batches, "rejected_files": list(rejected or []),
            "n_critical": sum(len(b["criticals"]) for b in batches),
            "n_warning": sum(len(b["warnings"]) for b in batches),
            "n_rejected_batches": sum(1 for b in batches if not b["passed"]),
            "report": str(Path(warehouse) / "_reports" / f"dq_{run_id}.html")}


CSS = """body{font-family:'Noto Sans','DejaVu Sans',Arial,sans-serif;margin:24px;color:#1d2733}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin-top:28px;border-bottom:1px solid #ccd}
table{border-collapse:collapse;margin:8px 0 16px;font-size:14px}th,td{border:1px solid #ccd;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#eef1f6}.crit{color:#a40000;font-weight:bold}
.warn{color:#8a5a00;font-weight:bold}.ok{color:#226622;font-weight:bold}code{font-size:13px}
.muted{color:#667}"""


def _e(s) -> str:
    return html.escape(str(s), quote=True)


def render_html(s: dict) -> str:
    out = [f"<!DOCTYPE html><html lang='vi'><head><meta charset='utf-8'><title>{TITLE} - {_e(s['run_id'])}</title>",
           f"<style>{CSS}</style></head><body>", f"<h1>{TITLE}</h1>",
           f"<p class='muted'>Lần chạy <code>{_e(s['run_id'])}</code>, lập lúc {_e(s['generated_at'])}</p>",
           "<h2>Tóm tắt</h2><table>",
           f"<tr><th>Số lô đã kiểm tra</th><td>{len(s['batches'])}</td></tr>",
           f"<tr><th>Lô bị chặn (lỗi nghiêm trọng)</th><td class='{'crit' if s['n_rejected_batches'] else 'ok'}'>"
           f"{s['n_rejected_batches']}</td></tr>",
           f"<tr><th>Lỗi nghiêm trọng</th><td>{s['n_critical']}</td></tr>",
           f"<tr><th>Cảnh báo</th><td>{s['n_warning']}</td></tr>",
           f"<tr><th>Tệp bị từ chối khi đọc</th><td>{len(_failed(s))}</td></tr>",
           f"<tr><th>Tệp, dòng chỉ liệt kê (không phải dữ liệu)</th><td>{len(_listed(s))}</td></tr></table>",
           "<h2>Các lô dữ liệu</h2><table><tr><th>Bảng (table)</th><th>Tệp</th><th>Lô (batch_id)</th>"
           "<th>Số dòng</th><th>Dòng cách ly theo quy tắc</th><th>Kết quả</th></tr>"]
    for b in s["batches"]:
        q = ", ".join(f"{_e(k)}: {v}" for k, v in b["quarantine"].items()) or "0"
        res = ("<span class='crit'>Bị chặn</span>" if not b["passed"] else
               "<span class='warn'>Đạt, có cảnh báo</span>" if b["warnings"] else "<span class='ok'>Đạt</span>")
        out.append(f"<tr><td><code>{_e(b['table'])}</code></td><td>{_e(b['file'])}</td>"
                   f"<td><code>{_e(b['batch_id'])}</code></td><td>{b['rows']:,}</td><td>{q}</td><td>{res}</td></tr>")
    out.append("</table><h2>Kiểm tra không đạt</h2>")
    fails = [(b, r) for b in s["batches"] for r in b["criticals"] + b["warnings"]]
    if not fails:
        out.append("<p class='ok'>Không có kiểm tra nào không đạt.</p>")
    else:
        out.append("<table><tr><th>Mức độ</th><th>Tệp</th><th>Quy tắc (rule)</th><th>Nội dung</th>"
                   "<th>Số dòng sai</th><th>Tỷ lệ</th><th>Ví dụ (mã, dòng)</th></tr>")
        for b, r in fails:
            cls = "crit" if r["severity"] == "critical" else "warn"
            out.append(f"<tr><td class='{cls}'>{SEV_VI.get(r['severity'], r['severity'])}</td>"
                       f"<td>{_e(b['file'])}</td><td><code>{_e(r['name'])}</code></td><td>{_e(rule_vi(r['name']))}"
                       f"<br><span class='muted'>{_e(r['message'])}</span></td><td>{r['unexpected_count']:,}</td>"
                       f"<td>{r['unexpected_percent']:.2f}%</td><td>{'<br>'.join(_e(x) for x in r['examples'])}</td></tr>")
        out.append("</table>")
    for title, files in (("Tệp bị từ chối", _failed(s)),
                         ("Chỉ liệt kê: tệp không phải dữ liệu, bản sao, phần không đọc là dữ liệu", _listed(s))):
        if files:
            out.append(f"<h2>{title}</h2><table><tr><th>Tệp</th><th>Lý do</th></tr>")
            for f in files:
                out.append(f"<tr><td>{_e(f.get('file'))}</td><td>{_e(f.get('message'))}</td></tr>")
            out.append("</table>")
    out.append("<p class='muted'>Chi tiết từng kỳ vọng (Great Expectations Data Docs): thư mục "
               "<code>_reports/data_docs/</code> trong kho dữ liệu.</p></body></html>")
    return "\n".join(out)


def _failed(s: dict) -> list[dict]:
    return [f for f in s["rejected_files"] if not f.get("listed")]


def _listed(s: dict) -> list[dict]:
    return [f for f in s["rejected_files"] if f.get("listed")]


def render_markdown(s: dict) -> str:
    lines = [f"# {TITLE} — `{s['run_id']}`", "",
             f"Lô kiểm tra: **{len(s['batches'])}**, bị chặn: **{s['n_rejected_batches']}**, "
             f"lỗi nghiêm trọng: **{s['n_critical']}**, cảnh báo: **{s['n_warning']}**, "
             f"tệp bị từ chối: **{len(_failed(s))}**, chỉ liệt kê: **{len(_listed(s))}**", "",
             "| table | file | rows | quarantined | result |", "|---|---|---:|---:|---|"]
    for b in s["batches"]:
        res = "REJECTED" if not b["passed"] else ("warnings" if b["warnings"] else "ok")
        lines.append(f"| {b['table']} | {b['file']} | {b['rows']:,} | {sum(b['quarantine'].values()):,} | {res} |")
    fails = [(b, r) for b in s["batches"] for r in b["criticals"] + b["warnings"]]
    if fails:
        lines += ["", "| severity | file | rule | unexpected | % | examples |", "|---|---|---|---:|---:|---|"]
        for b, r in fails:
            lines.append(f"| {r['severity']} | {b['file']} | `{r['name']}` | {r['unexpected_count']:,} | "
                         f"{r['unexpected_percent']:.2f} | {', '.join(r['examples'][:3])} |")
    for f in s["rejected_files"]:
        lines.append(f"- {'listed' if f.get('listed') else 'rejected file'} {f.get('file')}: {f.get('message')}")
    lines += ["", f"Report: `{s['report']}`"]
    return "\n".join(lines)


def build_reports(warehouse: Path, run_id: str, results: list[GateResult], *,
                  rejected: list[dict] | None = None, data_docs: bool = True) -> dict:
    warehouse = Path(warehouse)
    s = summarize(warehouse, run_id, results, rejected)
    out_dir = warehouse / "_reports"
    out_dir.mkdir(parents=True, exist_ok=True)
    page = out_dir / f"dq_{run_id}.html"
    tmp = page.with_name(f".{page.name}.tmp")
    tmp.write_text(render_html(s), encoding="utf-8")
    tmp.replace(page)
    docs = None
    if data_docs:
        from transforms.quality import gx_runner

        docs = gx_runner.build_data_docs(warehouse)
    return {"html": page, "data_docs": docs, "markdown": render_markdown(s), "summary": s}
