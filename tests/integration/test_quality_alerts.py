"""End to end: a bad batch is rejected, the report is built and opens in headless chromium, and the alert
reaches a real webhook receiver (apprise json://) and a real SMTP server (aiosmtpd, apprise mailto://)."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from devkit.synth import DOSSIERS, write_dossier_batch
from flows import alerts
from transforms.quality import mart_dq
from transforms.quality.gate import check_batch
from transforms.quality.report import TITLE, build_reports

AS_OF = date(2025, 12, 31)


def _settings(urls):
    return SimpleNamespace(alert_url_list=urls, dq_gx_sample_rows=1000, freshness_lag_days=3, report_url_base=None)


@pytest.mark.integration
def test_bad_batches_alert_by_webhook_and_email(tmp_path, webhook, smtp):
    hport, hooks = webhook
    sport, mails = smtp
    s = _settings([f"json://127.0.0.1:{hport}/dq-alerts",
                   f"mailto://127.0.0.1:{sport}?smtp=127.0.0.1&mode=insecure&from=tthc@example.org"
                   f"&to=kstthc@example.org"])
    # previous marts: must stay as they were when the gate rejects a batch
    # both exports are over a week old: the table is stale, and the verdict comes once, on the latest batch
    good = write_dossier_batch(tmp_path, 400, end=AS_OF - timedelta(days=8), seed=1)
    mart_dq.build(tmp_path)
    mart = tmp_path / "mart_dq__agency_source_period" / "data.parquet"
    before = mart.read_bytes()
    bad = write_dossier_batch(tmp_path, 400, end=AS_OF - timedelta(days=9), seed=2, overrides={
        "status": "CASE WHEN i < 4 THEN 13 ELSE 4 END::BIGINT",
        "due_at": "CASE WHEN i % 5 = 0 THEN rec - INTERVAL 1 DAY ELSE rec + INTERVAL 5 DAY END"})
    results = [check_batch(tmp_path, DOSSIERS, b, settings=s, as_of=AS_OF) for b in (good, bad)]
    assert results[0].passed and not results[1].passed
    # the flow would publish core/marts only from passed batches; nothing is rebuilt here for the bad one
    assert mart.read_bytes() == before
    out = build_reports(tmp_path, "run-42", results)
    assert out["html"].exists() and (tmp_path / "_reports" / "data_docs" / "index.html").exists()
    assert "code_in_list:status" in out["markdown"]
    alerts.notify(s, out["summary"])
    alerts.notify(s, out["summary"])          # once per run, even if called again
    assert len(hooks) == 1 and hooks[0]["path"] == "/dq-alerts"
    body = hooks[0]["json"]["message"]
    bad_file = results[1].source_file
    for needle in (bad_file, "code_in_list:status", "date_order:due_at>=received_at", "freshness", "dq_run-42.html",
                   "H19."):
        assert needle in body, needle
    assert "4 dòng sai" in body
    assert body.count("freshness") == 1  # not once per stale file
    assert len(mails) == 1
    text = mails[0].content.decode("utf-8", "replace")
    assert "kstthc@example.org" in mails[0].rcpt_tos
    assert "code_in_list" in text or "code_in_list" in json.dumps(text)


@pytest.mark.integration
def test_clean_run_sends_nothing(tmp_path, webhook):
    hport, hooks = webhook
    s = _settings([f"json://127.0.0.1:{hport}/x"])
    b = write_dossier_batch(tmp_path, 300, end=AS_OF)
    g = check_batch(tmp_path, DOSSIERS, b, settings=s, as_of=AS_OF)
    out = build_reports(tmp_path, "run-clean", [g], data_docs=False)
    alerts.notify(s, out["summary"])
    assert g.passed and hooks == []


@pytest.mark.integration
def test_crash_hook_alerts(webhook, monkeypatch):
    hport, hooks = webhook
    monkeypatch.setenv("TTHC_ALERT_URLS", f"json://127.0.0.1:{hport}/crash")
    run = SimpleNamespace(name="brave-otter", id="0000-crash")
    alerts.on_crashed_hook(None, run, SimpleNamespace(message="worker killed"))
    assert len(hooks) == 1 and "worker killed" in hooks[0]["json"]["message"]


def _png_rows(path: Path):
    """Minimal PNG decoder (8-bit RGB/RGBA, non-interlaced: what chromium writes) -> list of rows of pixels."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        ln, typ = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + ln]
        if typ == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and ctype in (2, 6)
            bpp = 3 if ctype == 2 else 4
        elif typ == b"IDAT":
            idat += chunk
        pos += 12 + ln
    raw = zlib.decompress(idat)
    stride, rows, prev = w * bpp, [], bytearray(w * bpp)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[x * bpp:x * bpp + 3]) for x in range(w)])
        prev = line
    return rows


