"""mart_dq's flag completeness reads the raw column each flag is made from in every export format: the flat
export's yes/no columns, and the national sync's document lists (an empty list is a known "no"). Before, the
sync's rows counted as 0 % complete for digitisation and electronic results, which the KPI report showed."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from transforms.quality import mart_dq

DOC = '[{"DuongDanTaiTepTin": "a.pdf"}]'
RES = '[{"DuongDanTepTinKetQua": "kq.pdf"}]'


def _write(wh: Path, table: str, batch: str, cols: dict) -> None:
    (wh / table).mkdir(parents=True, exist_ok=True)
    n = len(next(iter(cols.values())))
    cols = {**cols, "_batch_id": [batch] * n, "_source_row": list(range(1, n + 1))}
    pq.write_table(pa.table(cols), wh / table / f"{batch}.parquet")


def _staged(batch: str, month: int, n: int) -> dict:
    return {"dossier_id": [f"H19.1-25{month:02d}01-{i:04d}" for i in range(n)], "agency_code": ["H19.1"] * n,
            "updated_at": [datetime(2025, month, 3)] * n, "has_digitized_components": [True] * n,
            "has_e_result": [False] * n, "channel": [1] * n}


def test_completeness_reads_the_raw_columns_of_each_format(tmp_path):
    # October, flat export: digitisation given on 3 of 4 rows, e-result on 2, channel on 1 (staging fills it)
    _write(tmp_path, "stg_one_stop__dossiers", "b1", _staged("b1", 10, 4))
    _write(tmp_path, "raw_one_stop__dossiers", "b1", {
        "has_digitized_components": ["Có", "Không", "", "Có"], "has_e_result": ["Có", None, " ", "Không"],
        "channel": ["2", "", None, None], "submitted_documents_json": [None] * 4, "result_documents_json": [None] * 4})
    # November, national sync: the flags come from the document lists; [] is a known "no", a missing list is not
    _write(tmp_path, "stg_one_stop__dossiers", "b2", _staged("b2", 11, 3))
    _write(tmp_path, "raw_one_stop__dossiers", "b2", {
        "submitted_documents_json": [DOC, "[]", None], "result_documents_json": [RES, None, None],
        "channel": ["2", "1", "3"]})
    mart_dq.build(tmp_path)
    got = {r[0]: r[1:] for r in duckdb.sql(
        f"SELECT period, digitization_completeness, e_result_completeness, channel_completeness "
        f"FROM read_parquet('{tmp_path}/{mart_dq.TABLE}/*.parquet') WHERE entity = 'dossiers'").fetchall()}
    assert got == {"2025-10": (0.75, 0.5, 0.25), "2025-11": (2 / 3, 1 / 3, 1.0)}
