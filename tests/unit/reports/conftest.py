"""A small warehouse built from hand-made staged rows (tests/unit/conftest.py's ``Staged``), for the report
modules: dossiers of two communes and one department in 2024, months January to March."""

from __future__ import annotations

import importlib.util
from datetime import date
from pathlib import Path

import pytest


def _staged_class():
    path = Path(__file__).resolve().parent.parent / "conftest.py"
    spec = importlib.util.spec_from_file_location("marts_staged_conftest", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.Staged


@pytest.fixture(scope="module")
def small_wh(tmp_path_factory):
    """C1: 4 dossiers in March 2024 (3 on time, 1 late); C2: 2 on time; S1: 1 late; built as of 2024-03-31 with
    targets on time 90 % (C1 and S1 miss it) and online 50 %."""
    tmp_path = tmp_path_factory.mktemp("small_wh")
    s = _staged_class()(tmp_path)
    s.procedure()
    for i, (finished, agency) in enumerate([("2024-03-05", "C1"), ("2024-03-06", "C1"), ("2024-03-07", "C1"),
                                            ("2024-03-29", "C1"), ("2024-03-05", "C2"), ("2024-03-06", "C2"),
                                            ("2024-03-29", "S1")]):
        s.dossier(f"{agency}-{i}", received="2024-03-04", finished_at=finished, status=10,
                  channel=2 if i % 2 else 1, has_digitized_components=bool(i % 3))
    s.dossier("C1-feb", received="2024-02-05", finished_at="2024-02-07", status=10)
    targets = tmp_path / "targets.csv"
    targets.write_text("year,agency_code,kpi_code,target\n2024,,on_time_rate,0.9\n2024,,online_rate,0.5\n",
                       encoding="utf-8")
    s.build(as_of=date(2024, 3, 31), targets_csv=targets)
    return s
