"""Simulate the life of dossiers and the portal's records for the invented province.

Everything is driven by one `random.Random(seed)`, so the same seed gives the same records. A dossier is a list
of versions (its state each time it changed); exports show the version current at export time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache

import holidays

from devkit.sample import refdata as R

START = date(2023, 1, 1)
END = date(2025, 12, 31)
AS_OF = datetime(2025, 12, 31, 23, 59, 59)


@lru_cache(maxsize=1)
def _holidays() -> frozenset[date]:
    return frozenset(holidays.country_holidays("VN", years=range(2022, 2028)).keys())


def is_working_day(d: date) -> bool:
    return d.weekday() < 5 and d not in _holidays()


def add_working_days(d: date, n: int) -> date:
    """The n-th working day after d (n = 0: d itself)."""
    while n > 0:
        d += timedelta(days=1)
        if is_working_day(d):
            n -= 1
    return d


def next_working_day(d: date) -> date:
    while not is_working_day(d):
        d += timedelta(days=1)
    return d


def office_time(rng: random.Random, d: date, morning_only: bool = False) -> datetime:
    """A moment in office hours (07:30-11:30, 13:30-17:00)."""
    if morning_only or rng.random() < 0.55:
        secs = rng.randint(7 * 3600 + 1800, 11 * 3600 + 1800)
    else:
        secs = rng.randint(13 * 3600 + 1800, 17 * 3600)
    return datetime.combine(d, time()) + timedelta(seconds=secs)


def later_office_time(rng: random.Random, after: datetime, min_minutes: int, max_minutes: int) -> datetime:
    """A moment in office hours at least `min_minutes` after `after` (moves to the next working day if needed)."""
    t = after + timedelta(minutes=rng.randint(min_minutes, max_minutes))
    d = t.date()
    for _ in range(30):
        if is_working_day(d):
            lo = datetime.combine(d, time(7, 30))
            if t < lo:
                t = lo + timedelta(minutes=rng.randint(0, 90))
            if time(11, 30) < t.time() < time(13, 30):
                t = datetime.combine(d, time(13, 30)) + timedelta(minutes=rng.randint(0, 60))
            if t.time() <= time(17, 0) and t.date() == d:
                return t
        d += timedelta(days=1)
        t = datetime.combine(d, time(7, 30)) + timedelta(minutes=rng.randint(0, 120))
    return t


@dataclass
class Person:
    name: str
    id_number: str
    phone: str
    address: str


def fake_person(rng: random.Random, place: str) -> Person:
    female = rng.random() < 0.5
    name = " ".join([rng.choice(R.FAMILY), rng.choice(R.MIDDLE_F if female else R.MIDDLE_M),
                     rng.choice(R.GIVEN_F if female else R.GIVEN_M)])
    year = rng.randint(1950, 2006)
    century_gender = (0 if year < 2000 else 2) + (1 if female else 0)
    id_number = f"{rng.choice(R.ID_PROVINCE_PREFIXES)}{century_gender}{year % 100:02d}{rng.randint(0, 999999):06d}"
    phone = f"{rng.choice(R.PHONE_PREFIXES)}{rng.randint(0, 9999999):07d}"
    address = f"Số {rng.randint(1, 250)} đường {rng.choice(R.STREETS)}, ấp {rng.randint(1, 9)}, {place}, tỉnh {R.PROVINCE_NAME.removeprefix('Tỉnh ')}"
    return Person(name, id_number, phone, address)


@dataclass
class Dossier:
    dossier_id: str
    agency_code: str
    procedure: R.Procedure
    channel: int
    submitted_at: datetime
    person: Person
    fee: int
    versions: list[dict] = field(default_factory=list)
    empty_field: bool = False
    catalogue: R.Procedure | None = None


def _online_share(d: date) -> float:
    if d.year == 2023:
        return 0.12
    if d.year == 2024:
        return 0.22
    return 0.35 if d < R.MERGER_DATE else 0.68


def _agencies_on(d: date) -> list[tuple[R.Agency, float]]:
    out = []
    for a in R.AGENCIES:
        if a.level not in ("commune", "department"):
            continue
        if a.valid_from <= d and (a.valid_to is None or d <= a.valid_to):
            out.append((a, 1.3 if a.level == "department" else (3.0 if a.valid_to is None else 1.0)))
    return out


def _pick(rng: random.Random, items: list, weights: list[float]):
    return rng.choices(items, weights=weights, k=1)[0]


def simulate_dossiers(rng: random.Random, n: int) -> list[Dossier]:
    days = (END - START).days + 1
    plans = []
    for _ in range(n):
        d = START + timedelta(days=rng.randrange(days))
        agency = _pick_agency(rng, d)
        online = rng.random() < _online_share(d) + (0.15 if agency.level == "department" else 0.0)
        channel = 2 if online else (3 if rng.random() < 0.025 else 1)
        level = "Cấp tỉnh" if agency.level == "department" else "Cấp xã"
        procs = [p for p in R.PROCEDURES if level in p.levels and (not online or p.online_level >= 3)]
        proc = _pick(rng, procs, [p.weight for p in procs])
        if channel == 2:
            sub = datetime.combine(d, time()) + timedelta(seconds=rng.randint(6 * 3600, 23 * 3600))
        else:
            if d.weekday() == 5 and agency.level == "commune" and rng.random() < 0.6 and d not in _holidays():
                sub = office_time(rng, d, morning_only=True)  # Saturday-morning receipt at a commune
            else:
                sub = office_time(rng, next_working_day(d))
        if sub.date() > END:
            continue
        plans.append((sub, agency, channel, proc))
    plans.sort(key=lambda x: (x[0], x[1].code))
    seq: dict[tuple[str, date], int] = {}
    dossiers = []
    for sub, agency, channel, proc in plans:
        code = agency.code
        if agency.valid_to is None and agency.level == "commune" and rng.random() < 0.02:
            code = rng.choice(R.PREDECESSORS[agency.code])  # an old commune code used after the merger
        k = (code, sub.date())
        seq[k] = seq.get(k, 0) + 1
        did = f"{code}-{sub:%y%m%d}-{seq[k]:04d}"
        person = fake_person(rng, R.AGENCY_BY_CODE[code].short)
        ds = Dossier(did, code, proc, channel, sub, person, proc.fee, empty_field=rng.random() < 0.04)
        _life(rng, ds)
        if ds.versions:
            dossiers.append(ds)
    return dossiers


def _pick_agency(rng: random.Random, d: date) -> R.Agency:
    cands = _agencies_on(d)
    return _pick(rng, [a for a, _ in cands], [w for _, w in cands])


def _life(rng: random.Random, ds: Dossier) -> None:
    """Build the dossier's versions: submitted, received, processing, supplements, finished, returned."""
    sub = ds.submitted_at
    y = sub.year + (0.5 if sub.date() >= R.MERGER_DATE else 0)
    progress = min(1.0, (y - 2023) / 2.5)
    base = dict(
        channel=ds.channel, status=None, received_at=None, due_at=None, finished_at=None, returned_at=None,
        supplements=[], has_digitized=rng.random() < 0.25 + 0.5 * progress + (0.2 if ds.channel == 2 else 0),
        has_e_result=False, reused=rng.random() < 0.15 + 0.45 * progress, online_payment="",
        agency_code=ds.agency_code,
    )
    versions: list[dict] = []

    def emit(at: datetime, **changes) -> None:
        state = dict(versions[-1] if versions else base)
        state.pop("updated_at", None)
        state.update(changes)
        state["updated_at"] = at
        versions.append(state)

    if ds.channel == 2:
        emit(sub, status=1)
        if sub > AS_OF - timedelta(days=2) and rng.random() < 0.7:
            ds.versions = versions  # online, not yet accepted at the end of the window
            return
        if rng.random() < 0.02:
            emit(later_office_time(rng, sub, 30, 900), status=3)
            ds.versions = versions
            return
        rec = later_office_time(rng, sub, 20, 1500)
    else:
        rec = sub
    proc = R.procedure_as_of(ds.procedure, rec.date())
    if proc.legal_days is None:
        due = None
    else:
        due = datetime.combine(add_working_days(rec.date(), proc.legal_days), time(17, 0))
    show_due = due
    if proc.legal_days == 0 and rng.random() < 0.6:
        show_due = None  # same-day procedures are often exported without Ngày hẹn trả
    paid = ""
    if ds.fee > 0 and ds.channel == 2 and rng.random() < 0.35 + 0.5 * progress:
        paid = rng.choice([1, 2])
    emit(rec, status=2, received_at=rec, due_at=show_due, online_payment=paid)

    # outcome relative to the due date
    r = rng.random()
    legal = proc.legal_days
    if legal == 0:
        fin = rec + timedelta(minutes=rng.randint(3, 50))
        if fin.time() > time(17, 0):
            fin = later_office_time(rng, fin, 0, 10)
        supplements_n = 0
    else:
        supplements_n = 0 if rng.random() > 0.12 else (1 if rng.random() < 0.75 else (2 if rng.random() < 0.8 else 3))
        span = legal if legal is not None else rng.randint(3, 25)
        due_d = due.date() if due else add_working_days(rec.date(), span)
        if r < 0.62:
            fin_d = add_working_days(rec.date(), rng.randint(0, max(0, span - 1)))
        elif r < 0.9:
            fin_d = due_d
        else:
            fin_d = add_working_days(due_d, rng.randint(1, 8))
        if supplements_n >= 2:
            fin_d = add_working_days(fin_d, rng.randint(2, 6))
        fin = office_time(rng, fin_d)
        if fin <= rec:
            fin = later_office_time(rng, rec, 5, 120)
    # processing step
    t = rec
    if legal != 0 and rng.random() < 0.6:
        tp = later_office_time(rng, rec, 10, 240)
        if tp < fin:
            emit(tp, status=4)
            t = tp
    # supplement requests between reception (or the start of processing) and the end
    sups: list[tuple[datetime, datetime | None]] = []
    for _ in range(supplements_n):
        req = later_office_time(rng, t, 60, 60 * 24 * 3)
        got = later_office_time(rng, req, 60 * 4, 60 * 24 * 8)
        if got >= fin:
            if req < fin:
                fin = later_office_time(rng, got, 60, 60 * 24 * 2)
            else:
                break
        sups.append((req, None))
        emit(req, status=5, supplements=list(sups))
        sups[-1] = (req, got)
        emit(got, status=4, supplements=list(sups))
        t = got
    # end of processing
    kind = rng.random()
    end_status = 9 if kind < 0.975 else (7 if kind < 0.988 else 8)
    e_result = end_status == 9 and rng.random() < 0.3 + 0.55 * progress + (0.1 if ds.channel == 2 else 0)
    emit(fin, status=end_status, finished_at=fin, has_e_result=e_result)
    if end_status == 9 and rng.random() < 0.93:
        ret = fin + timedelta(minutes=rng.randint(5, 60)) if legal == 0 else later_office_time(rng, fin, 30, 60 * 24 * 6)
        emit(ret, status=10, returned_at=ret)
    # drop what happens after the end of the data window
    assert all(a["updated_at"] <= b["updated_at"] for a, b in zip(versions, versions[1:])), ds.dossier_id
    kept = [v for v in versions if v["updated_at"] <= AS_OF]
    # an old commune's dossier still open at the merger is sometimes re-exported with the new commune's code
    old = R.AGENCY_BY_CODE[ds.agency_code]
    if old.valid_to is not None and old.level == "commune" and rng.random() < 0.35:
        for v in kept:
            if v["updated_at"].date() >= R.MERGER_DATE:
                v["agency_code"] = old.successor
    ds.versions = kept
    ds.catalogue = proc


