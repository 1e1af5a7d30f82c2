"""The ingest's fast staging path (ChunkStager: text trimmed in Arrow, only the read columns typed) gives exactly
what the reference path (stage_raw_file: trim in SQL over the raw file) gives, on messy values."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from staging_helpers import raw_table
from transforms.staging import ZS_CHARS, ChunkStager, stage_raw_file, staging_select, trim_for_staging

AGENCIES = ["H19", "H19.26293", "H19.26380"]
KEY = b"unit-test-key"
PADS = ["", " ", "\u00a0", "\u3000", "\t", "\u2003 ", "\n"]


def test_trim_for_staging_removes_what_duckdb_trim_removes():
    cores = ["10", "Có", "05/01/2024 08:00:00", "a b", "", "\u00a0x\u00a0y"]
    values = [lp + c + rp for c in cores for lp in PADS for rp in PADS] + [None]
    t = trim_for_staging(pa.table({"v": pa.array(values, pa.string())}), ["v"])
    con = duckdb.connect()
    con.register("t", t)
    rows = con.execute("SELECT trim(v), __s_v FROM t").fetchall()
    assert [a for a, _ in rows] == [b for _, b in rows]
    assert any(a != v for (a, _), v in zip(rows, values, strict=True) if v is not None)  # something was trimmed
    assert "\t" not in ZS_CHARS and "\u00a0" in ZS_CHARS


def _messy_rows() -> list[dict]:
    base = {"dossier_id": "H19.26293-240105-0001", "procedure_code": "1.001193", "status": "10",
            "received_at": "05/01/2024 08:00:00", "updated_at": "06/01/2024 10:00:00",
            "applicant_id_number": "001 234 567 890", "applicant_name": "  Nguyễn Văn A ", "fee_vnd": "50.000 đ"}
    variants = [
        {}, {"status": "\u00a010\u3000"}, {"status": "\t10"}, {"fee_vnd": " 50000 "}, {"fee_vnd": "-5"},
        {"received_at": "\u00a005/01/2024"}, {"received_at": "31/02/2024"}, {"received_at": "   "},
        {"agency_code": " H19.26380 "}, {"agency_code": "H99"}, {"dossier_id": "\u3000"},
        {"has_e_result": " Có "}, {"has_e_result": "có lẽ"}, {"channel": " Trực tuyến "}, {"status": "11"},
        {"supplement_count": "2.0"}, {"supplement_count": "hai"}, {"applicant_id_number": "\u00a0001234567890"},
        {"applicant_phone": "\u00a0"}, {"applicant_address": None, "applicant_name": None},
        {"applicant_id_number": "001\t234\v567\n890"}, {"applicant_id_number": "\t"},
        {"has_digitized_components": "Có", "reused_digitized_data": "Không", "has_e_result": "KHÔNG"},
        {"fee_vnd": "１２"}, {"supplement_count": "0012"}, {"fee_vnd": "12a"},
        {"field_name": "Hộ\x00tịch"}, {"applicant_address": "Số 1\x07"}, {"status": "\x1b10"},
    ]
    return [{**base, **v, "dossier_id": v.get("dossier_id", f"H19.26293-240105-{i:04d}")}
            for i, v in enumerate(variants)]


def _read(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist() if path.exists() else []


@pytest.mark.parametrize("chunk_rows", [7, 1000])
def test_chunk_stager_equals_stage_raw_file(tmp_path, chunk_rows):
    raw = raw_table("dossiers", _messy_rows())
    raw_file = tmp_path / "raw.parquet"
    pq.write_table(raw, raw_file)
    ref = stage_raw_file(raw_file, warehouse=tmp_path / "ref", source="one_stop", entity="dossiers",
                         fmt="flat_export", batch_id="b1", agency_codes=AGENCIES, pseudonym_key=KEY)
    st = ChunkStager(warehouse=tmp_path / "fast", source="one_stop", entity="dossiers", fmt="flat_export",
                     batch_id="b1", agency_codes=AGENCIES, pseudonym_key=KEY)
    for off in range(0, raw.num_rows, chunk_rows):
        chunk = raw.slice(off, chunk_rows)
        st.add(chunk, prepared=st.prepare(chunk))
    got = st.finish(raw.schema.empty_table())
    assert (got.rows_raw, got.rows_staged, got.rows_quarantined, got.rules) == \
        (ref.rows_raw, ref.rows_staged, ref.rows_quarantined, ref.rules)
    assert ref.rows_quarantined >= 8 and ref.rows_staged >= 8  # both sides exercised
    assert ref.rules["control_character"] == 4  # the \v in an ID number and the three above
    for table in ("stg_one_stop__dossiers", "quarantine_one_stop__dossiers"):
        fast, ref_file = tmp_path / "fast" / table / "b1.parquet", tmp_path / "ref" / table / "b1.parquet"
        types = [[(f.name, f.type) for f in pq.read_schema(x)] for x in (fast, ref_file)]
        assert types[0] == types[1]
        assert _read(fast) == _read(ref_file)


def test_dropped_personal_columns_are_not_read_by_the_staging_sql():
    staged, quarantined = staging_select("one_stop", "dossiers", "flat_export", "raw", "agencies", pretrimmed=True)
    assert '"__s_applicant_name"' not in staged + quarantined
    assert '"__s_applicant_id_number"' in staged  # the pseudonym's input is
    assert '"applicant_name"' in quarantined  # quarantine still keeps the whole raw row
