"""Shared reader pieces: required columns (``required_unless`` included)."""

from __future__ import annotations

import pytest

from readers_helpers import DOSSIER_HEADERS, DOSSIER_ROWS, csv_text
from transforms.readers import FileRejected, read_file
from transforms.readers._common import required_columns


def test_required_unless_columns_are_required_of_a_file():
    for fmt in ("flat_export", "national_sync"):
        req = required_columns("one_stop", "dossiers", fmt)
        assert "received_at" in req  # required_unless: {status: [1, 3]} in the contract
        assert "agency_code" not in req  # it has a fallback (the Mã hồ sơ prefix)
        assert {"dossier_id", "procedure_code", "status", "updated_at"} <= set(req)


def test_dossier_csv_without_received_at_is_rejected_naming_file_and_column(tmp_path):
    keep = [i for i, h in enumerate(DOSSIER_HEADERS) if h != "Ngày tiếp nhận"]
    rows = [[r[i] for i in keep] for r in DOSSIER_ROWS]
    p = tmp_path / "one_stop" / "dossiers" / "hoso_thieu_cot.csv"
    p.parent.mkdir(parents=True)
    p.write_text(csv_text([DOSSIER_HEADERS[i] for i in keep], rows), encoding="utf-8")
    with pytest.raises(FileRejected) as ei:
        read_file(p, "one_stop", "dossiers")
    assert "hoso_thieu_cot.csv" in ei.value.reason
    assert "'Ngày tiếp nhận' (received_at) not found in the header (line 1)" in ei.value.reason