def flat_row(ds: Dossier, v: dict) -> dict:
    """The canonical flat values of one version (Python objects; formatting is the writer's job)."""
    proc = ds.catalogue or ds.procedure
    sups = v["supplements"]
    return {
        "dossier_id": ds.dossier_id,
        "procedure_code": ds.procedure.code,
        "procedure_name": ds.procedure.name,
        "field_code": "" if ds.empty_field else proc.field_code,
        "field_name": "" if ds.empty_field else proc.field_name,
        "agency_code": v["agency_code"],
        "channel": v["channel"],
        "status": v["status"],
        "submitted_at": ds.submitted_at,
        "received_at": v["received_at"],
        "due_at": v["due_at"],
        "finished_at": v["finished_at"],
        "returned_at": v["returned_at"],
        "supplement_count": len(sups),
        "supplement_requested_at": sups[-1][0] if sups else None,
        "supplement_received_at": sups[-1][1] if sups else None,
        "has_digitized_components": v["has_digitized"],
        "has_e_result": v["has_e_result"],
        "reused_digitized_data": v["reused"],
        "fee_vnd": ds.fee,
        "applicant_name": ds.person.name,
        "applicant_id_number": ds.person.id_number,
        "applicant_phone": ds.person.phone,
        "applicant_address": ds.person.address,
        "updated_at": v["updated_at"],
        "_supplements": sups,
        "_online_payment": v["online_payment"],
    }


