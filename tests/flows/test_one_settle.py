"""Both flows settle a batch through the one ``transforms.quality.settle.settle_batch``: the nightly flow's gate task
for an inbox batch, the pull task for a pulled one (which leaves the batch's status to ``pull_to_warehouse``), and
each flow keeps the very verdict it returned. The task bodies run as plain functions (``.fn``, no Prefect server)
on a synthetic staged batch and a fake portal on 127.0.0.1; ~2 s."""

from __future__ import annotations

import logging
from datetime import date

from devkit.fakeportal.generate import AGENCIES, generate_dossiers
from devkit.fakeportal.server import FakePortal
from devkit.synth import write_dossier_batch
from transforms.pull.run import PullSpec
from transforms.quality import settle
from tthc.settings import get_settings
from warehouse.ledger import Ledger

AS_OF = date(2025, 12, 31)


def test_nightly_and_pull_settle_through_the_same_function(tmp_path, monkeypatch):
    import flows.nightly
    import flows.pull

    wh = tmp_path / "wh"
    wh.mkdir()
    url = f"sqlite:///{wh / '_ledger.sqlite'}"
    settings = get_settings(warehouse=str(wh), inbox=str(tmp_path / "inbox")).model_copy(
        update={"dq_gx_sample_rows": 0, "ledger_url": url})
    for module in (flows.nightly, flows.pull):
        monkeypatch.setattr(module, "get_run_logger", lambda: logging.getLogger("test-settle"))
    calls, verdicts = [], []
    real = settle.settle_batch

    def spy(warehouse, source, entity, batch_id, **kw):
        calls.append((source, entity, batch_id, kw.get("finish", True)))
        verdicts.append(real(warehouse, source, entity, batch_id, **kw))
        return verdicts[-1]

    monkeypatch.setattr(settle, "settle_batch", spy)
    ledger = Ledger(url)
    ledger.start_run("r1", AS_OF, "inbox")
    try:
        # the nightly flow: an inbox batch staged by ingest
        bid = write_dossier_batch(wh, 200, end=AS_OF)
        ledger.begin_batch(bid, "r1", path="one_stop/dossiers/a.csv", source="one_stop", entity="dossiers")
        ledger.finish_batch(bid, "staged", rows_raw=200, rows_staged=200, rows_quarantined=0)
        g = flows.nightly.gate_task.fn(wh, "one_stop", "dossiers", bid, url, "r1", settings, AS_OF)
        assert calls == [("one_stop", "dossiers", bid, True)] and g is verdicts[0]
        # the pull flow: the dossiers the one-stop export API gives, staged then settled before the watermark
        with FakePortal({"dossiers": generate_dossiers(60, seed=3)}, token="t") as portal:
            spec = PullSpec("one_stop", "dossiers", "api", portal.base_url, "t")
            out = flows.pull.pull_task.fn(spec, wh, url, "r1", AGENCIES, b"k", settings, True, None, as_of=AS_OF)
        assert [c[:2] + c[3:] for c in calls[1:]] == [("one_stop", "dossiers", False)]
        assert calls[1][2] == out.batch_id and out.gate_result is verdicts[1]
        status = {b["batch_id"]: b["status"] for b in ledger.batches_of_run("r1")}
        assert status == {bid: "passed", out.batch_id: out.status}
        assert out.status == ("passed" if verdicts[1].passed else "gate_failed")
    finally:
        ledger.dispose()
