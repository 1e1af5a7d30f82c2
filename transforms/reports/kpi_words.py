"""The KPI registry's counters and indicator scores in Vietnamese words, for the reports' "how each number is
computed" section. Same meaning as ``Counter.words`` and ``Indicator.score_words`` in transforms/kpis/registry.py
(tests/unit/reports/test_kpi_words.py: every counter and indicator has its words); no formula is restated: a
formula is read from the registry and only its counters are put in words."""

from __future__ import annotations

from transforms.kpis import registry

COUNTER_VI = {
    "population": "hồ sơ thuộc kỳ P (tiếp nhận đến ngày E, chưa kết thúc trước ngày đầu kỳ)",
    "received": "hồ sơ tiếp nhận trong kỳ",
    "received_online": "hồ sơ tiếp nhận trực tuyến trong kỳ (kênh 2)",
    "carried_over": "hồ sơ tiếp nhận trước kỳ (chuyển qua)",
    "resolved": "hồ sơ giải quyết xong trong kỳ (ngày kết thúc từ đầu kỳ đến E)",
    "resolved_early": "hồ sơ giải quyết xong trong kỳ trước hạn",
    "resolved_on_time": "hồ sơ giải quyết xong trong kỳ đúng hạn (hoặc không có hạn)",
    "resolved_late": "hồ sơ giải quyết xong trong kỳ quá hạn",
    "in_progress": "hồ sơ của kỳ chưa giải quyết xong đến E",
    "in_progress_within_time": "hồ sơ đang giải quyết tại E còn trong hạn",
    "in_progress_overdue": "hồ sơ đang giải quyết tại E đã quá hạn",
    "received_digitized": "hồ sơ tiếp nhận trong kỳ có thành phần được số hóa",
    "received_reusing_data": "hồ sơ tiếp nhận trong kỳ tái sử dụng dữ liệu số hóa",
    "resolved_paper_9_10": "hồ sơ giải quyết xong trong kỳ (trạng thái 9 hoặc 10) có kết quả bản giấy (không rõ = giấy)",
    "resolved_paper_9_10_e_result": "hồ sơ giải quyết xong trong kỳ (trạng thái 9 hoặc 10), kết quả bản giấy, có "
                                    "kết quả điện tử",
    "received_with_fee": "hồ sơ tiếp nhận trong kỳ có phí, lệ phí lớn hơn 0",
    "received_with_fee_paid_online": "hồ sơ tiếp nhận trong kỳ có phí, lệ phí và thanh toán trực tuyến thành công "
                                     "đến ngày E",
    "dissatisfied": "hồ sơ của kỳ quá hạn, hoặc được đánh giá Không hài lòng đến E, hoặc có phản ánh kiến nghị "
                    "kèm theo nhận đến E",
    "received_online_e_result_if_paper": "hồ sơ tiếp nhận trực tuyến trong kỳ, với TTHC kết quả giấy thì có kết quả "
                                         "điện tử",
    "received_digitized_e_result_if_paper": "hồ sơ tiếp nhận trong kỳ có thành phần số hóa, nếu đã giải quyết "
                                            "(trạng thái 9, 10) với kết quả giấy thì có kết quả điện tử",
    "feedback_population": "phản ánh, kiến nghị nhận đến E và chưa trả lời trước đầu kỳ",
    "feedback_on_time": "phản ánh, kiến nghị trả lời đúng hạn (15 ngày làm việc), hoặc chưa trả lời nhưng còn hạn "
                        "tại E",
    "feedback_received": "phản ánh, kiến nghị nhận trong kỳ",
    "feedback_unsatisfied": "phản ánh, kiến nghị nhận trong kỳ có lượt không hài lòng nhiều hơn hài lòng, bị phản "
                            "ánh lại, hoặc quá hạn tại E",
    "procedures_publishable": "TTHC có quyết định công bố đến E, không ở trạng thái Dừng công khai",
    "procedures_published": "TTHC có quyết định công bố đến E, đang công khai",
    "procedures_with_sample": "TTHC có quyết định công bố đến E, không dừng công khai, có hồ sơ mẫu",
    "procedures_online_eligible": "TTHC đủ điều kiện cung cấp dịch vụ công trực tuyến",
    "procedures_online_offered": "TTHC đủ điều kiện và đã cung cấp dịch vụ công trực tuyến mức 3 hoặc 4",
    "procedures_full_online_eligible": "TTHC đủ điều kiện cung cấp dịch vụ công trực tuyến toàn trình",
    "procedures_full_online_offered": "TTHC đủ điều kiện và đã cung cấp dịch vụ công trực tuyến toàn trình (mức 4)",
    "procedures_of_level": "TTHC thuộc cấp của đơn vị",
    "procedures_simplified": "TTHC thuộc cấp của đơn vị có phương án đơn giản hóa",
    "copies_certified": "bản sao chứng thực điện tử từ đầu kỳ đến E",
}

SCORE_WORDS_VI = {
    "2.1": "20 × tỷ lệ", "3.3": "chưa tính điểm (cách chia điểm của nhóm chưa được công bố)",
    "3.6": "chưa tính điểm", "4.1": "min(6; 6 × tỷ lệ)", "4.2": "min(4; 4 × tỷ lệ)",
    "4.3": "min(2; 2 × tỷ lệ / 0,8)", "5.2": "6 × tỷ lệ; 6 khi không có phản ánh, kiến nghị",
    "5.3": "6 × tỷ lệ; 6 khi không nhận phản ánh, kiến nghị nào trong kỳ",
    "5.4": "min(6; 6 × tỷ lệ / 0,9); 0 khi kỳ không có hồ sơ",
}


def in_words(formula: str, lang: str = "vi") -> str:
    """The formula with each counter in words (Vietnamese, or the registry's English)."""
    if lang != "vi":
        return registry.in_words(formula)
    ts = registry.terms(formula)
    if len(ts) == 1:
        return COUNTER_VI[ts[0][1].name]
    return " ".join(f"({COUNTER_VI[c.name]})" if i == 0 else f"{sign} ({COUNTER_VI[c.name]})"
                    for i, (sign, c) in enumerate(ts))


def score_words(code: str, lang: str = "vi") -> str:
    return SCORE_WORDS_VI[code] if lang == "vi" else registry.INDICATOR[code].score_words