def simulate_payments(rng: random.Random, dossiers: list[Dossier]) -> list[dict]:
    """One online payment per dossier paid online; a few failed attempts before the successful one."""
    out = []
    n = 0
    for ds in dossiers:
        paid_v = next((v for v in ds.versions if v["online_payment"]), None)
        if paid_v is None:
            continue
        at = ds.submitted_at + timedelta(minutes=rng.randint(1, 40))
        if at > AS_OF:
            continue
        attempts = ["Thất bại", "Thành công"] if rng.random() < 0.06 else ["Thành công"]
        for st in attempts:
            n += 1
            out.append({"payment_id": f"TT{at:%Y%m%d}{n:06d}", "dossier_id": ds.dossier_id, "amount_vnd": ds.fee,
                        "paid_at": at, "payment_channel": paid_v["online_payment"], "status": st,
                        "updated_at": at + timedelta(minutes=rng.randint(1, 5))})
            at += timedelta(minutes=rng.randint(2, 15))
    out.sort(key=lambda r: (r["paid_at"], r["payment_id"]))
    return out


def simulate_ratings(rng: random.Random, dossiers: list[Dossier]) -> list[dict]:
    out = []
    twice = 0
    for ds in dossiers:
        last = ds.versions[-1]
        if last["status"] != 10 or rng.random() > 0.11:
            continue
        at = last["returned_at"] + timedelta(hours=rng.randint(1, 24 * 10), minutes=rng.randint(0, 59))
        if at > AS_OF:
            continue
        score = rng.choices([4, 3, 2, 1], weights=[55, 30, 10, 5])[0]
        out.append({"dossier_id": ds.dossier_id, "rating": score, "rated_at": at})
        if twice < 4 and at.hour < 20 and rng.random() < 0.05:  # rated again the same day
            twice += 1
            out.append({"dossier_id": ds.dossier_id, "rating": rng.choice([1, 2, 3, 4]),
                        "rated_at": at + timedelta(minutes=rng.randint(5, 200))})
    out.sort(key=lambda r: (r["rated_at"], r["dossier_id"]))
    for i, r in enumerate(out, 1):
        r["rating_id"] = f"DG{i:07d}"
    return out


