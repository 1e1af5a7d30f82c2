"""Fast bulk dossier CSV for benchmarks: N dossier versions as a flat export (sources.md headers).

Random values come from numpy in chunks; dates are formatted and the CSV written by pyarrow, so 5,000,000 rows
take seconds and memory stays at one chunk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from devkit.sample import refdata as R

BULK_AGENCIES = [a.code for a in R.AGENCIES if a.level in ("commune", "department")]
_T0 = np.datetime64("2023-01-01T00:00:00", "s")
_SPAN_S = int((np.datetime64("2026-01-01T00:00:00", "s") - _T0).astype(np.int64))
_MERGER_S = int((np.datetime64(R.MERGER_DATE.isoformat() + "T00:00:00", "s") - _T0).astype(np.int64))
_IDX = {c: i for i, c in enumerate(BULK_AGENCIES)}
_IS_NEW = np.array([R.AGENCY_BY_CODE[c] in R.NEW_COMMUNES for c in BULK_AGENCIES])
_TO_NEW = np.array([_IDX.get(R.AGENCY_BY_CODE[c].successor, i) for i, c in enumerate(BULK_AGENCIES)])
_TO_OLD = np.array([[_IDX[R.PREDECESSORS[c][k]] if c in R.PREDECESSORS else i for k in range(3)]
                    for i, c in enumerate(BULK_AGENCIES)])
HEADERS = ["Mã hồ sơ", "Mã TTHC", "Tên TTHC", "Mã lĩnh vực", "Tên lĩnh vực", "Mã đơn vị", "Kênh thực hiện",
           "Trạng thái", "Ngày nộp", "Ngày tiếp nhận", "Ngày hẹn trả", "Ngày kết thúc xử lý", "Ngày trả kết quả",
           "Số lần yêu cầu bổ sung", "Ngày yêu cầu bổ sung", "Ngày nhận bổ sung", "Có thành phần số hóa",
           "Có kết quả điện tử", "Tái sử dụng dữ liệu số hóa", "Lệ phí", "Chủ hồ sơ", "Số giấy tờ chủ hồ sơ",
           "Số điện thoại", "Địa chỉ", "Ngày cập nhật"]


def write_agencies_csv(path: Path) -> Path:
    """agencies.csv listing every agency code the bulk dossiers use (the sample province's agencies)."""
    return R.write_agencies_csv(path)


def _dates(pa, pc, seconds: np.ndarray, mask: np.ndarray | None = None):
    arr = pa.array((_T0 + seconds.astype("timedelta64[s]")), type=pa.timestamp("s"), mask=mask)
    iso = pc.cast(arr, pa.string())  # 'yyyy-mm-dd HH:MM:SS', much faster than strftime
    return pc.replace_substring_regex(iso, pattern=r"^(\d{4})-(\d\d)-(\d\d)", replacement=r"\3/\2/\1")


def _take(pa, pool: list[str], idx: np.ndarray, mask: np.ndarray | None = None):
    d = pa.array(pool, type=pa.string())
    out = d.take(pa.array(idx))
    if mask is not None:
        import pyarrow.compute as pc

        out = pc.if_else(pa.array(mask), pa.scalar(None, pa.string()), out)
    return out


def write_dossier_csv(path: Path, n_rows: int, seed: int = 0, chunk_rows: int = 100_000) -> Path:
    """Write `n_rows` dossier versions (about 1.3 versions per dossier) to a UTF-8 CSV at `path`."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    path = Path(path)
    rng = np.random.default_rng(seed)
    procs = R.PROCEDURES
    p_codes = [p.code for p in procs]
    p_names = [p.name for p in procs]
    f_codes = [p.field_code for p in procs]
    f_names = [p.field_name for p in procs]
    legal = np.array([p.legal_days if p.legal_days is not None else 10 for p in procs], dtype=np.int64)
    fees = np.array([p.fee for p in procs], dtype=np.int64)
    weights = np.array([p.weight for p in procs], dtype=float)
    weights /= weights.sum()
    names = [f"{a} {b} {c}" for a in R.FAMILY for b in R.MIDDLE_F[:4] + R.MIDDLE_M[:4] for c in R.GIVEN_F[:8] + R.GIVEN_M[:8]]
    streets = [f"Số {n} đường {s}, ấp {k}, {R.PROVINCE_NAME}" for s in R.STREETS for n in range(1, 40, 7) for k in (1, 3, 5)]
    yesno = ["Không", "Có"]
    schema_names = HEADERS
    opts = pcsv.WriteOptions(include_header=True, quoting_style="needed")
    writer = None
    written = 0
    serial = 0
    try:
        while written < n_rows:
            m = min(chunk_rows, n_rows - written)
            # dossiers of this chunk: 1.3 versions each on average; a version repeats its dossier with a later state
            ag = rng.integers(0, len(BULK_AGENCIES), m)
            pi = rng.choice(len(procs), size=m, p=weights)
            sub = rng.integers(0, _SPAN_S - 40 * 86400, m)
            is_repeat = rng.random(m) < 0.23
            is_repeat[0] = False
            dossier_no = np.cumsum(~is_repeat) - 1 + serial
            serial = int(dossier_no[-1]) + 1
            first = np.maximum.accumulate(np.where(~is_repeat, np.arange(m), 0))
            ag, pi, sub = ag[first], pi[first], sub[first]
            # an agency only receives while it exists: old communes before the merger, new ones after it
            after = sub >= _MERGER_S
            ag = np.where(after, _TO_NEW[ag], np.where(_IS_NEW[ag], _TO_OLD[ag, sub % 3], ag))
            online = rng.random(m) < 0.3
            rec = sub + np.where(online, rng.integers(600, 2 * 86400, m), 0)
            due = rec + legal[pi] * 86400 * 7 // 5 + 3600 * 6
            dur = (rng.random(m) * (legal[pi] + 1) * 1.2 * 86400).astype(np.int64) + 900
            fin = rec + dur
            ret = fin + rng.integers(600, 5 * 86400, m)
            status = np.where(is_repeat, 10, rng.choice(np.array([2, 4, 5, 9, 10]), size=m, p=[.1, .15, .05, .1, .6]))
            finished = status >= 9
            returned = status == 10
            sup_n = np.where(rng.random(m) < 0.1, rng.integers(1, 3, m), 0)
            sup_req = rec + rng.integers(3600, 3 * 86400, m)
            sup_got = sup_req + rng.integers(3600, 5 * 86400, m)
            upd = np.where(returned, ret, np.where(finished, fin, rec + 1800)) + np.where(is_repeat, 86400, 0)
            day = (_T0 + sub.astype("timedelta64[s]")).astype("datetime64[D]")
            agency_str = _take(pa, BULK_AGENCIES, ag)
            ids = pc.binary_join_element_wise(
                agency_str, pc.strftime(pa.array(day.astype("datetime64[s]"), type=pa.timestamp("s")), format="%y%m%d"),
                pc.utf8_lpad(pc.cast(pa.array(dossier_no % 1_000_000), pa.string()), width=6, padding="0"), "-")
            empty_field = rng.random(m) < 0.04
            id_num = rng.integers(0, 10**9, m)[first]
            id_prefix = rng.choice(np.array(["075", "079", "001", "038"]), size=m)[first]
            idn = pc.binary_join_element_wise(pa.array(id_prefix), pc.utf8_lpad(pc.cast(pa.array(id_num), pa.string()), width=9, padding="0"), "")
            phone = pc.binary_join_element_wise(
                pa.array(rng.choice(np.array(["090", "091", "098", "035", "077", "083"]), size=m)),
                pc.utf8_lpad(pc.cast(pa.array(rng.integers(0, 10**7, m)), pa.string()), width=7, padding="0"), "")
            cols = [
                ids, _take(pa, p_codes, pi), _take(pa, p_names, pi), _take(pa, f_codes, pi, empty_field),
                _take(pa, f_names, pi, empty_field), agency_str,
                pa.array(np.where(online, 2, 1)), pa.array(status),
                _dates(pa, pc, sub), _dates(pa, pc, rec), _dates(pa, pc, due, legal[pi] == 0),
                _dates(pa, pc, fin, ~finished), _dates(pa, pc, ret, ~returned), pa.array(sup_n),
                _dates(pa, pc, sup_req, sup_n == 0), _dates(pa, pc, sup_got, sup_n == 0),
                _take(pa, yesno, (rng.random(m) < 0.5).astype(np.int64)),
                _take(pa, yesno, (rng.random(m) < 0.4).astype(np.int64), ~finished),
                _take(pa, yesno, (rng.random(m) < 0.3).astype(np.int64)),
                pa.array(fees[pi]),
                _take(pa, names, rng.integers(0, len(names), m)[first]), idn, phone,
                _take(pa, streets, rng.integers(0, len(streets), m)[first]), _dates(pa, pc, upd),
            ]
            table = pa.table(cols, names=schema_names)
            if writer is None:
                writer = pcsv.CSVWriter(str(path), table.schema, write_options=opts)
            writer.write_table(table)
            written += m
    finally:
        if writer is not None:
            writer.close()
    if n_rows == 0:
        path.write_text(",".join(HEADERS) + "\n", encoding="utf-8")
    return path
