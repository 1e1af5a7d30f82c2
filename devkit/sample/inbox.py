"""Write a sample inbox in every format and variant of docs/sources.md section 1, plus its manifest."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from devkit.sample import refdata as R
from devkit.sample import simulate as S
from devkit.sample.encodings import cp1252_mojibake, encode_cp1258

DOSSIER_COLUMNS: list[tuple[str, str]] = [
    ("dossier_id", "Mã hồ sơ"), ("procedure_code", "Mã TTHC"), ("procedure_name", "Tên TTHC"),
    ("field_code", "Mã lĩnh vực"), ("field_name", "Tên lĩnh vực"), ("agency_code", "Mã đơn vị"),
    ("channel", "Kênh thực hiện"), ("status", "Trạng thái"), ("submitted_at", "Ngày nộp"),
    ("received_at", "Ngày tiếp nhận"), ("due_at", "Ngày hẹn trả"), ("finished_at", "Ngày kết thúc xử lý"),
    ("returned_at", "Ngày trả kết quả"), ("supplement_count", "Số lần yêu cầu bổ sung"),
    ("supplement_requested_at", "Ngày yêu cầu bổ sung"), ("supplement_received_at", "Ngày nhận bổ sung"),
    ("has_digitized_components", "Có thành phần số hóa"), ("has_e_result", "Có kết quả điện tử"),
    ("reused_digitized_data", "Tái sử dụng dữ liệu số hóa"), ("fee_vnd", "Lệ phí"), ("applicant_name", "Chủ hồ sơ"),
    ("applicant_id_number", "Số giấy tờ chủ hồ sơ"), ("applicant_phone", "Số điện thoại"),
    ("applicant_address", "Địa chỉ"), ("updated_at", "Ngày cập nhật"),
]
DOSSIER_REQUIRED = {"dossier_id", "procedure_code", "status", "received_at", "updated_at"}
# header groups of the two-row XLSX report (None: the column's cell is merged over both header rows)
DOSSIER_GROUPS: list[tuple[str | None, list[str]]] = [
    (None, ["dossier_id"]), ("Thủ tục hành chính", ["procedure_code", "procedure_name"]),
    ("Lĩnh vực", ["field_code", "field_name"]), (None, ["agency_code", "channel", "status"]),
    ("Thời gian", ["submitted_at", "received_at", "due_at", "finished_at", "returned_at"]),
    ("Bổ sung hồ sơ", ["supplement_count", "supplement_requested_at", "supplement_received_at"]),
    ("Số hóa", ["has_digitized_components", "has_e_result", "reused_digitized_data"]), (None, ["fee_vnd"]),
    ("Thông tin người nộp", ["applicant_name", "applicant_id_number", "applicant_phone", "applicant_address"]),
    (None, ["updated_at"]),
]
PROCEDURE_COLUMNS = [
    ("procedure_code", "Mã TTHC"), ("procedure_name", "Tên TTHC"), ("field_code", "Mã lĩnh vực"),
    ("field_name", "Tên lĩnh vực"), ("levels", "Cấp thực hiện"), ("online_level", "Mức độ DVC"),
    ("is_online_eligible", "Đủ điều kiện DVCTT"), ("is_full_online_eligible", "Đủ điều kiện toàn trình"),
    ("has_sample_dossier", "Có hồ sơ mẫu"), ("is_paper_result", "Kết quả là giấy tờ"),
    ("legal_days", "Thời hạn giải quyết"), ("publication_decision_no", "Số quyết định công bố"),
    ("publication_decision_date", "Ngày quyết định công bố"), ("publication_state", "Trạng thái công khai"),
    ("has_simplification_plan", "Có phương án đơn giản hóa"), ("updated_at", "Ngày cập nhật"),
]
PAYMENT_COLUMNS = [("payment_id", "Mã giao dịch"), ("dossier_id", "Mã hồ sơ"), ("amount_vnd", "Số tiền"),
                   ("paid_at", "Ngày thanh toán"), ("payment_channel", "Kênh thanh toán"), ("status", "Trạng thái"),
                   ("updated_at", "Ngày cập nhật")]
RATING_COLUMNS = [("rating_id", "Mã đánh giá"), ("dossier_id", "Mã hồ sơ"), ("rating", "Mức độ hài lòng"),
                  ("rated_at", "Ngày đánh giá")]
FEEDBACK_COLUMNS = [
    ("feedback_id", "Mã PAKN"), ("agency_code", "Mã đơn vị xử lý"), ("category", "Phân loại"),
    ("channel", "Kênh tiếp nhận"), ("sent_at", "Ngày gửi"), ("received_at", "Ngày tiếp nhận"),
    ("answered_at", "Ngày trả lời"), ("published_at", "Ngày công khai"), ("status", "Trạng thái"),
    ("likes", "Số lượt hài lòng"), ("dislikes", "Số lượt không hài lòng"), ("is_re_complaint", "Khiếu nại tiếp"),
    ("dossier_id", "Mã hồ sơ liên quan"), ("sender_name", "Người gửi"), ("content", "Nội dung"),
    ("updated_at", "Ngày cập nhật"),
]
ECERT_COLUMNS = [("transaction_id", "Mã giao dịch"), ("agency_code", "Mã đơn vị"), ("certified_at", "Ngày chứng thực"),
                 ("copies", "Số bản sao"), ("updated_at", "Ngày cập nhật")]

STATUS_LABELS = {1: "Mới đăng ký", 2: "Được tiếp nhận", 3: "Không được tiếp nhận", 4: "Đang xử lý",
                 5: "Yêu cầu bổ sung giấy tờ", 6: "Yêu cầu thực hiện nghĩa vụ tài chính",
                 7: "Công dân yêu cầu rút hồ sơ", 8: "Dừng xử lý", 9: "Đã xử lý xong", 10: "Đã trả kết quả"}
CHANNEL_LABELS = {1: "Trực tiếp", 2: "Trực tuyến", 3: "Bưu chính công ích"}
RATING_LABELS = {4: "Rất hài lòng", 3: "Hài lòng", 2: "Bình thường", 1: "Không hài lòng"}
ONLINE_LEVEL_LABELS = {2: "Không", 3: "Một phần", 4: "Toàn trình"}

DATE_KEYS = {"submitted_at", "received_at", "due_at", "finished_at", "returned_at", "supplement_requested_at",
             "supplement_received_at", "updated_at", "paid_at", "rated_at", "sent_at", "answered_at",
             "published_at", "certified_at", "publication_decision_date"}
BOOL_KEYS = {"has_digitized_components", "has_e_result", "reused_digitized_data", "is_online_eligible",
             "is_full_online_eligible", "has_sample_dossier", "is_paper_result", "has_simplification_plan",
             "is_re_complaint"}
MONEY_KEYS = {"fee_vnd", "amount_vnd"}


@dataclass
class Style:
    """How a flat export spells its values."""

    date: str = "%d/%m/%Y %H:%M:%S"
    yes: str = "Có"
    no: str = "Không"
    x_columns: frozenset[str] = frozenset()  # columns that mark yes with 'x' and no with an empty cell
    money: str = "plain"  # plain | dot | dot_d
    labels: bool = False  # status/channel/rating/online level as Vietnamese labels
    excel_dates: frozenset[str] = frozenset()  # XLSX: columns written as real Excel dates


def fmt(key: str, value, st: Style):
    if value is None or value == "":
        return ""
    if key in DATE_KEYS:
        if isinstance(value, datetime):
            return value.strftime(st.date)
        if isinstance(value, date):
            return value.strftime("%d/%m/%Y")
        return str(value)
    if key in BOOL_KEYS:
        if key in st.x_columns:
            return "x" if value else ""
        return st.yes if value else st.no
    if key in MONEY_KEYS:
        v = int(value)
        if st.money == "plain" or v == 0:
            return str(v) if st.money != "dot_d" else f"{v} đ"
        s = f"{v:,}".replace(",", ".")
        return s + " đ" if st.money == "dot_d" else s
    if st.labels and key == "status" and isinstance(value, int) and value in STATUS_LABELS:
        return STATUS_LABELS[value]
    if st.labels and key == "channel" and isinstance(value, int):
        return CHANNEL_LABELS[value]
    if st.labels and key == "rating":
        return RATING_LABELS[value]
    if st.labels and key == "online_level":
        return ONLINE_LEVEL_LABELS[value]
    return str(value)


@dataclass
class Invalid:
    kind: str
    key: str  # canonical column
    value: str  # raw text written in the cell
    copy_of: str
    updated_at: datetime


@dataclass
class Row:
    values: dict
    invalid: Invalid | None = None
    record_id: str = ""


@dataclass
class FileOut:
    path: str
    entity: str
    variant: str
    window: tuple[date, date]
    rows: list[Row] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ writers
def _row_texts(cols, row: Row, st: Style) -> list[str]:
    out = []
    for k, _h in cols:
        if row.invalid is not None and row.invalid.key == k:
            out.append(row.invalid.value)
        else:
            out.append(fmt(k, row.values.get(k), st))
    return out


def write_csv(path: Path, cols, headers: list[str], rows: list[Row], st: Style, *, delimiter=",",
              encoding="utf-8", bom=False, transform=None, extra_col: tuple[str, list[str]] | None = None) -> dict:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\r\n")
    hdr = list(headers) + ([extra_col[0]] if extra_col else [])
    w.writerow(hdr)
    for i, r in enumerate(rows):
        cells = _row_texts(cols, r, st) + ([extra_col[1][i]] if extra_col else [])
        w.writerow(cells)
    text = buf.getvalue()
    if transform is not None:
        text = transform(text)
    data = ("\ufeff" + text).encode("utf-8") if bom else (
        encode_cp1258(text) if encoding == "cp1258" else text.encode(encoding))
    path.write_bytes(data)
    return {"header_rows": [1], "first_data_row": 2, "footer_rows": [],
            "positions": [i + 2 for i in range(len(rows))], "row_is": "physical line (1-based, header = line 1)"}


def _xlsx_cell_value(k, row: Row, st: Style):
    if row.invalid is not None and row.invalid.key == k:
        return row.invalid.value or None
    v = row.values.get(k)
    if k in st.excel_dates and isinstance(v, (datetime, date)):
        return v
    if k in ("supplement_count", "channel", "status", "fee_vnd", "amount_vnd", "legal_days", "online_level",
             "copies", "likes", "dislikes") and isinstance(v, int) and not st.labels and st.money == "plain":
        return v
    t = fmt(k, v, st)
    return t if t != "" else None


def write_xlsx(path: Path, cols, rows: list[Row], st: Style, *, title: list[str] | None = None,
               groups=None, footer: list[list[str]] | None = None, sheet="Sheet1") -> dict:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    wb = Workbook()
    ws = wb.active
    ws.title = sheet
    ncol = len(cols)
    r = 1
    if title:
        ws.cell(1, 1, R.PROVINCE_NAME.replace("Tỉnh", "ỦY BAN NHÂN DÂN TỈNH").upper()).font = Font(bold=True)
        ws.cell(1, max(1, ncol - 4), "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM").font = Font(bold=True)
        ws.cell(2, 1, title[0])
        ws.cell(2, max(1, ncol - 4), "Độc lập - Tự do - Hạnh phúc")
        r = 4
        for line in title[1:]:
            ws.cell(r, 1, line).font = Font(bold=True)
            ws.merge_cells(start_row=r, start_column=1, end_row=r, end_column=min(ncol, 10))
            r += 1
        r += 1  # blank row before the header
    key_col = {k: i + 1 for i, (k, _h) in enumerate(cols)}
    header_font = Font(bold=True)
    center = Alignment(horizontal="center", vertical="center", wrap_text=True)
    if groups:
        header_rows = [r, r + 1]
        for g, keys in groups:
            c0, c1 = key_col[keys[0]], key_col[keys[-1]]
            if g is None:
                for k in keys:
                    c = key_col[k]
                    ws.cell(r, c, dict(cols)[k]).font = header_font
                    ws.cell(r, c).alignment = center
                    ws.merge_cells(start_row=r, start_column=c, end_row=r + 1, end_column=c)
            else:
                ws.cell(r, c0, g).font = header_font
                ws.cell(r, c0).alignment = center
                ws.merge_cells(start_row=r, start_column=c0, end_row=r, end_column=c1)
                for k in keys:
                    ws.cell(r + 1, key_col[k], dict(cols)[k]).font = header_font
        r += 2
    else:
        header_rows = [r]
        for k, h in cols:
            ws.cell(r, key_col[k], h).font = header_font
        r += 1
    first = r
    positions = []
    for row in rows:
        for k, _h in cols:
            v = _xlsx_cell_value(k, row, st)
            if v is None:
                continue
            cell = ws.cell(r, key_col[k], v)
            if isinstance(v, datetime):
                cell.number_format = "dd/mm/yyyy hh:mm:ss"
            elif isinstance(v, date):
                cell.number_format = "dd/mm/yyyy"
        positions.append(r)
        r += 1
    footer_rows = []
    if footer:
        r += 1  # blank row after the data
        for line in footer:
            if any(line):
                for j, text in enumerate(line):
                    if text:
                        ws.cell(r, 1 + j * max(1, ncol // max(1, len(line))), text)
                footer_rows.append(r)
            r += 1
    fixed = datetime(2026, 1, 1)  # fixed document times: the same seed gives byte-identical files
    wb.properties.created = fixed
    wb.properties.modified = fixed
    wb.save(path)
    _normalise_zip(path)
    return {"header_rows": header_rows, "first_data_row": first, "footer_rows": footer_rows,
            "positions": positions, "row_is": "sheet row (1-based)"}


def _normalise_zip(path: Path) -> None:
    """Rewrite the XLSX zip with fixed entry times and document dates, so output depends only on the seed."""
    import re
    import zipfile

    with zipfile.ZipFile(path) as zin:
        entries = [(i.filename, zin.read(i.filename)) for i in zin.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for name, data in entries:
            if name == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*", rb"\g<1>2026-01-01T00:00:00Z", data)
            zout.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), data,
                          compress_type=zipfile.ZIP_DEFLATED)


def _json_date(v, style: str):
    if v is None or v == "":
        return ""
    if isinstance(v, date) and not isinstance(v, datetime):
        return v.isoformat()
    if style == "compact":
        return v.strftime("%Y%m%d%H%M%S")
    if style == "iso_offset":
        return v.strftime("%Y-%m-%dT%H:%M:%S") + "+07:00"
    return v.strftime("%Y-%m-%dT%H:%M:%S")


def sync_record(rng: random.Random, row: Row, date_style: str) -> dict:
    """A dossier version in the national portal's sync shape, with nested lists."""
    v = row.values
    did = v["dossier_id"]
    dt = lambda x: _json_date(x, date_style)  # noqa: E731
    n_docs = rng.randint(1, 3)
    docs = []
    names = ["Tờ khai.pdf", "Giấy tờ tùy thân.pdf", "Giấy tờ chứng minh nơi cư trú.pdf", "Bản sao giấy tờ.pdf"]
    stamp = v["submitted_at"]
    for i in range(n_docs):
        with_file = bool(v["has_digitized_components"]) or (i > 0 and rng.random() < 0.0)
        docs.append({"TenTepDinhKem": names[i],
                     "DuongDanTaiTepTin": f"/upload/{stamp:%Y/%m/%d}/{rng.getrandbits(48):012x}.pdf" if with_file else "",
                     "DuocSoHoa": 1 if with_file else 0, "DuocTaiSuDung": 0, "DuocLayTuKhoDMQG": 0})
    reuse_flag = 0
    if v["reused_digitized_data"]:
        how = rng.random()
        if how < 0.4:
            docs[0]["DuocTaiSuDung"] = 1
        elif how < 0.8:
            docs[0]["DuocLayTuKhoDMQG"] = 1
        else:
            reuse_flag = 1
    fee = int(v["fee_vnd"] or 0)
    fees = []
    if fee:
        if fee >= 20000 and rng.random() < 0.3:
            part = (fee // 2000) * 1000
            fees = [{"TenPhiLePhi": "Phí", "Gia": part}, {"TenPhiLePhi": "Lệ phí", "Gia": fee - part}]
        else:
            fees = [{"TenPhiLePhi": "Lệ phí", "Gia": fee}]
    sups = [{"NgayBoSung": dt(a), "NgayTiepNhanBoSung": dt(b)} for a, b in v["_supplements"]]
    if len(sups) > 1 and rng.random() < 0.5:
        sups.reverse()  # some systems list the newest request first
    results = []
    if v["has_e_result"]:
        results = [{"TenGiayTo": "Kết quả giải quyết TTHC", "DuongDanTepTinKetQua": f"/ketqua/{did}.pdf"}]
    elif v["status"] in (9, 10) and rng.random() < 0.5:
        results = [{"TenGiayTo": "Kết quả giải quyết TTHC (bản giấy)", "DuongDanTepTinKetQua": ""}]
    rec = {
        "MaHoSo": did, "MaTTHC": v["procedure_code"], "TenTTHC": v["procedure_name"],
        "MaLinhVuc": v["field_code"], "TenLinhVuc": v["field_name"], "MaDonVi": v["agency_code"],
        "KenhThucHien": v["channel"], "TrangThaiHoSo": v["status"], "NgayNopHoSo": dt(v["submitted_at"]),
        "NgayTiepNhan": dt(v["received_at"]), "NgayHenTra": dt(v["due_at"]),
        "NgayKetThucXuLy": dt(v["finished_at"]), "NgayTra": dt(v["returned_at"]), "ChuHoSo": v["applicant_name"],
        "SoGiayToChuHoSo": v["applicant_id_number"], "SoDienThoai": v["applicant_phone"],
        "DiaChi": v["applicant_address"], "HoSoCoThanhPhanSoHoa": reuse_flag,
        "DuocThanhToanTrucTuyen": v["_online_payment"] if v["_online_payment"] != "" else None,
        "NgayCapNhat": dt(v["updated_at"]), "TaiLieuNop": docs, "DanhSachLePhi": fees,
        "DanhSachHoSoBoSung": sups, "DanhSachGiayToKetQua": results,
    }
    if row.invalid is not None:
        sync_key = {"dossier_id": "MaHoSo", "agency_code": "MaDonVi", "status": "TrangThaiHoSo",
                    "received_at": "NgayTiepNhan"}[row.invalid.key]
        rec[sync_key] = row.invalid.value
    return rec


def canonical_json(row: Row, date_style: str) -> dict:
    out = {}
    for k, v in row.values.items():
        if k.startswith("_"):
            continue
        out[k] = _json_date(v, date_style) if k in DATE_KEYS else v
    if row.invalid is not None:
        out[row.invalid.key] = row.invalid.value
    return out


def write_json(path: Path, records: list[dict], shape: str) -> dict:
    if shape == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
        row_is = "JSONL line (1-based)"
    else:
        payload = {"data": records} if shape == "data" else records
        path.write_text(json.dumps(payload, ensure_ascii=False, indent=1), encoding="utf-8")
        row_is = "array element (1-based)" if shape == "array" else "element of data[] (1-based)"
    return {"header_rows": [], "first_data_row": None, "footer_rows": [],
            "positions": list(range(1, len(records) + 1)), "row_is": row_is}


# ------------------------------------------------------------------------------------------------ headers
def nfd_odd_headers(headers: list[str], required: list[bool]) -> list[str]:
    """NFD form, odd case, doubled/surrounding spaces and a trailing (*) on required columns."""
    out = []
    for i, (h, req) in enumerate(zip(headers, required)):
        s = h.upper() if i % 4 == 0 else (h.lower() if i % 4 == 1 else h)
        if i % 3 == 0:
            s = s.replace(" ", "  ", 1)
        if i % 5 == 2:
            s = f" {s} "
        if req:
            s += " (*)"
        out.append(unicodedata.normalize("NFD", s))
    return out


# ------------------------------------------------------------------------------------------------ the inbox
D = date
DOSSIER_FILES = [
    # path under one_stop/dossiers, variant, window
    ("BaoCaoChiTietHoSo_2023H1.xlsx", "xlsx_title_two_row_header", D(2023, 1, 1), D(2023, 6, 30)),
    ("DanhSachHoSo_2023H2.xlsx", "xlsx_plain", D(2023, 7, 1), D(2023, 12, 31)),
    ("export_hoso_2024Q1.csv", "csv_utf8_bom_extra_column", D(2024, 1, 1), D(2024, 3, 31)),
    ("export_hoso_2024Q2.csv", "csv_semicolon", D(2024, 4, 1), D(2024, 6, 30)),
    ("export_hoso_2024Q3.csv", "csv_nfd_odd_headers", D(2024, 7, 1), D(2024, 9, 30)),
    ("export_hoso_2024Q4_nhan.csv", "csv_labels", D(2024, 10, 1), D(2024, 12, 31)),
    ("export_hoso_2025Q1_cp1258.csv", "csv_cp1258", D(2025, 1, 1), D(2025, 3, 31)),
    ("export_hoso_2025Q2_loi_font.csv", "csv_cp1252_mojibake", D(2025, 4, 1), D(2025, 6, 30)),
    ("dongbo_hoso_2025Q3.jsonl", "jsonl", D(2025, 7, 1), D(2025, 9, 30)),
    ("dongbo_hoso_2025_10_11.json", "json_data", D(2025, 10, 1), D(2025, 11, 30)),
    ("dongbo_hoso_2025_12.json", "json_array", D(2025, 12, 1), D(2025, 12, 31)),
]
# which file gets which invalid dossier row
DOSSIER_INVALID = {
    "xlsx_title_two_row_header": ("empty_dossier_id", "dossier_id", ""),
    "csv_utf8_bom_extra_column": ("unknown_status", "status", "11"),
    "csv_semicolon": ("impossible_date", "received_at", "31/02/2024"),
    "csv_labels": ("unknown_agency", "agency_code", R.UNKNOWN_AGENCY_CODES[0]),
}


def _latest_of(row: Row) -> datetime:
    return row.values["updated_at"]


def _add_invalid(rng: random.Random, rows: list[Row], kind: str, key: str, value: str, latest: dict[str, datetime],
                 id_key: str) -> None:
    """Insert a copy of a record's latest version (one hour later) with one bad cell."""
    cands = [i for i, r in enumerate(rows) if r.invalid is None and latest.get(r.record_id) == _latest_of(r)]
    i = cands[len(cands) // 3 + rng.randrange(max(1, len(cands) // 3))]
    src = rows[i]
    vals = dict(src.values)
    vals["updated_at"] = vals["updated_at"] + timedelta(hours=1)
    inv = Invalid(kind, key, value, src.record_id, vals["updated_at"])
    pos = i + 1 + rng.randrange(max(1, min(40, len(rows) - i)))
    rows.insert(pos, Row(vals, inv, src.record_id))


def procedure_export_rows(snapshot: date) -> list[Row]:
    """The procedure catalogue as the portal exports it on ``snapshot``."""
    return [Row(r, None, r["procedure_code"]) for r in S.procedure_rows(snapshot)]


def write_procedure_csv(path: Path, snapshot: date) -> dict:
    """The catalogue exported on ``snapshot`` as a plain CSV (sources.md headers); the writer's layout info."""
    return write_csv(path, PROCEDURE_COLUMNS, [h for _k, h in PROCEDURE_COLUMNS], procedure_export_rows(snapshot),
                     Style())


def generate_inbox(out: Path, seed: int = 7, scale: float = 1.0, include_undecodable: bool = False) -> dict:
    """Write a sample inbox under `out` and return its manifest (also written to `out/manifest.json`)."""
    out = Path(out)
    rng = random.Random(seed)
    n_dossiers = max(60, int(round(3000 * scale)))
    dossiers = S.simulate_dossiers(rng, n_dossiers)
    payments = S.simulate_payments(rng, dossiers)
    ratings = S.simulate_ratings(rng, dossiers)
    feedback = S.simulate_feedback(rng, dossiers, max(12, int(round(115 * scale))))
    ecerts = S.simulate_e_certifications(rng, max(20, int(round(550 * scale))))

    files: list[tuple[FileOut, dict]] = []
    invalid_entries: list[dict] = []
    latest_dossier = {ds.dossier_id: ds.versions[-1]["updated_at"] for ds in dossiers}
    appearances: dict[str, set[str]] = {}

    def finish(fo: FileOut, info: dict, id_key: str) -> None:
        p = out / fo.path
        manifest_file = {
            "path": fo.path, "entity": fo.entity, "variant": fo.variant,
            "window": [fo.window[0].isoformat(), fo.window[1].isoformat()],
            "data_rows": len(fo.rows), "invalid_rows": sum(1 for r in fo.rows if r.invalid is not None),
            "header_rows": info["header_rows"], "first_data_row": info["first_data_row"],
            "footer_rows": info["footer_rows"], "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
        }
        manifest_file.update(fo.extra)
        files.append((fo, manifest_file))
        headers = dict(info.get("headers", {}))
        for idx, r in enumerate(fo.rows):
            if r.invalid is None:
                appearances.setdefault(f"{fo.entity}:{r.record_id}", set()).add(fo.path)
                continue
            invalid_entries.append({
                "path": fo.path, "entity": fo.entity, "row": info["positions"][idx], "row_is": info["row_is"],
                "data_row": idx + 1, "kind": r.invalid.kind, "column": headers.get(r.invalid.key, r.invalid.key),
                "value": r.invalid.value, "copy_of": r.invalid.copy_of,
                "updated_at": r.invalid.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
            })

    # ---- dossiers
    ddir = out / "one_stop" / "dossiers"
    ddir.mkdir(parents=True, exist_ok=True)
    cols = DOSSIER_COLUMNS
    hdr = [h for _k, h in cols]
    for name, variant, a, b in DOSSIER_FILES:
        fo = FileOut(f"one_stop/dossiers/{name}", "dossiers", variant, (a, b))
        for ds in dossiers:
            vs = [v for v in ds.versions if a <= v["updated_at"].date() <= b]
            if not vs:
                continue
            shown = vs if variant == "jsonl" else vs[-1:]
            for v in shown:
                fo.rows.append(Row(S.flat_row(ds, v), None, ds.dossier_id))
        if variant == "jsonl":
            fo.rows.sort(key=lambda r: (r.values["updated_at"], r.record_id))
        else:
            fo.rows.sort(key=lambda r: (r.values["received_at"] or r.values["submitted_at"], r.record_id))
        if variant in DOSSIER_INVALID:
            _add_invalid(rng, fo.rows, *DOSSIER_INVALID[variant], latest_dossier, "dossier_id")
        if variant == "jsonl":  # the unknown-agency dossier of the sync feed
            _add_invalid(rng, fo.rows, "unknown_agency", "agency_code", R.UNKNOWN_AGENCY_CODES[1], latest_dossier,
                         "dossier_id")
        p = out / fo.path
        info = _write_dossier_file(rng, p, variant, fo, cols, hdr)
        finish(fo, info, "dossier_id")

    if include_undecodable:
        fo = FileOut("one_stop/dossiers/export_hoso_loi_ma_hoa.csv", "dossiers", "csv_undecodable",
                     (D(2024, 1, 1), D(2024, 3, 31)), extra={"expect": "reject",
                                                             "note": "mixed UTF-8 and Windows-1258 lines"})
        src = next(f for f, _m in files if f.variant == "csv_utf8_bom_extra_column")
        fo.rows = [Row(dict(r.values), None, r.record_id) for r in src.rows if r.invalid is None][:40]
        _write_undecodable(out / fo.path, cols, hdr, fo.rows)
        p = out / fo.path
        files.append((fo, {
            "path": fo.path, "entity": fo.entity, "variant": fo.variant,
            "window": [fo.window[0].isoformat(), fo.window[1].isoformat()], "data_rows": len(fo.rows),
            "invalid_rows": 0, "header_rows": [1], "first_data_row": 2, "footer_rows": [],
            "sha256": hashlib.sha256(p.read_bytes()).hexdigest(), **fo.extra}))

    # ---- procedures: two catalogue snapshots
    pdir = out / "dvc_portal" / "procedures"
    pdir.mkdir(parents=True, exist_ok=True)
    for snap, name, variant in ((R.SNAPSHOT_1, "DanhMucTTHC_20230105.xlsx", "xlsx_title"),
                                (R.SNAPSHOT_2, "danhmuc_tthc_20250710.csv", "csv")):
        fo = FileOut(f"dvc_portal/procedures/{name}", "procedures", variant, (snap, snap))
        fo.rows = procedure_export_rows(snap)
        p = out / fo.path
        if variant == "xlsx_title":
            st = Style(excel_dates=frozenset({"publication_decision_date"}))
            info = write_xlsx(p, PROCEDURE_COLUMNS, fo.rows, st, title=[
                "CỔNG DỊCH VỤ CÔNG TỈNH", "DANH MỤC THỦ TỤC HÀNH CHÍNH",
                f"Ngày xuất dữ liệu: {snap:%d/%m/%Y}"],
                footer=[[f"Tổng số: {len(fo.rows)} thủ tục"]])
        else:
            info = write_procedure_csv(p, snap)
        info["headers"] = dict(PROCEDURE_COLUMNS)
        finish(fo, info, "procedure_code")

    # ---- payments: a CSV for 2023-2024 and a JSONL feed for 2025
    (out / "dvc_portal" / "payments").mkdir(parents=True, exist_ok=True)
    cut = datetime(2025, 1, 1)
    fo = FileOut("dvc_portal/payments/thanhtoan_2023_2024.csv", "payments", "csv", (D(2023, 1, 1), D(2024, 12, 31)))
    fo.rows = [Row(r, None, r["payment_id"]) for r in payments if r["updated_at"] < cut]
    info = write_csv(out / fo.path, PAYMENT_COLUMNS, [h for _k, h in PAYMENT_COLUMNS], fo.rows, Style(money="dot"))
    info["headers"] = dict(PAYMENT_COLUMNS)
    finish(fo, info, "payment_id")
    fo = FileOut("dvc_portal/payments/thanhtoan_2025.jsonl", "payments", "jsonl", (D(2025, 1, 1), D(2025, 12, 31)))
    fo.rows = [Row(r, None, r["payment_id"]) for r in payments if r["updated_at"] >= cut]
    info = write_json(out / fo.path, [canonical_json(r, "iso_offset") for r in fo.rows], "jsonl")
    finish(fo, info, "payment_id")

    # ---- ratings (labels), feedback, e-certifications
    (out / "dvc_portal" / "ratings").mkdir(parents=True, exist_ok=True)
    fo = FileOut("dvc_portal/ratings/danhgia_2023_2025.csv", "ratings", "csv_labels", (D(2023, 1, 1), D(2025, 12, 31)))
    fo.rows = [Row(r, None, r["rating_id"]) for r in ratings]
    info = write_csv(out / fo.path, RATING_COLUMNS, [h for _k, h in RATING_COLUMNS], fo.rows, Style(labels=True))
    info["headers"] = dict(RATING_COLUMNS)
    finish(fo, info, "rating_id")

    (out / "dvc_portal" / "feedback").mkdir(parents=True, exist_ok=True)
    fo = FileOut("dvc_portal/feedback/pakn_2023_2025.csv", "feedback", "csv", (D(2023, 1, 1), D(2025, 12, 31)))
    fo.rows = [Row(r, None, r["feedback_id"]) for r in feedback]
    latest_fb = {r["feedback_id"]: r["updated_at"] for r in feedback}
    _add_invalid(rng, fo.rows, "unknown_agency", "agency_code", R.UNKNOWN_AGENCY_CODES[2], latest_fb, "feedback_id")
    info = write_csv(out / fo.path, FEEDBACK_COLUMNS, [h for _k, h in FEEDBACK_COLUMNS], fo.rows, Style())
    info["headers"] = dict(FEEDBACK_COLUMNS)
    finish(fo, info, "feedback_id")

    (out / "dvc_portal" / "e_certifications").mkdir(parents=True, exist_ok=True)
    fo = FileOut("dvc_portal/e_certifications/chungthuc_dientu_2023_2025.csv", "e_certifications", "csv",
                 (D(2023, 1, 1), D(2025, 12, 31)))
    fo.rows = [Row(r, None, r["transaction_id"]) for r in ecerts]
    latest_ec = {r["transaction_id"]: r["updated_at"] for r in ecerts}
    _add_invalid(rng, fo.rows, "unknown_agency", "agency_code", R.UNKNOWN_AGENCY_CODES[0], latest_ec, "transaction_id")
    info = write_csv(out / fo.path, ECERT_COLUMNS, [h for _k, h in ECERT_COLUMNS], fo.rows,
                     Style(date="%d/%m/%Y %H:%M"))
    info["headers"] = dict(ECERT_COLUMNS)
    finish(fo, info, "transaction_id")

    # ---- agencies.csv
    R.write_agencies_csv(out / "agencies.csv")

    received = sum(1 for ds in dossiers if ds.versions[-1]["status"] not in (1, 3) and ds.versions[-1]["received_at"])
    manifest = {
        "generator": {"seed": seed, "scale": scale, "include_undecodable": include_undecodable},
        "data_window": [S.START.isoformat(), S.END.isoformat()],
        "entities": {
            "dossiers": {"distinct_records": len(dossiers), "received_dossiers": received,
                         "versions": sum(len(ds.versions) for ds in dossiers)},
            "procedures": {"distinct_records": len(R.PROCEDURES),
                           "snapshots": [R.SNAPSHOT_1.isoformat(), R.SNAPSHOT_2.isoformat()]},
            "payments": {"distinct_records": len(payments)},
            "ratings": {"distinct_records": len(ratings)},
            "feedback": {"distinct_records": len(feedback)},
            "e_certifications": {"distinct_records": len(ecerts)},
        },
        "rows_repeated_in_other_files": sum(
            1 for k, v in appearances.items() if len(v) > 1 and not k.startswith("procedures:")),
        "invalid_rows": invalid_entries,
        "notes": [
            "Rows of a record appear in several files as its state changes; the latest Ngày cập nhật wins.",
            "invalid_rows must be quarantined, not loaded; each is a copy of a record's latest version with "
            "Ngày cập nhật one hour later (unknown_agency: an agency code that agencies.csv does not list).",
            "footer_rows are report footers (totals, signatures), not data; a blank row precedes them.",
            "A file with \"expect\": \"reject\" cannot be decoded with certainty and must be rejected.",
        ],
        "files": [m for _f, m in files],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    return manifest


def _write_dossier_file(rng: random.Random, p: Path, variant: str, fo: FileOut, cols, hdr) -> dict:
    if variant == "xlsx_title_two_row_header":
        st = Style(excel_dates=frozenset({"submitted_at", "received_at", "finished_at", "returned_at",
                                          "updated_at"}))
        a, b = fo.window
        n_valid = sum(1 for r in fo.rows if r.invalid is None)
        info = write_xlsx(p, cols, fo.rows, st, groups=DOSSIER_GROUPS, title=[
            "BỘ PHẬN TIẾP NHẬN VÀ TRẢ KẾT QUẢ", "BÁO CÁO CHI TIẾT HỒ SƠ THỦ TỤC HÀNH CHÍNH",
            f"Từ ngày {a:%d/%m/%Y} đến ngày {b:%d/%m/%Y}", "Đơn vị: Toàn tỉnh"],
            footer=[[f"Tổng cộng: {len(fo.rows)} hồ sơ", "", "", f"Trong đó đã trả kết quả: "
                     f"{sum(1 for r in fo.rows if r.values['status'] == 10)}"],
                    ["", "", "", f"Lâm Xuyên, ngày {b + timedelta(days=5):%d} tháng {b + timedelta(days=5):%m} "
                                 f"năm {b + timedelta(days=5):%Y}"],
                    ["NGƯỜI LẬP BIỂU", "", "", "THỦ TRƯỞNG ĐƠN VỊ"],
                    ["(Ký, ghi rõ họ tên)", "", "", "(Ký tên, đóng dấu)"]])
        del n_valid
    elif variant == "xlsx_plain":
        st = Style(date="%d/%m/%Y %H:%M", yes="1", no="0", excel_dates=frozenset({"received_at", "updated_at"}))
        info = write_xlsx(p, cols, fo.rows, st)
    elif variant == "csv_utf8_bom_extra_column":
        notes = ["" if rng.random() < 0.85 else rng.choice(["Hồ sơ ưu tiên", "Đã gọi điện hẹn", "Liên thông"])
                 for _ in fo.rows]
        info = write_csv(p, cols, hdr, fo.rows, Style(), bom=True, extra_col=("Ghi chú nội bộ", notes))
    elif variant == "csv_semicolon":
        info = write_csv(p, cols, hdr, fo.rows, Style(yes="TRUE", no="FALSE", money="dot"), delimiter=";")
    elif variant == "csv_nfd_odd_headers":
        odd = nfd_odd_headers(hdr, [k in {"dossier_id", "procedure_code", "status", "received_at", "updated_at"}
                                    for k, _h in cols])
        info = write_csv(p, cols, odd, fo.rows, Style(date="%d/%m/%Y %H:%M"))
    elif variant == "csv_labels":
        st = Style(labels=True, money="dot_d", x_columns=frozenset({"has_e_result", "reused_digitized_data"}))
        info = write_csv(p, cols, hdr, fo.rows, st)
    elif variant == "csv_cp1258":
        info = write_csv(p, cols, hdr, fo.rows, Style(), encoding="cp1258")
    elif variant == "csv_cp1252_mojibake":
        info = write_csv(p, cols, hdr, fo.rows, Style(), transform=cp1252_mojibake)
    elif variant == "jsonl":
        info = write_json(p, [sync_record(rng, r, "compact") for r in fo.rows], "jsonl")
    elif variant == "json_data":
        info = write_json(p, [sync_record(rng, r, "iso_offset") for r in fo.rows], "data")
    elif variant == "json_array":
        info = write_json(p, [sync_record(rng, r, "iso") for r in fo.rows], "array")
    else:  # pragma: no cover
        raise ValueError(variant)
    if variant.startswith(("json",)):
        info["headers"] = {"dossier_id": "MaHoSo", "agency_code": "MaDonVi", "status": "TrangThaiHoSo",
                           "received_at": "NgayTiepNhan"}
    else:
        info["headers"] = dict(cols)
    return info


def _write_undecodable(p: Path, cols, hdr, rows: list[Row]) -> None:
    """Lines in UTF-8 and in Windows-1258 mixed in one file, plus bytes neither can explain well."""
    lines = [",".join(hdr).encode("utf-8")]
    for i, r in enumerate(rows):
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow(_row_texts(cols, r, Style()))
        text = buf.getvalue()
        lines.append(encode_cp1258(text) if i % 2 else text.encode("utf-8"))
    lines.insert(len(lines) // 2, b"\x81\x8d\x8f\x90\x9d\xff\xfe")
    p.write_bytes(b"\r\n".join(lines) + b"\r\n")
