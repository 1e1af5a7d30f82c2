"""Great Expectations, used where it is cheap: a checkpoint per batch on a narrow, bounded sample.

Measured here: GX on pandas costs ~27 s and 5 GB for 5M rows x 12 expectations, ~2.5 s just to import, and its
cost grows with frame width. So the gate never hands GX a whole batch: DuckDB computes the exact counts
(rules.py), and GX validates a sample of at most ``SAMPLE_ROWS`` random rows plus every row DuckDB found
breaking a rule (capped per rule), narrowed to the columns the suite reads. The checkpoint's results are what
GX Data Docs render; the gate's decision uses DuckDB's exact counts. One ephemeral context per process (a file
context's ``add_or_update_*`` wipes assets); GX is imported on first use only.
"""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

SAMPLE_ROWS = 5_000
BAD_ROWS_PER_RULE = 50
SITE = "tthc_data_docs"

_lock = threading.Lock()
_state: dict = {}


def _context():
    with _lock:
        if "ctx" not in _state:
            os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # GX must not phone home; imported only here
            import great_expectations as gx

            from great_expectations.data_context.types.base import ProgressBarsConfig

            ctx = gx.get_context(mode="ephemeral")
            ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
            _state.update(ctx=ctx, gx=gx, ds=ctx.data_sources.add_pandas("tthc_staged"), sites=set(), suites={},
                          results=[])
        return _state


def gx_expectations(suite: dict) -> list[dict]:
    return [e for e in suite["expectations"] if e["meta"].get("engine", "gx") == "gx"]


def _suite(st, table: str, suite: dict):
    if table in st["suites"]:
        return st["suites"][table]
    gx = st["gx"]
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    exps = []
    for e in gx_expectations(suite):
        conf = ExpectationConfiguration(type=e["type"], kwargs=dict(e["kwargs"]), meta=dict(e["meta"]))
        obj = conf.to_domain_obj()
        obj.severity = e.get("severity", e["meta"]["severity"])
        exps.append(obj)
    s = st["ctx"].suites.add(gx.ExpectationSuite(name=table, expectations=exps, meta=dict(suite["meta"])))
    st["suites"][table] = s
    return s


def validate_sample(table: str, batch_id: str, suite: dict, df) -> dict[str, dict]:
    """Run a GX checkpoint on ``df``; returns {rule: {success, unexpected_count, element_count}}."""
    st = _context()
    gx = st["gx"]
    with _lock:
        s = _suite(st, table, suite)
        name = f"{table}.{batch_id}.{uuid.uuid4().hex[:6]}"
        asset = st["ds"].add_dataframe_asset(name=name)
        bd = asset.add_batch_definition_whole_dataframe("batch")
        vd = st["ctx"].validation_definitions.add(gx.ValidationDefinition(name=name, data=bd, suite=s))
        cp = st["ctx"].checkpoints.add(gx.Checkpoint(name=name, validation_definitions=[vd], actions=[],
                                                     result_format={"result_format": "SUMMARY"}))
        res = cp.run(batch_parameters={"dataframe": df})
    out: dict[str, dict] = {}
    for vr in res.run_results.values():
        st["results"].append(vr)
        for r in vr.results:
            rule = r.expectation_config.meta.get("rule")
            rr = r.result or {}
            out[rule] = {"success": bool(r.success), "unexpected_count": rr.get("unexpected_count"),
                         "element_count": rr.get("element_count"),
                         "exception": (r.exception_info or {}).get("exception_message") if
                         (r.exception_info or {}).get("raised_exception") else None}
    return out


def build_data_docs(warehouse: Path) -> Path | None:
    """Render Data Docs for the checkpoints this process ran, into a scratch site that ``data_docs.keep`` merges
    into ``<warehouse>/_reports/data_docs`` (earlier runs' pages kept, every page offline)."""
    import tempfile

    from transforms.quality import data_docs

    if "ctx" not in _state or not _state["results"]:
        return None
    st = _state
    base = Path(warehouse) / "_reports" / "data_docs"
    base.parent.mkdir(parents=True, exist_ok=True)
    with _lock, tempfile.TemporaryDirectory(prefix=".data_docs.", dir=base.parent) as scratch:
        site = f"{SITE}_{uuid.uuid4().hex[:8]}"
        st["ctx"].add_data_docs_site(site_name=site, site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": scratch},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
        try:
            st["ctx"].build_data_docs(site_names=[site])
        finally:
            st["ctx"].delete_data_docs_site(site)
        return data_docs.keep(Path(scratch), base)
