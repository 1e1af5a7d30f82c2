"""Hand-built staged tables (the ``staged`` fixture) for the core, marts, plan, kpis and cli tests, and the
``Staged`` class reports/conftest.py loads: rows are dicts with stg column names; everything else gets typed NULLs
(or sensible defaults), so each test states only what its rule needs."""

from __future__ import annotations

import itertools
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from transforms.core import STAGED, build_core, staged_columns
from transforms.marts import build_marts
from warehouse.store import write_table

ARROW = {
    "VARCHAR": pa.string(), "BIGINT": pa.int64(), "BOOLEAN": pa.bool_(), "TIMESTAMP": pa.timestamp("us"),
    "DATE": pa.date32(),
    "STRUCT(requested_at TIMESTAMP, received_at TIMESTAMP)[]": pa.list_(
        pa.struct([("requested_at", pa.timestamp("us")), ("received_at", pa.timestamp("us"))])),
}

AGENCIES = """agency_code,agency_name,level,parent_code,valid_from,valid_to,successor_code,legal_basis
P,Tỉnh P,province,,2023-01-01,,,test
D1,Huyện D1,district,P,2023-01-01,2025-06-30,,test
C1,Xã C1,commune,D1,2023-01-01,2025-06-30,C9,test
C2,Xã C2,commune,D1,2023-01-01,2025-06-30,C9,test
C9,Xã C9,commune,P,2025-07-01,,,test
S1,Sở S1,department,P,2023-01-01,,,test
"""

_seq = itertools.count(1)


def ts(s: str) -> datetime:
    return datetime.fromisoformat(s if len(s) > 10 else s + " 08:00:00")


class Staged:
    def __init__(self, root: Path):
        self.root = root
        self.wh = root / "wh"
        self.agencies = root / "agencies.csv"
        self.agencies.write_text(AGENCIES, encoding="utf-8")
        self.rows: dict[str, list[dict]] = {k: [] for k in STAGED}

    def add(self, entity: str, batch: str = "b1", fmt: str = "flat_export", **row):
        row.setdefault("_batch_id", batch)
        row.setdefault("_source_file", f"{batch}.csv")
        row.setdefault("_source_row", next(_seq))
        row.setdefault("_ingested_at", datetime(2026, 1, 1))
        row.setdefault("_format", fmt)
        row.setdefault("updated_at", ts("2025-12-01"))
        for k, v in list(row.items()):
            if isinstance(v, str) and k.endswith("_at") and k not in ("_ingested_at",):
                row[k] = ts(v)
        self.rows[entity].append(row)
        return row

    def dossier(self, dossier_id: str, received: str | None = "2024-03-04", **kw):
        kw.setdefault("procedure_code", "1.000001")
        kw.setdefault("agency_code", dossier_id.split("-")[0])
        kw.setdefault("channel", 1)
        kw.setdefault("status", 4)
        return self.add("dossiers", dossier_id=dossier_id, received_at=received, **kw)

    def procedure(self, code: str = "1.000001", updated: str = "2023-01-01", **kw):
        kw.setdefault("procedure_name", "Thủ tục " + code)
        kw.setdefault("levels", "commune")
        kw.setdefault("legal_days", 5)
        return self.add("procedures", procedure_code=code, updated_at=updated, **kw)

    def write(self):
        for entity, rows in self.rows.items():
            if not rows:
                continue
            table = STAGED[entity]
            cols = staged_columns(table)
            by_batch: dict[str, list[dict]] = {}
            for r in rows:
                by_batch.setdefault(r["_batch_id"], []).append(r)
            for batch, rs in by_batch.items():
                arrays = {c: pa.array([r.get(c) for r in rs], type=ARROW[t]) for c, t in cols.items()}
                write_table(self.wh, table, pa.table(arrays), name=batch)

    def build(self, as_of: date = date(2025, 12, 31), **kw):
        self.write()
        core = build_core(self.wh, self.agencies)
        marts = build_marts(self.wh, as_of, **kw)
        return core, marts

    def sql(self, q: str):
        from warehouse.views import connect

        con = connect(self.wh)
        try:
            return con.execute(q).fetchall()
        finally:
            con.close()

    def kpi(self, agency: str, period: str, kpi: str):
        r = self.sql(f"SELECT numerator, denominator, value, target, meets_target FROM mart_kpi__agency_period "
                     f"WHERE agency_code='{agency}' AND period='{period}' AND kpi_code='{kpi}'")
        assert len(r) <= 1
        return r[0] if r else None

    def f06(self, agency: str, period: str, basis: str = "calendar", field: str | None = None):
        cond = f" AND field_code='{field}'" if field else ""
        return self.sql(f"SELECT * FROM mart_tt01_form06__agency_period WHERE agency_code='{agency}' "
                        f"AND period='{period}' AND period_basis='{basis}'{cond}")

    def i766(self, agency: str, period: str, code: str):
        r = self.sql(f"SELECT numerator, denominator, ratio, score, max_score FROM mart_766__agency_period "
                     f"WHERE agency_code='{agency}' AND period='{period}' AND indicator_code='{code}'")
        return r[0] if r else None


@pytest.fixture
def staged(tmp_path) -> Staged:
    return Staged(tmp_path)
