"""A one-stop replica for tests, demos and benchmarks: the reference ``HoSos`` table (sources.md section 3)
with native types, loaded from dossiers in the national sync shape."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa

from transforms.pull.window import parse_timestamp


def hosos_table(metadata: sa.MetaData, name: str = "HoSos", schema: str | None = None) -> sa.Table:
    return sa.Table(
        name, metadata,
        sa.Column("MaHoSo", sa.Text, primary_key=True),
        sa.Column("MaTTHC", sa.Text), sa.Column("TenTTHC", sa.Text), sa.Column("MaLinhVuc", sa.Text),
        sa.Column("TenLinhVuc", sa.Text), sa.Column("MaDonVi", sa.Text),
        sa.Column("KenhThucHien", sa.Integer, nullable=True), sa.Column("TrangThaiHoSo", sa.Integer),
        sa.Column("NgayNopHoSo", sa.DateTime), sa.Column("NgayTiepNhan", sa.DateTime),
        sa.Column("NgayHenTra", sa.DateTime), sa.Column("NgayKetThucXuLy", sa.DateTime),
        sa.Column("NgayTra", sa.DateTime), sa.Column("SoLanBoSung", sa.Integer),
        sa.Column("NgayYeuCauBoSung", sa.DateTime), sa.Column("NgayNhanBoSung", sa.DateTime),
        sa.Column("CoThanhPhanSoHoa", sa.Boolean), sa.Column("CoKetQuaDienTu", sa.Boolean),
        sa.Column("TaiSuDungDuLieu", sa.Boolean), sa.Column("LePhi", sa.BigInteger),
        sa.Column("ChuHoSo", sa.Text), sa.Column("SoGiayToChuHoSo", sa.Text), sa.Column("SoDienThoai", sa.Text),
        sa.Column("DiaChi", sa.Text), sa.Column("NgayCapNhat", sa.DateTime, index=True),
        schema=schema,
    )


def sync_to_row(rec: dict) -> dict:
    """One national-sync dossier as a ``HoSos`` row (the reductions of sources.md 1b)."""
    supp = rec.get("DanhSachHoSoBoSung") or []
    latest = max(supp, key=lambda s: parse_timestamp(s.get("NgayBoSung")) or datetime.min) if supp else None
    docs = rec.get("TaiLieuNop") or []
    results = rec.get("DanhSachGiayToKetQua") or []
    reused = any(d.get("DuocTaiSuDung") == 1 or d.get("DuocLayTuKhoDMQG") == 1 for d in docs) \
        or rec.get("HoSoCoThanhPhanSoHoa") == 1
    ch = rec.get("KenhThucHien")
    return {
        "MaHoSo": rec["MaHoSo"], "MaTTHC": rec.get("MaTTHC"), "TenTTHC": rec.get("TenTTHC"),
        "MaLinhVuc": rec.get("MaLinhVuc") or None, "TenLinhVuc": rec.get("TenLinhVuc") or None,
        "MaDonVi": rec.get("MaDonVi") or None, "KenhThucHien": int(ch) if ch not in (None, "") else None,
        "TrangThaiHoSo": int(rec["TrangThaiHoSo"]),
        "NgayNopHoSo": parse_timestamp(rec.get("NgayNopHoSo")),
        "NgayTiepNhan": parse_timestamp(rec.get("NgayTiepNhan")),
        "NgayHenTra": parse_timestamp(rec.get("NgayHenTra")),
        "NgayKetThucXuLy": parse_timestamp(rec.get("NgayKetThucXuLy")),
        "NgayTra": parse_timestamp(rec.get("NgayTra")),
        "SoLanBoSung": len(supp),
        "NgayYeuCauBoSung": parse_timestamp(latest.get("NgayBoSung")) if latest else None,
        "NgayNhanBoSung": parse_timestamp(latest.get("NgayTiepNhanBoSung")) if latest else None,
        "CoThanhPhanSoHoa": any(d.get("DuongDanTaiTepTin") for d in docs),
        "CoKetQuaDienTu": any(r.get("DuongDanTepTinKetQua") for r in results),
        "TaiSuDungDuLieu": bool(reused),
        "LePhi": sum(int(f.get("Gia") or 0) for f in rec.get("DanhSachLePhi") or []),
        "ChuHoSo": rec.get("ChuHoSo"), "SoGiayToChuHoSo": rec.get("SoGiayToChuHoSo"),
        "SoDienThoai": rec.get("SoDienThoai"), "DiaChi": rec.get("DiaChi"),
        "NgayCapNhat": parse_timestamp(rec.get("NgayCapNhat")),
    }


def create_replica(engine: sa.Engine, records: Iterable[dict], *, table: str = "HoSos",
                   schema: str | None = None, chunk: int = 5000) -> sa.Table:
    """Create the table (dropping an old one) and load ``records`` (national sync shape)."""
    md = sa.MetaData()
    t = hosos_table(md, table, schema)
    with engine.begin() as conn:
        t.drop(conn, checkfirst=True)
        t.create(conn)
        buf: list[dict] = []
        for rec in records:
            buf.append(sync_to_row(rec))
            if len(buf) >= chunk:
                conn.execute(t.insert(), buf)
                buf = []
        if buf:
            conn.execute(t.insert(), buf)
    return t


def update_rows(engine: sa.Engine, ids: Iterable[str], updated_at: datetime, *, status: int | None = None,
                table: str = "HoSos", schema: str | None = None) -> int:
    """Update dossiers in place (as the one-stop system does): new ``NgayCapNhat`` and optionally status."""
    md = sa.MetaData()
    t = hosos_table(md, table, schema)
    values: dict = {"NgayCapNhat": updated_at}
    if status is not None:
        values["TrangThaiHoSo"] = status
    with engine.begin() as conn:
        res = conn.execute(t.update().where(t.c.MaHoSo.in_(list(ids))).values(**values))
    return res.rowcount
