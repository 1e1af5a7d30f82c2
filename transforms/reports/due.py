"""What to act on before the period closes: per agency, the open dossiers due within N working days and those
already overdue, and what the period's on-time rate becomes.

The dossiers are the ones ``transforms.marts.explain`` puts in the denominator of ``on_time_rate`` for the period
containing the data date, so the classes are the marts' own (a dossier paused for a supplement request is within
time while it waits; two requests or more count as overdue, settled rules in docs/kpis.md). Open = in progress at
E (class within_time or overdue). Days left are working days (``transforms.calendar``) from the data date to the due
date (negative: working days overdue). No personal data: code, procedure, field, dates only.

The period's rate: every listed dossier that is resolved by its due date keeps it as the marts show it now (an open
dossier within time already counts as on time at E); each one due on or before the period's last day that is not
resolved in time moves from the numerator: ``rate_if_late`` is the rate if all of them are late.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

DUE_COLUMNS = ("dossier_id", "procedure_code", "procedure_name", "field_name", "received_date", "due_date",
               "days_left", "status", "note")


@dataclass
class AgencyDue:
    agency_code: str
    agency_name: str
    period: str
    due_soon: list[dict] = field(default_factory=list)   # within time, due in 0..N working days
    overdue: list[dict] = field(default_factory=list)    # in progress and overdue at the data date
    numerator: int = 0
    denominator: int = 0
    at_risk: int = 0                                     # due_soon rows due on or before the period's end

    @property
    def rate_now(self) -> float | None:
        """The on-time rate at the data date: what it stays if every listed dossier is resolved in time."""
        return self.numerator / self.denominator if self.denominator else None

    @property
    def rate_if_late(self) -> float | None:
        """The rate if every dossier due within the period and listed as due soon is resolved late."""
        return (self.numerator - self.at_risk) / self.denominator if self.denominator else None


def working_days_left(as_of: date, due: date, cal) -> int:
    """Working days after ``as_of`` up to ``due`` (0: due today or on the next non-working days); negative: the
    working days since the due date."""
    a, d = np.datetime64(as_of, "D"), np.datetime64(due, "D")
    if d >= a:
        return int(np.busday_count(a + 1, d + 1, busdaycal=cal.busdaycal))
    return -int(np.busday_count(d + 1, a + 1, busdaycal=cal.busdaycal))


def due_lists(warehouse: Path, *, agency: str | None = None, days: int = 5, as_of: date | None = None,
              period_type: str = "quarter", extra_days_off: Path | None = None) -> list[AgencyDue]:
    """Per agency (each agency whose own dossiers are open, under ``agency`` or every top-level agency), the open
    dossiers due within ``days`` working days and the overdue ones, for the period of ``period_type`` containing
    the data date (default: the marts' as_of). Agencies without an open dossier are left out."""
    import duckdb

    from transforms.calendar import get_calendar
    from transforms.marts import explain, marts_as_of
    from transforms.reports.periods import period_containing

    wh = Path(warehouse)
    as_of = as_of or marts_as_of(wh)
    if as_of is None:
        raise ValueError("the warehouse has no published marts yet: run the nightly flow first")
    if days < 0:
        raise ValueError(f"--days must be 0 or more, not {days}")
    period = period_containing(period_type, as_of)
    cal = get_calendar(extra_days_off)
    con = duckdb.connect()
    try:
        agencies = {r[0]: r for r in con.execute(
            "SELECT agency_code, agency_name, parent_code FROM read_parquet(?)",
            [str(wh / "core_agencies" / "data.parquet")]).fetchall()}
        if agency is not None and agency not in agencies:
            raise ValueError(f"agency {agency!r} is not in the agency list (core_agencies)")
        tops = [agency] if agency else sorted(a for a, r in agencies.items() if not r[2])
        out: dict[str, AgencyDue] = {}
        for top in tops:
            rows = explain(wh, "on_time_rate", top, period.period, as_of=as_of, con=con)
            if not rows.num_rows:
                continue
            names = _dossier_facts(con, wh, rows.column("dossier_id").to_pylist())
            for r in rows.to_pylist():
                code = r["counted_for"]
                a = out.get(code)
                if a is None:
                    a = out[code] = AgencyDue(code, agencies.get(code, (code, code))[1] or code, period.period)
                a.denominator += 1
                a.numerator += bool(r["in_numerator"])
                if r["class"] not in ("within_time", "overdue") or r["resolved_in_period"]:
                    continue
                item = _item(r, names.get(r["dossier_id"], {}), as_of, cal)
                if r["class"] == "overdue":
                    a.overdue.append(item)
                elif r["due_date"] is not None and item["days_left"] <= days and not r["paused_since"]:
                    a.due_soon.append(item)
                    a.at_risk += r["due_date"] <= period.end
    finally:
        con.close()
    for a in out.values():
        a.due_soon.sort(key=lambda x: (x["days_left"], x["dossier_id"]))
        a.overdue.sort(key=lambda x: (x["days_left"], x["dossier_id"]))
    return [a for _, a in sorted(out.items()) if a.due_soon or a.overdue]


def _dossier_facts(con, wh: Path, ids: list[str]) -> dict[str, dict]:
    """procedure_name and field_name of the dossiers (core_dossiers; no personal column is read)."""
    import pyarrow as pa

    con.register("due_ids", pa.table({"dossier_id": ids}))
    try:
        rows = con.execute(
            "SELECT d.dossier_id, d.procedure_name, d.field_name FROM read_parquet(?) d "
            "JOIN due_ids USING (dossier_id)", [str(wh / "core_dossiers" / "*.parquet")]).fetchall()
    finally:
        con.unregister("due_ids")
    return {i: {"procedure_name": p, "field_name": f} for i, p, f in rows}


STATUS_VI = {2: "Được tiếp nhận", 4: "Đang xử lý", 5: "Yêu cầu bổ sung giấy tờ",
             6: "Yêu cầu thực hiện nghĩa vụ tài chính"}


def _item(r: dict, facts: dict, as_of: date, cal) -> dict:
    due = r["due_date"]
    left = working_days_left(as_of, due, cal) if due else None
    notes = []
    if r["paused_since"]:
        notes.append(f"Tạm dừng chờ bổ sung từ {r['paused_since']:%d/%m/%Y}")
    if (r.get("supplement_requests_by_e") or 0) >= 2:
        notes.append("Yêu cầu bổ sung từ 2 lần trở lên: tính là quá hạn")
    if due is None:
        notes.append("Không có hạn xử lý")
    return {"dossier_id": r["dossier_id"], "procedure_code": r["procedure_code"],
            "procedure_name": facts.get("procedure_name"), "field_name": facts.get("field_name"),
            "received_date": r["received_date"], "due_date": due, "days_left": left,
            "status": STATUS_VI.get(r["status"], str(r["status"]) if r["status"] is not None else ""),
            "note": "; ".join(notes)}


DUE_HEADERS_VI = {"agency_code": "Mã đơn vị", "agency_name": "Tên đơn vị", "period": "Kỳ", "kind": "Tình trạng",
                  "dossier_id": "Mã hồ sơ", "procedure_code": "Mã TTHC", "procedure_name": "Tên TTHC",
                  "field_name": "Lĩnh vực", "received_date": "Ngày tiếp nhận", "due_date": "Hạn xử lý",
                  "days_left": "Số ngày làm việc còn lại", "status": "Trạng thái", "note": "Ghi chú",
                  "rate_now": "Tỷ lệ đúng hạn nếu giải quyết đúng hạn tất cả",
                  "rate_if_late": "Tỷ lệ đúng hạn nếu hồ sơ đến hạn bị trễ"}


def due_table(lists: list[AgencyDue]):
    """One row per listed dossier (overdue first), with its agency and the agency's two rates: for --out."""
    import pyarrow as pa

    rows = [{"agency_code": a.agency_code, "agency_name": a.agency_name, "period": a.period, "kind": kind,
             **{c: i[c] for c in DUE_COLUMNS}, "rate_now": a.rate_now, "rate_if_late": a.rate_if_late}
            for a in lists for kind, items in (("Quá hạn", a.overdue), ("Đến hạn", a.due_soon)) for i in items]
    types = {"received_date": pa.date32(), "due_date": pa.date32(), "days_left": pa.int64(),
             "rate_now": pa.float64(), "rate_if_late": pa.float64()}
    return pa.table({c: pa.array([r[c] for r in rows], type=types.get(c, pa.string())) for c in DUE_HEADERS_VI})


def alerts(lists: list[AgencyDue], days: int) -> dict[str, str]:
    """agency_code -> one plain-text message (Vietnamese) listing its dossiers, for ``TTHC_DUE_ALERTS``."""
    from transforms.reports.texts import percent

    out = {}
    for a in lists:
        lines = [f"{a.agency_name} ({a.agency_code}), kỳ {a.period}: {len(a.overdue)} hồ sơ đã quá hạn, "
                 f"{len(a.due_soon)} hồ sơ đến hạn trong {days} ngày làm việc.",
                 f"Tỷ lệ đúng hạn của kỳ: {percent(a.rate_now)} nếu giải quyết đúng hạn tất cả; "
                 f"{percent(a.rate_if_late)} nếu các hồ sơ đến hạn trong kỳ bị trễ."]
        for title, items in (("Đã quá hạn", a.overdue), ("Sắp đến hạn", a.due_soon)):
            if items:
                lines.append(f"{title}:")
                lines += [f"- {i['dossier_id']} · {i['procedure_name'] or i['procedure_code']} · "
                          f"{days_text(i['due_date'], i['days_left'])}" for i in items]
        out[a.agency_code] = "\n".join(lines)
    return out


def days_text(due: date | None, left: int | None) -> str:
    """"hạn 06/01/2026 · còn 3 ngày làm việc" / "hạn 29/12/2025 · quá hạn 2 ngày làm việc"."""
    if due is None:
        return "không có hạn xử lý"
    if left is not None and left < 0:
        return f"hạn {due:%d/%m/%Y} · quá hạn {-left} ngày làm việc"
    return f"hạn {due:%d/%m/%Y} · còn {left} ngày làm việc"