def _agency_for_event(rng: random.Random, d: date, old_code_share: float) -> str:
    cands = [a for a, _ in _agencies_on(d)]
    a = rng.choice(cands)
    if a.valid_to is None and a.level == "commune" and rng.random() < old_code_share:
        return rng.choice(R.PREDECESSORS[a.code])
    return a.code


def simulate_feedback(rng: random.Random, dossiers: list[Dossier], n: int) -> list[dict]:
    by_agency: dict[str, list[Dossier]] = {}
    for ds in dossiers:
        by_agency.setdefault(ds.agency_code, []).append(ds)
    out = []
    days = (END - START).days + 1
    for _ in range(n):
        d = START + timedelta(days=rng.randrange(days))
        code = _agency_for_event(rng, d, 0.08)
        sent = datetime.combine(d, time()) + timedelta(seconds=rng.randint(6 * 3600, 22 * 3600))
        channel = rng.choices(["Cổng DVC quốc gia", "Tổng đài 1022", "Trực tiếp"], weights=[5, 3, 2])[0]
        received = sent if channel == "Trực tiếp" else later_office_time(rng, sent, 10, 60 * 30)
        related = ""
        pool = by_agency.get(code, [])
        if pool and rng.random() < 0.5:
            near = [x for x in pool if abs((x.submitted_at - sent).days) < 60]
            if near:
                related = rng.choice(near).dossier_id
        deadline = add_working_days(received.date(), 15)
        r = rng.random()
        answered = None
        if r < 0.85:
            answered = office_time(rng, add_working_days(received.date(), rng.randint(1, 14)))
        elif r < 0.95:
            answered = office_time(rng, add_working_days(deadline, rng.randint(1, 10)))
        if answered is not None and answered > AS_OF:
            answered = None
        published = None
        if answered is not None and rng.random() < 0.8:
            published = answered + timedelta(days=rng.randint(1, 5))
            if published > AS_OF:
                published = None
        status = ("Đã công khai" if published else "Đã trả lời") if answered else (
            "Đang xử lý" if rng.random() < 0.7 else "Đã tiếp nhận")
        likes = rng.randint(0, 30) if published else 0
        dislikes = rng.randint(0, 12) if published else 0
        person = fake_person(rng, R.AGENCY_BY_CODE[code].short)
        topic = rng.choice(R.FEEDBACK_TOPICS)
        updated = max(x for x in (received, answered, published) if x is not None) + timedelta(minutes=3)
        if updated > AS_OF:
            updated = AS_OF
        out.append({
            "agency_code": code, "category": rng.choice(["Quy định hành chính", "Hành vi cán bộ", "Khác"]),
            "channel": channel, "sent_at": sent, "received_at": received, "answered_at": answered,
            "published_at": published, "status": status, "likes": likes, "dislikes": dislikes,
            "is_re_complaint": rng.random() < 0.08, "dossier_id": related, "sender_name": person.name,
            "content": f"Ông/bà {person.name} (SĐT {person.phone}) phản ánh việc {topic} tại "
                       f"{R.AGENCY_BY_CODE[code].name}.",
            "updated_at": updated,
        })
    out.sort(key=lambda r: (r["received_at"], r["agency_code"]))
    for i, r in enumerate(out, 1):
        r["feedback_id"] = f"PAKN-{r['received_at'].year}-{i:05d}"
    return out


