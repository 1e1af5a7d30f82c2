"""Reports of a run: GX Data Docs, a self-contained Vietnamese HTML report, and the markdown summary.

``build_reports(warehouse, run_id, results)`` returns ``{"data_docs": Path|None, "html": Path, "markdown": str,
"summary": dict}``. The HTML is rendered by the reports' template engine (``transforms/reports/templating.py``,
Jinja2 with autoescaping, template ``dq_report.html``) with the one text catalogue (``texts.yaml``): rule names,
table names and details in Vietnamese words (the rule's code and the gate's technical message stay beside them),
the data date, the rows set aside per unit, and examples located by the row a person looks up in the file (the
sheet row of an XLSX, the line of a CSV, ``_source_line`` of the raw batch). It opens offline (inline CSS, no
script, no link out). Examples are ids and rows only, never values of personal data.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path

from transforms.quality.model import GateResult
from transforms.reports import texts
from transforms.reports.templating import render, write_atomic

TITLE = texts.t("dq.title")
_EXAMPLE = re.compile(r"^(?P<id>.*) \(row (?P<row>\d+)\)$")
UNKNOWN_AGENCY = "(không rõ)"


def rule_vi(name: str) -> str:
    """A rule in Vietnamese words (``not_null:received_at`` -> "Thiếu giá trị bắt buộc")."""
    return texts.rule_name(name)


def _read(con, sql: str, params: list) -> list[tuple]:
    try:
        return con.execute(sql, params).fetchall()
    except Exception:  # noqa: BLE001 - a batch file gone or unreadable: the report shows what it has
        return []


def _batch_file(warehouse: Path, table: str, prefix: str, batch_id: str) -> Path | None:
    f = Path(warehouse) / table.replace("stg_", prefix, 1) / f"{batch_id}.parquet"
    return f if f.exists() else None


def quarantine_counts(warehouse: Path, table: str, batch_id: str) -> dict[str, int]:
    q = _batch_file(warehouse, table, "quarantine_", batch_id)
    if q is None:
        return {}
    import duckdb

    con = duckdb.connect()
    try:
        return dict(_read(con, "SELECT _rule, count(*) FROM read_parquet(?) GROUP BY 1 ORDER BY 2 DESC", [str(q)]))
    finally:
        con.close()


def quarantine_by_unit(warehouse: Path, table: str, batch_id: str, limit: int = 5) -> list[dict]:
    """Rows set aside of a batch per agency (the row's, else the prefix of its Mã hồ sơ), rule and column, with the
    first lines a person looks up in the file; no value of the rows."""
    q = _batch_file(warehouse, table, "quarantine_", batch_id)
    if q is None:
        return []
    import duckdb

    con = duckdb.connect()
    try:
        cols = {r[0] for r in _read(con, "DESCRIBE SELECT * FROM read_parquet(?)", [str(q)])}
        parts = [f"nullif(trim({c}::VARCHAR), '')" for c in ("agency_code",) if c in cols]
        parts += ["nullif(split_part(dossier_id::VARCHAR, '-', 1), '')"] if "dossier_id" in cols else []
        agency = f"coalesce({', '.join(parts)}, '{UNKNOWN_AGENCY}')" if parts else f"'{UNKNOWN_AGENCY}'"
        line = "_source_line" if "_source_line" in cols else "_source_row"
        rows = _read(con, f"SELECT {agency}, _rule, _column, count(*), list({line} ORDER BY {line})[1:{limit}] "
                          "FROM read_parquet(?) GROUP BY ALL ORDER BY 1, 4 DESC", [str(q)])
    finally:
        con.close()
    return [{"agency_code": a, "rule": r, "column": c, "rows": int(n), "lines": list(ls)} for a, r, c, n, ls in rows]


def _lines_of(warehouse: Path, table: str, batch_id: str, rows: set[int]) -> dict[int, int]:
    """``_source_row`` -> ``_source_line`` (the row a person looks up) from the batch's raw file."""
    raw = _batch_file(warehouse, table, "raw_", batch_id)
    if raw is None or not rows:
        return {}
    import duckdb

    con = duckdb.connect()
    try:
        return dict(_read(con, "SELECT _source_row, _source_line FROM read_parquet(?) "
                               "WHERE list_contains(?, _source_row)", [str(raw), sorted(rows)]))
    finally:
        con.close()


def where_word(source_file: str | None) -> str:
    """How a person names a place in the file: a sheet row, a line of text, a record."""
    ext = Path(source_file or "").suffix.lower()
    return {".xlsx": "dòng {n} trong bảng tính", ".csv": "dòng {n} của tệp", ".jsonl": "dòng {n} của tệp",
            ".json": "bản ghi thứ {n}"}.get(ext, "dòng {n}")


def located_examples(warehouse: Path, table: str, batch_id: str, source_file: str, examples: list[str]) -> list[str]:
    """Examples ``"<id> (row N)"`` rewritten with the row a person looks up (``"<id> — dòng 13 trong bảng tính"``);
    others as they are."""
    found = [(_EXAMPLE.match(e), e) for e in examples]
    lines = _lines_of(warehouse, table, batch_id, {int(m["row"]) for m, _ in found if m})
    word = where_word(source_file)
    return [f"{m['id']} — {word.format(n=lines.get(int(m['row']), m['row']))}" if m else e for m, e in found]


def detail_vi(r: dict) -> str:
    """What a failed check found, in Vietnamese words, from its structured fields."""
    column = r["name"].split(":", 1)[1] if ":" in r["name"] else ""
    col = f" (cột {column})" if column else ""
    t, o = r.get("expectation_type", ""), r.get("observed") or {}
    if t == "expect_column_to_exist":
        return f"Thiếu cột {column} trong tệp."
    if t == "expect_column_values_to_be_of_type" and "observed_type" in o:
        return f"Cột {column} có kiểu {o['observed_type']}, cần kiểu {o.get('expected_type')}."
    if t == "expect_table_row_count_to_be_between" and "row_count" in o:
        return f"Lô có {texts.number(o['row_count'])} dòng, nằm ngoài giới hạn cho phép."
    if r.get("element_count"):
        return (f"{texts.number(r['unexpected_count'])} trên {texts.number(r['element_count'])} dòng "
                f"({texts.percent(r['unexpected_percent'] / 100, 2)}) vi phạm quy tắc{col}.")
    if r.get("unexpected_count"):
        return f"{texts.number(r['unexpected_count'])} trường hợp vi phạm quy tắc{col}."
    return f"Vi phạm quy tắc{col}."


def summarize(warehouse: Path, run_id: str, results: list[GateResult], rejected: list[dict] | None = None,
              as_of: date | None = None) -> dict:
    """A plain dict every output (HTML, markdown, alerts) is rendered from."""
    batches = []
    for g in results:
        fails = []
        for r in g.criticals + g.warnings:
            d = r.to_dict()
            d["rule_vi"] = rule_vi(r.name)
            d["detail_vi"] = detail_vi(d)
            d["examples_vi"] = located_examples(warehouse, g.table, g.batch_id, g.source_file, r.examples)
            fails.append(d)
        batches.append({"table": g.table, "table_vi": texts.table_name(g.table), "batch_id": g.batch_id,
                        "file": g.source_file, "rows": g.rows, "passed": g.passed,
                        "criticals": [d for d in fails if d["severity"] == "critical"],
                        "warnings": [d for d in fails if d["severity"] != "critical"],
                        "checks": len(g.results), "quarantine": quarantine_counts(warehouse, g.table, g.batch_id),
                        "by_unit": quarantine_by_unit(warehouse, g.table, g.batch_id)})
    return {"run_id": run_id, "generated_at": datetime.now().strftime("%Y-%m-%d %H:%M"),
            "as_of": as_of.isoformat() if as_of else None,
            "batches": batches, "rejected_files": list(rejected or []),
            "n_critical": sum(len(b["criticals"]) for b in batches),
            "n_warning": sum(len(b["warnings"]) for b in batches),
            "n_rejected_batches": sum(1 for b in batches if not b["passed"]),
            "report": str(Path(warehouse) / "_reports" / f"dq_{run_id}.html")}


def _agency_names(warehouse: Path) -> dict[str, str]:
    from warehouse.generations import published_dirs

    folder = published_dirs(Path(warehouse)).get("core_agencies")
    if folder is None:
        return {}
    import duckdb

    con = duckdb.connect()
    try:
        return dict(_read(con, "SELECT agency_code, agency_name FROM read_parquet(?)", [str(folder / "*.parquet")]))
    finally:
        con.close()


def per_unit(s: dict, names: dict[str, str]) -> list[dict]:
    """The rows set aside of the run per unit: name, table, file, rule in words, column, rows, lines."""
    out = []
    for b in s["batches"]:
        for u in b.get("by_unit", []):
            code = u["agency_code"]
            name = names.get(code) or (texts.t("common.unknown_agency") if code == UNKNOWN_AGENCY
                                       else f"{code} (không có trong danh mục đơn vị)" if names else code)
            out.append({**u, "name": name, "table_vi": b["table_vi"], "file": b["file"],
                        "rule_vi": rule_vi(u["rule"]), "where": where_word(b["file"])})
    return sorted(out, key=lambda u: (u["name"], u["file"], -u["rows"]))


def _data_date(warehouse: Path, s: dict) -> date | None:
    if s.get("as_of"):
        return date.fromisoformat(s["as_of"])
    from warehouse.generations import published_manifest

    got = published_manifest(Path(warehouse)).get("built_from", {}).get("as_of")
    return date.fromisoformat(got) if got else None


def render_html(s: dict, warehouse: Path | None = None) -> str:
    names = _agency_names(warehouse) if warehouse else {}
    return render("dq_report.html", "vi", s=s, title=TITLE, failed=_failed(s), listed=_listed(s),
                  fails=[(b, r) for b in s["batches"] for r in b["criticals"] + b["warnings"]],
                  units=per_unit(s, names), data_date=_data_date(warehouse, s) if warehouse else None,
                  generated=datetime.strptime(s["generated_at"], "%Y-%m-%d %H:%M"))


def _failed(s: dict) -> list[dict]:
    return [f for f in s["rejected_files"] if not f.get("listed")]


def _listed(s: dict) -> list[dict]:
    return [f for f in s["rejected_files"] if f.get("listed")]


def render_markdown(s: dict) -> str:
    lines = [f"# {TITLE} — `{s['run_id']}`", "",
             f"Lô kiểm tra: **{len(s['batches'])}**, bị chặn: **{s['n_rejected_batches']}**, "
             f"lỗi nghiêm trọng: **{s['n_critical']}**, cảnh báo: **{s['n_warning']}**, "
             f"tệp bị từ chối: **{len(_failed(s))}**, chỉ liệt kê: **{len(_listed(s))}**", "",
             "| bảng (table) | tệp | số dòng | dòng cách ly | kết quả |", "|---|---|---:|---:|---|"]
    for b in s["batches"]:
        res = "REJECTED" if not b["passed"] else ("warnings" if b["warnings"] else "ok")
        lines.append(f"| {b['table']} | {b['file']} | {b['rows']:,} | {sum(b['quarantine'].values()):,} | {res} |")
    fails = [(b, r) for b in s["batches"] for r in b["criticals"] + b["warnings"]]
    if fails:
        lines += ["", "| mức độ | tệp | quy tắc | số dòng sai | % | ví dụ |", "|---|---|---|---:|---:|---|"]
        for b, r in fails:
            ex = r.get("examples_vi") or r["examples"]
            lines.append(f"| {r['severity']} | {b['file']} | `{r['name']}` {rule_vi(r['name'])} | "
                         f"{r['unexpected_count']:,} | {r['unexpected_percent']:.2f} | {', '.join(ex[:3])} |")
    for f in s["rejected_files"]:
        lines.append(f"- {'listed' if f.get('listed') else 'rejected file'} {f.get('file')}: {f.get('message')}")
    lines += ["", f"Report: `{s['report']}`"]
    return "\n".join(lines)


def build_reports(warehouse: Path, run_id: str, results: list[GateResult], *,
                  rejected: list[dict] | None = None, data_docs: bool = True, as_of: date | None = None) -> dict:
    warehouse = Path(warehouse)
    s = summarize(warehouse, run_id, results, rejected, as_of)
    page = write_atomic(warehouse / "_reports" / f"dq_{run_id}.html", render_html(s, warehouse))
    docs = None
    if data_docs:
        from transforms.quality import gx_runner

        docs = gx_runner.build_data_docs(warehouse)
    return {"html": page, "data_docs": docs, "markdown": render_markdown(s), "summary": s}
