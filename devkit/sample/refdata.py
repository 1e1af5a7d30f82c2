"""Reference data of the invented province used by the sample generator (all names are fictitious).

Province "Tỉnh Lâm Xuyên" (code H31): two districts until 2025-06-30, six old communes merged on 2025-07-01
into two new communes, a provincial department (Sở Tư pháp). Procedure codes follow the national catalogue's
shape (`d.dddddd`); the attributes below are invented for the sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

PROVINCE = "H31"
PROVINCE_NAME = "Tỉnh Lâm Xuyên"
MERGER_DATE = date(2025, 7, 1)
LEGAL_BASIS_MERGER = "NQ sắp xếp ĐVHC cấp xã 2025 (giả lập)"
LEGAL_BASIS_SAMPLE = "Dữ liệu giả lập"


@dataclass(frozen=True)
class Agency:
    code: str
    name: str
    level: str  # province | district | commune | department
    parent: str
    valid_from: date
    valid_to: date | None
    successor: str
    legal_basis: str
    short: str  # place name used in addresses


AGENCIES: tuple[Agency, ...] = (
    Agency("H31", PROVINCE_NAME, "province", "", date(2023, 1, 1), None, "", LEGAL_BASIS_SAMPLE, "Lâm Xuyên"),
    Agency("H31.811", "Huyện Bến Sỏi", "district", "H31", date(2023, 1, 1), date(2025, 6, 30), "", LEGAL_BASIS_MERGER, "Bến Sỏi"),
    Agency("H31.812", "Huyện Tràm Hương", "district", "H31", date(2023, 1, 1), date(2025, 6, 30), "", LEGAL_BASIS_MERGER, "Tràm Hương"),
    Agency("H31.27101", "Thị trấn Bến Sỏi", "commune", "H31.811", date(2023, 1, 1), date(2025, 6, 30), "H31.27190", LEGAL_BASIS_MERGER, "Thị trấn Bến Sỏi"),
    Agency("H31.27104", "Xã Cát Tiên Hạ", "commune", "H31.811", date(2023, 1, 1), date(2025, 6, 30), "H31.27190", LEGAL_BASIS_MERGER, "Xã Cát Tiên Hạ"),
    Agency("H31.27107", "Xã Suối Đá", "commune", "H31.811", date(2023, 1, 1), date(2025, 6, 30), "H31.27190", LEGAL_BASIS_MERGER, "Xã Suối Đá"),
    Agency("H31.27110", "Xã Hòa Khánh Tây", "commune", "H31.812", date(2023, 1, 1), date(2025, 6, 30), "H31.27195", LEGAL_BASIS_MERGER, "Xã Hòa Khánh Tây"),
    Agency("H31.27113", "Xã Tràm Hương", "commune", "H31.812", date(2023, 1, 1), date(2025, 6, 30), "H31.27195", LEGAL_BASIS_MERGER, "Xã Tràm Hương"),
    Agency("H31.27116", "Xã Bình Lộc", "commune", "H31.812", date(2023, 1, 1), date(2025, 6, 30), "H31.27195", LEGAL_BASIS_MERGER, "Xã Bình Lộc"),
    Agency("H31.27190", "Xã Bến Sỏi", "commune", "H31", date(2025, 7, 1), None, "", LEGAL_BASIS_MERGER, "Xã Bến Sỏi"),
    Agency("H31.27195", "Xã Tràm Hương", "commune", "H31", date(2025, 7, 1), None, "", LEGAL_BASIS_MERGER, "Xã Tràm Hương"),
    Agency("H31.STP", "Sở Tư pháp tỉnh Lâm Xuyên", "department", "H31", date(2023, 1, 1), None, "", LEGAL_BASIS_SAMPLE, "Phường Trung Tâm"),
)
AGENCY_BY_CODE = {a.code: a for a in AGENCIES}
OLD_COMMUNES = tuple(a for a in AGENCIES if a.level == "commune" and a.valid_to is not None)
NEW_COMMUNES = tuple(a for a in AGENCIES if a.level == "commune" and a.valid_to is None)
PREDECESSORS = {n.code: tuple(o.code for o in OLD_COMMUNES if o.successor == n.code) for n in NEW_COMMUNES}
# codes that agencies.csv does not list (used only by the invalid rows)
UNKNOWN_AGENCY_CODES = ("H31.27199", "H31.27188", "H31.27150")

AGENCY_HEADER = ["agency_code", "agency_name", "level", "parent_code", "valid_from", "valid_to", "successor_code",
                 "legal_basis"]


def agency_rows() -> list[list[str]]:
    return [[a.code, a.name, a.level, a.parent, a.valid_from.isoformat(),
             a.valid_to.isoformat() if a.valid_to else "", a.successor, a.legal_basis] for a in AGENCIES]


def write_agencies_csv(path, rows: list[list[str]] | None = None):
    """An agencies.csv (``AGENCY_HEADER``) of ``rows``, by default the sample province's agencies; returns its path."""
    import csv
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(AGENCY_HEADER)
        w.writerows(agency_rows() if rows is None else rows)
    return path


