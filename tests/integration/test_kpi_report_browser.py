"""The KPI report on the sample warehouse (the session's ``sample_warehouse``, as_of 2025-12-31): written for a month,
a quarter and a year by ``tthc report``'s code, numbers equal to the expected marts; one quarter opened in headless
Chromium over the DevTools protocol (every request the page makes and every console message recorded; a proxy to
a dead port besides), its charts measured, a full-page screenshot taken, and its PDF printed by the product's code.
Budget: ~3 s per period, ~10 s for the browser test, beyond the fixture."""

from __future__ import annotations

import base64
import json
import re
import shutil
import struct
import subprocess
import time
from pathlib import Path

import duckdb
import pytest

from transforms.kpis import registry
from transforms.reports import texts

pytestmark = pytest.mark.integration
EXPECTED = Path(__file__).resolve().parents[3] / "shared" / "samples" / "expected"


@pytest.mark.parametrize("period, label", [("2025-11", "Tháng 11/2025"), ("2025-Q4", "Quý IV/2025"),
                                           ("2025", "Năm 2025")])
def test_report_of_a_month_quarter_and_year(sample_warehouse, tmp_path, period, label):
    from typer.testing import CliRunner

    from tthc.cli import app

    res = CliRunner().invoke(app, ["report", "--warehouse", str(sample_warehouse), "--period", period,
                                   "--out", str(tmp_path), "--no-pdf"])
    assert res.exit_code == 0, res.output
    assert {p.name for p in tmp_path.iterdir()} >= {"report.html", "form06.xlsx", "kpi.xlsx"}
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    text = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    assert label in text and "Số liệu đến ngày 31/12/2025" in text
    if not (EXPECTED / "mart_kpi__agency_period").is_dir():
        pytest.skip(f"the expected marts are absent ({EXPECTED})")
    exp = duckdb.sql(f"SELECT kpi_code, value, target FROM read_parquet('{EXPECTED}/mart_kpi__agency_period/*.parquet')"
                     f" WHERE agency_code = 'H19' AND period = '{period}'").fetchall()
    assert len(exp) == len(registry.KPIS)
    rows = re.findall(r"<tr><td>([^<]+)</td><td class=\"n\">([^<]*)</td><td class=\"n\">([^<]*)</td>", page)
    shown = {name.strip(): (v, t) for name, v, t in rows}
    for code, value, target in exp:
        k = registry.KPI[code]
        assert shown[k.vi] == (texts.kpi_value(value, k.unit, empty="—"), texts.kpi_value(target, k.unit, empty="—"))


def test_bad_period_and_agency_are_one_sentence(sample_warehouse, tmp_path):
    from typer.testing import CliRunner

    from tthc.cli import app

    for args, needle in ((["--period", "2025-Q5"], "2025-Q4"), (["--period", "2025-Q4", "--agency", "X1"], "X1")):
        res = CliRunner().invoke(app, ["report", "--warehouse", str(sample_warehouse), "--out", str(tmp_path), *args])
        assert res.exit_code == 2 and needle in res.output and "Traceback" not in res.output


class DevTools:
    """A minimal client of Chromium's DevTools protocol over its browser websocket (flat sessions)."""

    def __init__(self, ws):
        self.ws, self.n, self.events = ws, 0, []

    def call(self, method: str, session: str | None = None, timeout: float = 30, **params) -> dict:
        self.n += 1
        msg = {"id": self.n, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            got = json.loads(self.ws.recv(timeout=max(0.1, end - time.monotonic())))
            if got.get("id") == self.n:
                assert "error" not in got, got
                return got["result"]
            self.events.append(got)
        raise TimeoutError(method)

    def wait(self, method: str, timeout: float = 30) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for e in self.events:
                if e.get("method") == method:
                    return e
            self.events.append(json.loads(self.ws.recv(timeout=max(0.1, end - time.monotonic()))))
        raise TimeoutError(method)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_report_in_headless_chromium(sample_warehouse, tmp_path):
    from websockets.sync.client import connect

    from transforms.reports.kpi_report import chromium_flags, find_chromium, write_report

    exe = find_chromium()
    if exe is None:
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    files = write_report(sample_warehouse, "2025-Q4", tmp_path / "out")
    assert files.pdf is not None, files.note
    pdf = files.pdf.read_bytes()
    assert pdf[:5] == b"%PDF-" and len(re.findall(rb"/Type\s*/Page\b", pdf)) >= 3

    profile = tmp_path / "chrome"
    proc = subprocess.Popen([exe, *chromium_flags(profile), "--remote-debugging-port=0",
                             "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        end = time.monotonic() + 20
        while not (port_file.exists() and len(port_file.read_text().split()) == 2) and time.monotonic() < end:
            time.sleep(0.05)
        port, path = port_file.read_text().split()
        with connect(f"ws://127.0.0.1:{port}{path}", max_size=None) as ws:
            cdp = DevTools(ws)
            target = cdp.call("Target.createTarget", url="about:blank")["targetId"]
            sid = cdp.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            for domain in ("Network", "Runtime", "Log", "Page"):
                cdp.call(f"{domain}.enable", sid)
            cdp.call("Emulation.setDeviceMetricsOverride", sid, width=1200, height=900, deviceScaleFactor=1,
                     mobile=False)
            cdp.call("Page.navigate", sid, url=files.html.resolve().as_uri())
            cdp.wait("Page.loadEventFired")
            charts = cdp.call("Runtime.evaluate", sid, returnByValue=True, expression="""
                [...document.querySelectorAll('svg.chart')].map(s => {
                  const r = s.getBoundingClientRect();
                  return [Math.round(r.width), Math.round(r.height), s.querySelectorAll('path').length];
                })""")["result"]["value"]
            height = cdp.call("Runtime.evaluate", sid, returnByValue=True,
                              expression="document.documentElement.scrollHeight")["result"]["value"]
            shot = base64.b64decode(cdp.call("Page.captureScreenshot", sid, format="png", captureBeyondViewport=True,
                                             clip={"x": 0, "y": 0, "width": 1200, "height": height,
                                                   "scale": 1})["data"])
    finally:
        proc.kill()
        proc.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)
    png = tmp_path / "report.png"
    png.write_bytes(shot)
    requests = [e["params"]["request"]["url"] for e in cdp.events if e.get("method") == "Network.requestWillBeSent"]
    assert requests == [files.html.resolve().as_uri()], requests  # the page itself, nothing else
    console = [e for e in cdp.events if e.get("method") in ("Runtime.consoleAPICalled", "Runtime.exceptionThrown")
               or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] in ("error", "warning"))]
    assert console == []
    # six trend charts and a ranking chart, each drawn (laid out with a size, paths inside)
    assert len(charts) >= 7 and all(w >= 200 and h >= 80 and n >= 20 for w, h, n in charts), charts
    w, h = _png_size(shot)
    assert w == 1200 and 3000 <= h <= 20000 and len(shot) > 100_000, (w, h, len(shot))