@pytest.mark.integration
def test_html_report_opens_offline_in_chromium(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    b = write_dossier_batch(tmp_path, 200, end=AS_OF, overrides={"fee_vnd": "-1::BIGINT"})
    g = check_batch(tmp_path, DOSSIERS, b, settings=SimpleNamespace(dq_gx_sample_rows=0), as_of=AS_OF)
    page = build_reports(tmp_path, "run-html", [g], data_docs=False)["html"]
    text = page.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text and "<script" not in text  # offline, no CDN
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--window-size=1000,400", f"--user-data-dir={tmp_path / 'chrome'}"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    assert f"<h1>{TITLE}</h1>" in dom and "min:fee_vnd" in dom and "Bị chặn" in dom

    def shot(uri, name):
        out = tmp_path / name
        subprocess.run([chromium, *flags, f"--screenshot={out}", uri], capture_output=True, timeout=120)
        assert out.exists()
        return _png_rows(out)

    # the title band (the h1 at the top) has ink; the same page without its h1 has none there
    blank = tmp_path / "blank.html"
    blank.write_text(text.replace(f"<h1>{TITLE}</h1>", "<h1>&nbsp;</h1>"), encoding="utf-8")
    with_title, without = shot(page.as_uri(), "a.png"), shot(blank.as_uri(), "b.png")

    def dark(rows):
        return sum(1 for row in rows[20:60] for px in row[:700] if sum(px) < 200)

    assert dark(with_title) > 300 and dark(without) < 20


@pytest.mark.integration
def test_alert_items_name_file_units_release_command_and_next_step(webhook):
    """A run that only rejected files is an error (Lỗi, type failure), not a warning; a held batch's item names
    its file (not the batch id), every unit of its examples, the exact release command and what to do next; a
    warning-only run is sent as a warning; the report link uses TTHC_REPORT_URL_BASE."""
    hport, hooks = webhook
    s = SimpleNamespace(alert_url_list=[f"json://127.0.0.1:{hport}/a"], report_url_base="https://bc.example.vn/r")
    alerts._SENT.clear()
    alerts.notify(s, {"run_id": "r-files", "batches": [], "n_critical": 0, "n_warning": 0, "n_rejected_batches": 0,
                      "rejected_files": [{"file": "one_stop/dossiers/hoso.csv", "message": "required column "
                                          "'Ngày tiếp nhận' not found"}], "report": "/wh/_reports/dq_r-files.html"})
    held = {"table": "stg_one_stop__dossiers", "batch_id": "b20251201T000000000000-abcdef0123",
            "file": "hoso_t11.csv", "passed": False, "quarantine": {"code_in_list:status": 55}, "warnings": [],
            "criticals": [{"name": "quarantined_share", "severity": "critical", "unexpected_count": 55,
                           "element_count": 271, "unexpected_percent": 20.3, "agency_code": None,
                           "examples": ["H31.1-250101-0001 (row 2)", "H31.2-250101-0002 (row 9)"]}]}
    alerts.notify(s, {"run_id": "r-held", "batches": [held], "n_critical": 1, "n_warning": 0,
                      "n_rejected_batches": 1, "rejected_files": [], "report": "/wh/_reports/dq_r-held.html"})
    warn = {**held, "passed": True, "criticals": [], "warnings": [{**held["criticals"][0], "severity": "warning",
                                                                     "name": "date_order:due_at>=received_at"}]}
    alerts.notify(s, {"run_id": "r-warn", "batches": [warn], "n_critical": 0, "n_warning": 1,
                      "n_rejected_batches": 0, "rejected_files": [], "report": "/wh/_reports/dq_r-warn.html"})
    files, held_msg, warn_msg = (h["json"] for h in hooks)
    assert files["type"] == "failure" and files["title"].startswith("[TTHC] Lỗi") and "1 tệp" in files["title"]
    assert "hoso.csv" in files["message"] and "xuất lại" in files["message"]
    body = held_msg["message"]
    assert held_msg["type"] == "failure" and "Lỗi" in held_msg["title"]
    assert "tệp hoso_t11.csv" in body and "H31.1, H31.2" in body
    assert 'tthc release b20251201T000000000000-abcdef0123 --reason' in body and "xuất lại" in body
    assert "https://bc.example.vn/r/dq_r-held.html" in body
    assert warn_msg["type"] == "warning" and warn_msg["title"].startswith("[TTHC] Cảnh báo")
    assert "tthc release" not in warn_msg["message"]


@pytest.mark.integration
def test_entries_only_listed_are_said_as_a_warning_not_an_error(webhook):
    """A hidden file, an Office lock file or a copy of content already taken is named once, as a note: the run did
    not fail for it, so the alert is a warning (Cảnh báo), never 'Lỗi'."""
    hport, hooks = webhook
    s = SimpleNamespace(alert_url_list=[f"json://127.0.0.1:{hport}/a"], report_url_base=None)
    alerts._SENT.clear()
    alerts.notify(s, {"run_id": "r-listed", "batches": [], "n_critical": 0, "n_warning": 0, "n_rejected_batches": 0,
                      "rejected_files": [{"file": "one_stop/dossiers/~$hoso.xlsx", "listed": True,
                                          "message": "Office lock file: only listed"}]})
    (msg,) = (h["json"] for h in hooks)
    assert msg["type"] == "warning" and msg["title"].startswith("[TTHC] Cảnh báo")
    assert "~$hoso.xlsx" in msg["message"] and "LỖI" not in msg["message"]
