"""GX Data Docs that keep their history and open offline.

Great Expectations renders Data Docs from the validation results its context holds. The gate's context lives for
one process (a file context's ``add_or_update_*`` wipes assets, see gx_runner), so each run's site builder would
list only that run's results and delete the earlier pages. Instead each run renders into a scratch site, and
``keep`` moves its validation pages into ``<warehouse>/_reports/data_docs/validations/`` where they accumulate,
then writes the site's ``index.html`` itself from every page on disk (newest first).

GX's pages load Bootstrap, jQuery, Vega and fonts from CDNs; a warehouse server often has no internet and an
official's browser must not call out. Every page is rewritten to be self-contained: external ``<script>``,
``<link>`` and ``<img>`` references are removed, and a small inline stylesheet lays out GX's tables and cards.
"""

from __future__ import annotations

import html
import os
import re
import shutil
from datetime import datetime
from pathlib import Path

_EXTERNAL_SCRIPT = re.compile(r"<script\b[^>]*\bsrc=[\"']https?://[^>]*>\s*</script>", re.I | re.S)
_EXTERNAL_LINK = re.compile(r"<link\b[^>]*\bhref=[\"']https?://[^>]*>", re.I | re.S)
_EXTERNAL_IMG = re.compile(r"<img\b[^>]*\bsrc=[\"']https?://[^>]*>", re.I | re.S)
_EXTERNAL_A = re.compile(r"<a\b[^>]*\bhref=[\"']https?://[^\"']*[\"'][^>]*>(.*?)</a>", re.I | re.S)
_CSS_URL = re.compile(r"url\(\s*[\"']?https?://[^)]*\)", re.I)

OFFLINE_CSS = """<style id="tthc-offline">
body{font-family:'Noto Sans','DejaVu Sans',Arial,sans-serif;margin:16px;color:#1d2733;background:#fff}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}th,td{border:1px solid #ccd;padding:3px 6px;
vertical-align:top;text-align:left}th{background:#eef1f6}.card{border:1px solid #dde;margin:10px 0;padding:8px}
.text-danger{color:#a40000}.text-success{color:#226622}.d-none,.modal,.navbar-toggler{display:none}
code,pre{font-size:12px;white-space:pre-wrap}.tthc-offline-note{color:#667;font-size:12px}
</style>"""

NOTE = ('<p class="tthc-offline-note">Trang này mở được không cần Internet (offline): kiểu dáng và biểu đồ tải từ '
        'CDN của Great Expectations đã được bỏ. / Rendered offline: CDN styles and charts removed.</p>')


def make_offline(text: str) -> str:
    """A GX page without any request leaving it: external scripts, stylesheets and images removed, external
    links kept as their text, an inline stylesheet in their place."""
    text = _EXTERNAL_SCRIPT.sub("", text)
    text = _EXTERNAL_LINK.sub("", text)
    text = _EXTERNAL_IMG.sub("", text)
    text = _EXTERNAL_A.sub(lambda m: m.group(1), text)
    text = _CSS_URL.sub("none", text)
    if 'id="tthc-offline"' not in text:
        text = re.sub(r"</head>", OFFLINE_CSS + "</head>", text, count=1, flags=re.I)
        text = re.sub(r"(<body\b[^>]*>)", r"\1" + NOTE, text, count=1, flags=re.I)
    return text


def _offline_static(site: Path) -> None:
    for css in (site / "static").rglob("*.css") if (site / "static").is_dir() else []:
        css.write_text(_CSS_URL.sub("none", css.read_text(encoding="utf-8", errors="replace")), encoding="utf-8")
    for svg in (site / "static").rglob("*.svg") if (site / "static").is_dir() else []:
        svg.unlink()  # GX's logos; nothing of ours links them


def keep(scratch: Path, site: Path) -> Path:
    """Move the validation and expectation pages GX rendered in ``scratch`` into ``site`` (pages of earlier runs
    stay), make every page offline, and write ``site/index.html`` listing every validation page, newest first."""
    scratch, site = Path(scratch), Path(site)
    site.mkdir(parents=True, exist_ok=True)
    for sub in ("validations", "expectations", "static"):
        src = scratch / sub
        if not src.is_dir():
            continue
        for p in sorted(src.rglob("*")):
            if not p.is_file():
                continue
            dst = site / sub / p.relative_to(src)
            dst.parent.mkdir(parents=True, exist_ok=True)
            if p.suffix == ".html":
                text = make_offline(p.read_text(encoding="utf-8", errors="replace"))
                tmp = dst.with_name(f".{dst.name}.tmp")
                tmp.write_text(text, encoding="utf-8")
                os.replace(tmp, dst)
            elif sub == "static" and dst.exists():
                continue
            else:
                shutil.copy2(p, dst)
    _offline_static(site)
    write_index(site)
    return site / "index.html"


def _page_facts(path: Path, site: Path) -> dict:
    rel = path.relative_to(site / "validations")
    parts = rel.parts  # <suite>/<run name>/<run time>/<asset>.<batch>.html
    text = path.read_text(encoding="utf-8", errors="replace")
    failed = "text-danger" in text or "Failed" in text.split("Overview", 1)[-1][:4000]
    batch = re.search(r"\.(b\d{8}T\d+-[0-9a-f]+)\.", path.name)
    run_time = parts[-2] if len(parts) >= 3 else ""
    try:
        when = datetime.strptime(run_time.rstrip("Z"), "%Y%m%dT%H%M%S.%f")
    except ValueError:
        when = datetime.fromtimestamp(path.stat().st_mtime)
    return {"table": parts[0], "batch": batch.group(1) if batch else path.stem, "when": when, "failed": failed,
            "href": "validations/" + "/".join(parts)}


def write_index(site: Path) -> Path:
    pages = sorted((_page_facts(p, site) for p in (site / "validations").rglob("*.html")),
                   key=lambda f: (f["when"], f["href"]), reverse=True) if (site / "validations").is_dir() else []
    rows = "\n".join(
        f"<tr><td>{f['when']:%d/%m/%Y %H:%M}</td><td>{html.escape(f['table'])}</td>"
        f"<td><a href=\"{html.escape(f['href'])}\">{html.escape(f['batch'])}</a></td>"
        f"<td class=\"{'text-danger' if f['failed'] else 'text-success'}\">"
        f"{'Có quy tắc không đạt' if f['failed'] else 'Đạt'}</td></tr>" for f in pages)
    page = ("<!DOCTYPE html><html lang=\"vi\"><head><meta charset=\"utf-8\"><title>Kết quả kiểm tra dữ liệu (Great "
            "Expectations)</title>" + OFFLINE_CSS + "</head><body><h1>Kết quả kiểm tra dữ liệu theo lô (Great "
            f"Expectations Data Docs)</h1><p>{len(pages)} lần kiểm tra, mới nhất trước. Mỗi trang là kiểm tra GX "
            "trên mẫu của một lô; số đếm chính xác nằm trong báo cáo chất lượng dữ liệu của lần chạy.</p>"
            "<table><tr><th>Thời điểm (UTC)</th><th>Bảng</th><th>Lô</th><th>Kết quả</th></tr>"
            f"{rows}</table></body></html>")
    out = site / "index.html"
    tmp = out.with_name(".index.html.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return out
