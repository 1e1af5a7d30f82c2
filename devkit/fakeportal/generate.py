"""Deterministic synthetic dossiers in the national sync shape (sources.md 1b), for the fake portal, the SQL
replica, tests and benchmarks. All personal data is invented."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

AGENCIES = ["H19.26380", "H19.26389", "H19.26401", "H19.26410", "H19.SNV"]
PROCEDURES = [
    ("2.000815", "Chứng thực bản sao từ bản chính", "TP-CT", "Chứng thực"),
    ("2.000884", "Chứng thực chữ ký trong các giấy tờ, văn bản", "TP-CT", "Chứng thực"),
    ("1.001193", "Thủ tục đăng ký khai sinh", "TP-HT", "Hộ tịch"),
    ("1.000656", "Thủ tục đăng ký kết hôn", "TP-HT", "Hộ tịch"),
    ("1.004227", "Cấp giấy phép xây dựng nhà ở riêng lẻ", "XD-HD", "Hoạt động xây dựng"),
]
SURNAMES = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Võ"]
GIVEN = ["Văn An", "Thị Bình", "Minh Châu", "Quốc Dũng", "Ngọc Hà", "Thanh Lâm"]


def write_agencies_csv(path) -> None:
    """An agencies.csv holding the generated dossiers' agencies (communes and a department of province H19), for a
    pipeline pointed at the fake portal: without it every generated dossier is quarantined as unknown."""
    from devkit.sample.refdata import write_agencies_csv as write

    rows = [["H19", "Tỉnh H19 (dữ liệu giả lập)", "province", "", "2023-01-01", "", "", "fake portal"]]
    rows += [[a, f"Đơn vị {a} (giả lập)", "department" if a.endswith("SNV") else "commune", "H19", "2023-01-01", "",
              "", "fake portal"] for a in AGENCIES]
    write(path, rows)


def _ts(dt: datetime | None) -> str:
    return dt.strftime("%Y%m%d%H%M%S") if dt else ""


def generate_dossiers(n: int, *, seed: int = 0, start: datetime = datetime(2025, 1, 2, 7, 30),
                      span_days: int = 300) -> list[dict]:
    """``n`` dossiers (one current version each), receipt spread over ``span_days`` from ``start``."""
    rng = random.Random(seed)
    out: list[dict] = []
    seq: dict[tuple[str, str], int] = {}
    for _ in range(n):
        agency = rng.choice(AGENCIES)
        code, name, field_code, field_name = rng.choice(PROCEDURES)
        submitted = start + timedelta(seconds=rng.randrange(span_days * 86400))
        received = submitted + timedelta(minutes=rng.randrange(5, 3000))
        due = (received + timedelta(days=rng.randrange(1, 15))).replace(hour=17, minute=0, second=0)
        status = rng.choice([2, 4, 5, 9, 10, 10, 10])
        finished = received + timedelta(hours=rng.randrange(1, 400)) if status in (9, 10) else None
        returned = finished + timedelta(hours=rng.randrange(0, 48)) if status == 10 and finished else None
        updated = max(t for t in (received, finished, returned) if t) + timedelta(seconds=rng.randrange(1, 600))
        key = (agency, submitted.strftime("%y%m%d"))
        seq[key] = seq.get(key, 0) + 1
        n_supp = rng.choice([0, 0, 0, 1, 2])
        supplements = []
        for i in range(n_supp):
            asked = received + timedelta(hours=6 * (i + 1))
            supplements.append({"NgayBoSung": _ts(asked), "NgayTiepNhanBoSung": _ts(asked + timedelta(hours=3))})
        dossier_id = f"{agency}-{key[1]}-{seq[key]:04d}"
        digit = rng.random() < 0.6
        out.append({
            "MaHoSo": dossier_id, "MaTTHC": code, "TenTTHC": name, "MaLinhVuc": field_code,
            "TenLinhVuc": field_name, "MaDonVi": agency, "KenhThucHien": rng.choice([1, 2, 2, 3]),
            "TrangThaiHoSo": status, "NgayNopHoSo": _ts(submitted), "NgayTiepNhan": _ts(received),
            "NgayHenTra": _ts(due), "NgayKetThucXuLy": _ts(finished), "NgayTra": _ts(returned),
            "ChuHoSo": f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}",
            "SoGiayToChuHoSo": f"0{rng.randrange(10**10, 10**11)}",
            "SoDienThoai": f"09{rng.randrange(10**7, 10**8)}",
            "DiaChi": f"Số {rng.randrange(1, 200)} đường Lê Lợi, tỉnh Đông Sơn",
            "HoSoCoThanhPhanSoHoa": 1 if digit else 0,
            "DuocThanhToanTrucTuyen": rng.choice([1, 2, None]),
            "NgayCapNhat": _ts(updated),
            "TaiLieuNop": ([{"TenTepDinhKem": "Tờ khai.pdf", "DuongDanTaiTepTin": f"/upload/{dossier_id}.pdf",
                             "DuocSoHoa": 1, "DuocTaiSuDung": rng.choice([0, 1]), "DuocLayTuKhoDMQG": 0}]
                           if digit else []),
            "DanhSachLePhi": [{"TenPhiLePhi": "Lệ phí", "Gia": rng.choice([0, 10000, 12000, 50000])}],
            "DanhSachHoSoBoSung": supplements,
            "DanhSachGiayToKetQua": ([{"TenGiayTo": "Kết quả", "DuongDanTepTinKetQua": f"/kq/{dossier_id}.pdf"}]
                                     if returned and rng.random() < 0.7 else []),
        })
    return out


def touch(record: dict, updated_at: datetime, status: int | None = None) -> dict:
    """A new version of ``record`` updated at ``updated_at`` (and optionally moved to ``status``)."""
    new = dict(record)
    new["NgayCapNhat"] = _ts(updated_at)
    if status is not None:
        new["TrangThaiHoSo"] = status
    return new
