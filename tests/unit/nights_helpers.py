"""Two nights of hand-built staged batches (``first_night``, ``second_night``, on tests/unit/conftest.py's
``Staged``) and a snapshot of tables, shared by the incremental core tests (core/test_incremental_core.py) and the
publish and plan tests (plan/test_publish_plan.py)."""

from __future__ import annotations

from datetime import date, datetime

import duckdb

AS_OF = date(2025, 12, 31)
MARTS = ["mart_kpi__agency_period", "mart_766__agency_period", "mart_tt01_form06__agency_period"]


def snapshot(wh, tables):
    con = duckdb.connect()
    try:
        out = {}
        for t in tables:
            rel = con.sql(f"SELECT * FROM read_parquet('{wh / t}/[!.]*.parquet') ORDER BY ALL")
            out[t] = (rel.columns, [str(x) for x in rel.types], rel.fetchall())
        return out
    finally:
        con.close()


def first_night(st):
    st.procedure("1.000001", updated="2023-01-01", legal_days=5, field_code="F1", field_name="Lĩnh vực 1")
    st.procedure("1.000002", updated="2023-01-01", legal_days=3, is_paper_result=False)
    st.dossier("C1-1", received="2024-03-04", status=4)
    st.dossier("C1-2", received="2025-11-03 09:00:00", status=4, due_at="2025-11-10")
    st.dossier("C2-1", received="2025-06-20", status=4, procedure_code="1.000002", fee_vnd=50000)
    st.dossier("C9-1", received="2025-10-01", status=10, finished_at="2025-10-03", due_at="2025-10-08")
    st.dossier("S1-1", received="2023-05-05", status=9, finished_at="2023-05-20")
    st.add("payments", payment_id="pay1", dossier_id="C9-1", amount_vnd=1000, paid_at="2025-10-02",
           status="success")
    st.add("payments", payment_id="pay2", dossier_id="C1-2", amount_vnd=1000, paid_at="2025-11-05",
           status="success")
    st.add("feedback", feedback_id="fb1", agency_code="C9", received_at="2025-10-05", dossier_id="C9-1")
    st.add("ratings", rating_id="r1", dossier_id="C9-1", rating=4, rated_at="2025-10-04")
    st.add("e_certifications", transaction_id="e1", agency_code="C9", certified_at="2025-10-06", copies=3)
    st.write()


def second_night(st):
    st.rows = {k: [] for k in st.rows}
    later = {"batch": "b2", "_ingested_at": datetime(2026, 1, 2), "updated_at": "2025-12-20"}
    st.dossier("C1-2", received="2025-11-03 09:00:00", status=10, due_at="2025-11-10",
               finished_at="2025-12-19", **later)                                       # resolved late
    st.dossier("C2-1", received="2025-05-20", status=4, procedure_code="1.000002", fee_vnd=50000,
               **later)                                                                 # received date moved back
    st.dossier("C9-2", received="2025-12-18", status=4, channel=2, **later)             # a new dossier
    st.dossier("C1-1", received="2024-03-04", status=9, finished_at="2025-12-01",
               **{**later, "updated_at": "2025-11-01"})                                  # older version: loses
    st.add("payments", payment_id="pay2", dossier_id="C2-1", amount_vnd=1000, paid_at="2025-12-19",
           status="success", **later)                                                   # moved to another dossier
    st.add("feedback", feedback_id="fb2", agency_code="C9", received_at="2025-12-19", dossier_id="C9-2",
           **later)
    st.add("feedback", feedback_id="fb1", agency_code="C9", received_at="2025-10-05", dossier_id="C9-1",
           answered_at="2025-12-19", dislikes=2, **later)
    st.add("ratings", rating_id="r2", dossier_id="C9-1", rating=1, rated_at="2025-12-20", batch="b2",
           _ingested_at=datetime(2026, 1, 2))
    st.add("e_certifications", transaction_id="e2", agency_code="C9", certified_at="2025-12-20", copies=2,
           **later)
    st.write()
