"""The clean base inbox of the bad-input corpus: a few small files in every input format, no invalid row.

Built from the project's own sample generator (devkit.sample: the simulation and its writers), seeded, so the
same seed writes byte-identical files. Every damaged inbox of the corpus (tests/corpus/damage.py) is this base
with one kind of damage applied to one file (or to agencies.csv).

Files (paths under the inbox):
- one_stop/dossiers/hoso_2023.xlsx       XLSX, one header row, real Excel dates
- one_stop/dossiers/hoso_2024.csv        CSV, UTF-8, comma
- one_stop/dossiers/dongbo_2025H1.json   national sync shape, {"data": [...]}
- one_stop/dossiers/dongbo_2025H2.jsonl  national sync shape, one version a line (every version)
- dvc_portal/procedures/danhmuc_tthc.csv the catalogue (one snapshot)
- dvc_portal/e_certifications/chungthuc.csv  about 800 rows (damage at lines 701-720 needs them)
- agencies.csv

Every procedure with a legal time of 0 working days (same-day certification) is given its due date at 17:00 of
the day of receipt, so the corpus can export the very same due date as a date without a time.
"""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from devkit.sample import inbox as I
from devkit.sample import refdata as R
from devkit.sample import simulate as S

SEED = 20250611
N_DOSSIERS = 700
N_ECERTS = 820

XLSX_2023 = "one_stop/dossiers/hoso_2023.xlsx"
CSV_2024 = "one_stop/dossiers/hoso_2024.csv"
JSON_2025 = "one_stop/dossiers/dongbo_2025H1.json"
JSONL_2025 = "one_stop/dossiers/dongbo_2025H2.jsonl"
PROCEDURES = "dvc_portal/procedures/danhmuc_tthc.csv"
ECERTS = "dvc_portal/e_certifications/chungthuc.csv"
AGENCIES = "agencies.csv"

# the XLSX base writes these dossier dates as real Excel dates (the others as dd/mm/yyyy hh:mm:ss text)
XLSX_DATES = frozenset({"submitted_at", "received_at", "due_at", "finished_at", "returned_at", "updated_at"})


@dataclass
class BaseFile:
    """One data file of the base: its rows (the sample generator's ``Row``) and how it was written."""

    rel: str
    entity: str
    kind: str  # csv | xlsx | json | jsonl
    rows: list[Any]  # devkit.sample.inbox.Row
    records: list[dict] = field(default_factory=list)  # json/jsonl: the records written, in order
    cols: list[tuple[str, str]] = field(default_factory=list)  # csv/xlsx: (canonical, header)
    style: Any = None  # csv/xlsx: devkit.sample.inbox.Style

    @property
    def n(self) -> int:
        return len(self.records) if self.kind in ("json", "jsonl") else len(self.rows)

    @property
    def source(self) -> str:
        return self.rel.split("/")[0]

    @property
    def headers(self) -> list[str]:
        return [h for _k, h in self.cols]

    def cells(self) -> list[list[str]]:
        """csv: the cells of every data row as the base writes them."""
        return [I._row_texts(self.cols, r, self.style) for r in self.rows]


@dataclass
class Base:
    root: Path
    files: dict[str, BaseFile]
    procedures_same_day: frozenset[str]

    def path(self, rel: str) -> Path:
        return self.root / rel

    @property
    def data_files(self) -> list[str]:
        return sorted(self.files)


def csv_text(header: list[str], rows: list[list[str]], delimiter: str = ",", lineterminator: str = "\r\n") -> str:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator=lineterminator)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _same_day_due(values: dict) -> dict:
    """A same-day procedure's due date, 17:00 on the day of receipt, where the simulation left it out."""
    v = dict(values)
    proc = R.PROC_BY_CODE[v["procedure_code"]]
    if proc.legal_days == 0 and v.get("received_at") and not v.get("due_at"):
        v["due_at"] = datetime.combine(v["received_at"].date(), time(17, 0))
    return v


def _dossier_rows(dossiers, a: date, b: date, every_version: bool) -> list:
    rows = []
    for ds in dossiers:
        vs = [v for v in ds.versions if a <= v["updated_at"].date() <= b]
        for v in (vs if every_version else vs[-1:]):
            rows.append(I.Row(_same_day_due(S.flat_row(ds, v)), None, ds.dossier_id))
    key = (lambda r: (r.values["updated_at"], r.record_id)) if every_version else (
        lambda r: (r.values["received_at"] or r.values["submitted_at"], r.record_id))
    rows.sort(key=key)
    return rows


def write_json_records(path: Path, records: list[dict], kind: str) -> None:
    if kind == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    else:
        path.write_text(json.dumps({"data": records}, ensure_ascii=False, indent=1), encoding="utf-8")


def write_xlsx_rows(path: Path, f: BaseFile, rows: list | None = None, style=None) -> dict:
    return I.write_xlsx(path, f.cols, f.rows if rows is None else rows, style or f.style)


def build_base(root: Path, seed: int = SEED) -> Base:
    """Write the clean base inbox under ``root`` and describe it."""
    root = Path(root)
    rng = random.Random(seed)
    dossiers = S.simulate_dossiers(rng, N_DOSSIERS)
    ecerts = S.simulate_e_certifications(rng, N_ECERTS)
    files: dict[str, BaseFile] = {}

    def put(f: BaseFile) -> None:
        files[f.rel] = f
        root.joinpath(f.rel).parent.mkdir(parents=True, exist_ok=True)

    # dossiers: XLSX 2023, CSV 2024, JSON 2025 H1, JSONL 2025 H2 (every version)
    f = BaseFile(XLSX_2023, "dossiers", "xlsx", _dossier_rows(dossiers, date(2023, 1, 1), date(2023, 12, 31), False),
                 cols=I.DOSSIER_COLUMNS, style=I.Style(excel_dates=XLSX_DATES))
    put(f)
    write_xlsx_rows(root / f.rel, f)
    f = BaseFile(CSV_2024, "dossiers", "csv", _dossier_rows(dossiers, date(2024, 1, 1), date(2024, 12, 31), False),
                 cols=I.DOSSIER_COLUMNS, style=I.Style())
    put(f)
    I.write_csv(root / f.rel, f.cols, f.headers, f.rows, f.style)
    for rel, kind, a, b, dstyle in ((JSON_2025, "json", date(2025, 1, 1), date(2025, 6, 30), "iso_offset"),
                                    (JSONL_2025, "jsonl", date(2025, 7, 1), date(2025, 12, 31), "compact")):
        f = BaseFile(rel, "dossiers", kind, _dossier_rows(dossiers, a, b, kind == "jsonl"))
        f.records = [I.sync_record(rng, r, dstyle) for r in f.rows]
        put(f)
        write_json_records(root / rel, f.records, kind)

    # the catalogue and the e-certifications
    f = BaseFile(PROCEDURES, "procedures", "csv", I.procedure_export_rows(R.SNAPSHOT_1), cols=I.PROCEDURE_COLUMNS,
                 style=I.Style())
    put(f)
    I.write_csv(root / f.rel, f.cols, f.headers, f.rows, f.style)
    f = BaseFile(ECERTS, "e_certifications", "csv", [I.Row(r, None, r["transaction_id"]) for r in ecerts],
                 cols=I.ECERT_COLUMNS, style=I.Style(date="%d/%m/%Y %H:%M"))
    put(f)
    I.write_csv(root / f.rel, f.cols, f.headers, f.rows, f.style)

    R.write_agencies_csv(root / AGENCIES)
    same_day = frozenset(p.code for p in R.PROCEDURES if p.legal_days == 0)
    return Base(root, files, same_day)