@dataclass(frozen=True)
class Procedure:
    code: str
    name: str
    field_code: str
    field_name: str
    levels: str  # canonical labels joined by ';'
    online_level: int
    online_eligible: bool
    full_online_eligible: bool
    sample_dossier: bool
    paper_result: bool
    legal_days: int | None
    decision_no: str
    decision_date: date
    publication: str
    simplification: bool
    fee: int
    weight: float  # relative frequency of dossiers


_D1 = ("1245/QĐ-UBND", date(2022, 6, 20))
_D2 = ("2310/QĐ-UBND", date(2022, 11, 3))
_D3 = ("418/QĐ-UBND", date(2023, 3, 14))

PROCEDURES: tuple[Procedure, ...] = (
    Procedure("1.001193", "Đăng ký khai sinh", "TP-HT", "Hộ tịch", "Cấp xã", 4, True, True, True, True, 1, *_D1, "Đang công khai", False, 0, 14),
    Procedure("1.000894", "Đăng ký khai tử", "TP-HT", "Hộ tịch", "Cấp xã", 4, True, True, True, True, 1, *_D1, "Đang công khai", False, 0, 4),
    Procedure("1.000656", "Đăng ký kết hôn", "TP-HT", "Hộ tịch", "Cấp xã", 3, True, False, True, True, 1, *_D1, "Đang công khai", False, 0, 4),
    Procedure("1.004873", "Cấp Giấy xác nhận tình trạng hôn nhân", "TP-HT", "Hộ tịch", "Cấp xã", 4, True, True, True, True, 3, *_D1, "Đang công khai", True, 3000, 8),
    Procedure("1.004884", "Cấp bản sao trích lục hộ tịch", "TP-HT", "Hộ tịch", "Cấp xã", 4, True, True, False, True, 1, *_D1, "Đang công khai", False, 8000, 6),
    Procedure("1.004859", "Đăng ký thay đổi, cải chính, bổ sung thông tin hộ tịch", "TP-HT", "Hộ tịch", "Cấp xã", 3, True, False, True, True, 3, *_D1, "Đang công khai", False, 15000, 2),
    Procedure("1.001022", "Đăng ký nhận cha, mẹ, con", "TP-HT", "Hộ tịch", "Cấp xã", 3, True, False, True, True, 3, *_D1, "Đang công khai", False, 0, 1),
    Procedure("1.000689", "Đăng ký giám hộ", "TP-HT", "Hộ tịch", "Cấp xã", 2, True, False, False, True, 3, *_D1, "Đang công khai", False, 0, 0.5),
    Procedure("1.004746", "Đăng ký lại khai sinh", "TP-HT", "Hộ tịch", "Cấp xã", 3, True, False, True, True, 5, *_D1, "Đang công khai", False, 0, 1),
    Procedure("2.000815", "Chứng thực bản sao từ bản chính giấy tờ, văn bản do cơ quan có thẩm quyền của Việt Nam cấp", "TP-CT", "Chứng thực", "Cấp xã;Cấp huyện", 4, True, True, False, True, 1, *_D2, "Đang công khai", False, 6000, 16),
    Procedure("2.000884", "Chứng thực chữ ký trong các giấy tờ, văn bản", "TP-CT", "Chứng thực", "Cấp xã;Cấp huyện", 2, False, False, False, True, 0, *_D2, "Đang công khai", False, 10000, 10),
    Procedure("2.001019", "Chứng thực hợp đồng, giao dịch liên quan đến tài sản là động sản", "TP-CT", "Chứng thực", "Cấp xã;Cấp huyện", 2, False, False, True, True, 2, *_D2, "Đang công khai", False, 50000, 2),
    Procedure("2.001035", "Chứng thực hợp đồng, giao dịch liên quan đến thực hiện quyền của người sử dụng đất và nhà ở", "TP-CT", "Chứng thực", "Cấp xã", 2, False, False, True, True, 2, *_D2, "Đang công khai", False, 50000, 3),
    Procedure("2.000927", "Cấp bản sao có chứng thực từ bản chính hợp đồng, giao dịch đã được chứng thực", "TP-CT", "Chứng thực", "Cấp xã;Cấp huyện", 3, True, False, False, True, 2, *_D2, "Đang công khai", False, 25000, 1),
    Procedure("1.004227", "Đăng ký biến động quyền sử dụng đất, quyền sở hữu tài sản gắn liền với đất", "TNMT-DD", "Đất đai", "Cấp xã", 3, True, False, True, True, 10, *_D2, "Đang công khai", True, 0, 3),
    Procedure("2.000889", "Đính chính Giấy chứng nhận đã cấp", "TNMT-DD", "Đất đai", "Cấp xã", 3, True, False, False, True, 10, *_D2, "Đang công khai", False, 0, 1),
    Procedure("1.004206", "Hòa giải tranh chấp đất đai", "TNMT-DD", "Đất đai", "Cấp xã", 2, False, False, False, True, None, *_D2, "Đang công khai", False, 0, 1),
    Procedure("1.001776", "Thực hiện, điều chỉnh, thôi hưởng trợ cấp xã hội hàng tháng", "LDTBXH-BTXH", "Bảo trợ xã hội", "Cấp xã", 4, True, True, True, True, 15, *_D1, "Đang công khai", False, 0, 3),
    Procedure("2.000751", "Hỗ trợ chi phí mai táng cho đối tượng bảo trợ xã hội", "LDTBXH-BTXH", "Bảo trợ xã hội", "Cấp xã", 3, True, True, True, False, 5, *_D1, "Đang công khai", False, 0, 1),
    Procedure("1.001653", "Xác định, xác định lại mức độ khuyết tật và cấp Giấy xác nhận khuyết tật", "LDTBXH-BTXH", "Bảo trợ xã hội", "Cấp xã", 3, True, False, True, True, 20, *_D1, "Đang công khai", False, 0, 1),
    Procedure("1.010827", "Cấp giấy xác nhận thân nhân của người có công", "LDTBXH-NCC", "Người có công", "Cấp xã", 4, True, True, True, True, 5, *_D3, "Đang công khai", False, 0, 1),
    Procedure("1.010833", "Giải quyết chế độ mai táng phí, trợ cấp một lần khi người có công với cách mạng từ trần", "LDTBXH-NCC", "Người có công", "Cấp xã", 3, True, False, True, False, 12, *_D3, "Đang công khai", False, 0, 0.5),
    Procedure("2.000720", "Đăng ký thành lập hộ kinh doanh", "KHDT-HKD", "Thành lập và hoạt động của hộ kinh doanh", "Cấp xã;Cấp huyện", 4, True, True, True, True, 3, *_D2, "Đang công khai", True, 100000, 3),
    Procedure("2.000575", "Đăng ký thay đổi nội dung đăng ký hộ kinh doanh", "KHDT-HKD", "Thành lập và hoạt động của hộ kinh doanh", "Cấp xã;Cấp huyện", 4, True, True, True, True, 3, *_D2, "Đang công khai", False, 50000, 1),
    Procedure("2.000564", "Tạm ngừng kinh doanh, tiếp tục kinh doanh trước thời hạn đã thông báo của hộ kinh doanh", "KHDT-HKD", "Thành lập và hoạt động của hộ kinh doanh", "Cấp xã;Cấp huyện", 3, True, True, False, True, 3, *_D2, "Đang công khai", False, 0, 0.7),
    Procedure("2.000551", "Chấm dứt hoạt động hộ kinh doanh", "KHDT-HKD", "Thành lập và hoạt động của hộ kinh doanh", "Cấp xã;Cấp huyện", 4, True, True, False, True, 3, *_D2, "Đang công khai", False, 0, 0.7),
    Procedure("1.009794", "Cấp giấy phép xây dựng mới đối với nhà ở riêng lẻ", "XD-HDXD", "Hoạt động xây dựng", "Cấp xã;Cấp huyện", 3, True, False, True, True, 15, *_D3, "Đang công khai", True, 75000, 1.5),
    Procedure("1.009795", "Gia hạn giấy phép xây dựng", "XD-HDXD", "Hoạt động xây dựng", "Cấp xã;Cấp huyện", 3, True, False, False, True, 5, *_D3, "Chưa công khai", False, 15000, 0.3),
    Procedure("1.003005", "Đăng ký việc nuôi con nuôi trong nước", "TP-NCN", "Nuôi con nuôi", "Cấp xã", 2, False, False, True, True, 30, *_D1, "Đang công khai", False, 400000, 0.2),
    Procedure("2.000488", "Cấp Phiếu lý lịch tư pháp cho công dân Việt Nam, người nước ngoài đang cư trú tại Việt Nam", "TP-LLTP", "Lý lịch tư pháp", "Cấp tỉnh", 4, True, True, True, True, 10, *_D1, "Đang công khai", True, 200000, 6),
    Procedure("2.000505", "Cấp Phiếu lý lịch tư pháp cho cơ quan tiến hành tố tụng", "TP-LLTP", "Lý lịch tư pháp", "Cấp tỉnh", 3, True, False, False, True, 10, *_D1, "Đang công khai", False, 0, 0.5),
    Procedure("1.008724", "Cấp bản sao trích lục hộ tịch có yếu tố nước ngoài", "TP-HT", "Hộ tịch", "Cấp tỉnh", 4, True, True, False, True, 1, *_D1, "Đang công khai", False, 8000, 1),
    Procedure("1.001071", "Đăng ký hành nghề và cấp Thẻ công chứng viên", "TP-CC", "Công chứng", "Cấp tỉnh", 3, True, False, True, True, 10, *_D1, "Đang công khai", False, 0, 0.3),
    Procedure("2.000778", "Thành lập Văn phòng công chứng", "TP-CC", "Công chứng", "Cấp tỉnh", 3, True, False, True, True, 15, *_D1, "Đang công khai", False, 0, 0.2),
    Procedure("1.002032", "Cấp giấy phép hành nghề luật sư với tư cách cá nhân", "TP-LS", "Luật sư", "Cấp tỉnh", 2, False, False, False, True, 7, *_D1, "Dừng công khai", False, 0, 0.1),
    Procedure("2.001263", "Cấp giấy đăng ký hoạt động của Trung tâm trọng tài", "TP-TT", "Trọng tài thương mại", "Cấp tỉnh", 2, False, False, False, True, 15, *_D3, "Đang công khai", False, 0, 0.1),
)
PROC_BY_CODE = {p.code: p for p in PROCEDURES}