def simulate_e_certifications(rng: random.Random, n: int) -> list[dict]:
    out = []
    days = (END - START).days + 1
    for _ in range(n):
        d = next_working_day(START + timedelta(days=rng.randrange(days)))
        if d > END:
            continue
        code = _agency_for_event(rng, d, 0.03)
        at = office_time(rng, d)
        out.append({"agency_code": code, "certified_at": at, "copies": rng.choices([1, 2, 3, 4, 5, 8], weights=[30, 30, 18, 10, 8, 4])[0],
                    "updated_at": at + timedelta(minutes=1)})
    out.sort(key=lambda r: (r["certified_at"], r["agency_code"]))
    seq: dict[tuple[str, date], int] = {}
    for r in out:
        k = (r["agency_code"], r["certified_at"].date())
        seq[k] = seq.get(k, 0) + 1
        r["transaction_id"] = f"CTDT-{r['agency_code'].split('.')[-1]}-{r['certified_at']:%y%m%d}-{seq[k]:03d}"
    return out


def procedure_rows(snapshot: date) -> list[dict]:
    """The catalogue as exported on `snapshot`."""
    rows = []
    for p0 in R.PROCEDURES:
        p = R.procedure_as_of(p0, snapshot)
        paper = p.paper_result
        if snapshot >= R.SNAPSHOT_2 and p.code == R.EMPTY_PAPER_RESULT_2025:
            paper = None
        rows.append({
            "procedure_code": p.code, "procedure_name": p.name, "field_code": p.field_code,
            "field_name": p.field_name, "levels": p.levels, "online_level": p.online_level,
            "is_online_eligible": p.online_eligible, "is_full_online_eligible": p.full_online_eligible,
            "has_sample_dossier": p.sample_dossier, "is_paper_result": paper, "legal_days": p.legal_days,
            "publication_decision_no": p.decision_no, "publication_decision_date": p.decision_date,
            "publication_state": p.publication, "has_simplification_plan": p.simplification,
            "updated_at": datetime.combine(snapshot, time(8, 15)),
        })
    return rows