# The 2025-07-10 snapshot's changes (dossiers received before/after it look up different catalogue versions)
SNAPSHOT_1 = date(2023, 1, 5)
SNAPSHOT_2 = date(2025, 7, 10)
CHANGED_LEGAL_DAYS = {"1.004227": 8}  # was 10
CHANGED_PAPER_RESULT = {"1.004884": False}  # was True: e-copy now the result
CHANGED_FIELD = {  # social-protection fields move to the home-affairs ministry's codes in 2025
    "1.001776": ("NV-BTXH", "Bảo trợ xã hội"),
    "2.000751": ("NV-BTXH", "Bảo trợ xã hội"),
    "1.010827": ("NV-NCC", "Người có công"),
}
EMPTY_PAPER_RESULT_2025 = "2.000564"  # its Kết quả là giấy tờ cell is empty in the 2025 snapshot


def procedure_as_of(p: Procedure, d: date) -> Procedure:
    """The catalogue attributes of `p` valid on date `d` (second snapshot from SNAPSHOT_2)."""
    if d < SNAPSHOT_2:
        return p
    from dataclasses import replace

    kw: dict = {}
    if p.code in CHANGED_LEGAL_DAYS:
        kw["legal_days"] = CHANGED_LEGAL_DAYS[p.code]
    if p.code in CHANGED_PAPER_RESULT:
        kw["paper_result"] = CHANGED_PAPER_RESULT[p.code]
    if p.code in CHANGED_FIELD:
        kw["field_code"], kw["field_name"] = CHANGED_FIELD[p.code]
    return replace(p, **kw) if kw else p


FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ", "Hồ", "Ngô",
          "Dương", "Lý", "Trương", "Đinh", "Lâm", "Mai"]
MIDDLE_M = ["Văn", "Đức", "Minh", "Hữu", "Quốc", "Thành", "Công", "Ngọc", "Xuân", "Thanh"]
MIDDLE_F = ["Thị", "Ngọc", "Thu", "Mỹ", "Kim", "Thanh", "Bích", "Hồng", "Diệu", "Xuân"]
GIVEN_M = ["An", "Bảo", "Cường", "Dũng", "Đạt", "Hải", "Hiếu", "Hùng", "Khoa", "Long", "Nam", "Phúc", "Quân",
           "Sơn", "Tài", "Thắng", "Toàn", "Trung", "Tuấn", "Vinh", "Khải", "Lộc"]
GIVEN_F = ["Anh", "Chi", "Dung", "Giang", "Hà", "Hạnh", "Hương", "Lan", "Linh", "Mai", "Nga", "Ngân", "Nhung",
           "Oanh", "Phương", "Quyên", "Thảo", "Trang", "Tuyết", "Vân", "Yến", "Ánh"]
STREETS = ["Lê Lợi", "Trần Hưng Đạo", "Nguyễn Trãi", "Hai Bà Trưng", "Lý Thái Tổ", "Phan Đình Phùng",
           "Nguyễn Du", "Bà Triệu", "Hàm Nghi", "Điện Biên Phủ", "Lạc Long Quân", "Ngô Quyền"]
PHONE_PREFIXES = ["090", "091", "093", "094", "096", "097", "098", "086", "032", "033", "035", "037", "039",
                  "070", "076", "077", "078", "079", "081", "083", "085", "088"]
# 12-digit citizen ID: 3-digit province of birth (leading zero), century/gender digit, 2-digit birth year, 6 digits
ID_PROVINCE_PREFIXES = ["075", "070", "074", "072", "079", "001", "038", "040", "052", "066"]
FEEDBACK_TOPICS = ["chậm trả kết quả hồ sơ", "thái độ tiếp công dân", "yêu cầu bổ sung giấy tờ nhiều lần",
                   "thu phí không đúng quy định", "hướng dẫn thủ tục chưa rõ ràng", "hệ thống nộp hồ sơ trực tuyến bị lỗi",
                   "thời gian chờ tại bộ phận một cửa quá lâu", "đề nghị đơn giản hóa thành phần hồ sơ"]
