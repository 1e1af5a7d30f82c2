"""Every plan KPI, Decision 766 indicator and form 06 column, declared once.

A measure is a formula over named *counters*: ``numerator`` and ``denominator`` are written as readable counter
names joined by ``+`` and ``-`` (``"resolved_early + resolved_on_time + in_progress_within_time"``). A counter
names what it counts in words and the condition one (record, period) pair meets to be counted (the marts count
with it), over the columns of ``transforms.marts.dossier_pairs.classified_sql`` (dossiers: ``received_in_period``,
``resolved_in_period``, ``timeliness`` early / on_time / late / within_time / overdue, ...), of
``sql/feedback_pairs.sql`` (feedback items) or of the catalogue version in force at E (procedures); ``explain``
lists the records of the kinds in ``LISTED``. From this module:

- ``transforms.marts`` takes the counters' conditions, the SQL of the KPI, indicator and form 06 tables and what
  ``explain`` lists;
- ``tthc dictionary`` (docs/data_dictionary.md) and ``python -m transforms.kpis.rulebook`` (docs/kpis.md) take
  the labels, formulas in words, targets, units and rule references;
- ``expectations.build_suites`` takes the lists of codes and the maximum scores the mart contracts check.

The terms added in a formula count disjoint sets of records and the terms subtracted count subsets of them, so the
records behind a formula are those meeting one added condition and no subtracted one (``record_condition``);
tests/unit/kpis/test_registry.py checks this against the marts.

Rule references are the numbered sections of docs/kpis.md ("S9" = settled rule 9, or a section name).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# ---------------------------------------------------------------------------------------------------------------
# counters
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counter:
    name: str               # readable name, used in formulas
    column: str             # its column in the marts' aggregate tables
    records: str            # dossier, feedback, procedure or e_certification
    words: str              # what it counts, in words
    condition: str | None   # per (record, period) pair (SQL); None: not a count of records (a sum)


# a procedure with a publication decision dated by E and not Dừng công khai (unknown state: not stopped; S8)
_PUBLISHABLE = "publication_decision_date <= evaluation_date AND publication_state IS DISTINCT FROM 'stopped'"

COUNTERS: tuple[Counter, ...] = (
    # dossiers: the order is the order of the aggregate tables' columns
    Counter("population", "pop", "dossier",
            "dossiers in the population of P (received by E, not ended before P starts)", "true"),
    Counter("received", "recv", "dossier", "dossiers received in P", "received_in_period"),
    Counter("received_online", "recv_online", "dossier", "dossiers received in P online (channel 2)",
            "received_in_period AND online"),
    Counter("carried_over", "carried", "dossier", "dossiers received before P (carried over)",
            "NOT received_in_period"),
    Counter("resolved", "resolved", "dossier", "dossiers resolved in P (end date in [period_start, E])",
            "resolved_in_period"),
    Counter("resolved_early", "c_early", "dossier", "dossiers resolved in P before their due date",
            "timeliness = 'early'"),
    Counter("resolved_on_time", "c_on_time", "dossier",
            "dossiers resolved in P on their due date (or with no due date)", "timeliness = 'on_time'"),
    Counter("resolved_late", "c_late", "dossier", "dossiers resolved in P late", "timeliness = 'late'"),
    Counter("in_progress", "in_prog", "dossier", "dossiers of the population not resolved by E",
            "NOT resolved_in_period"),
    Counter("in_progress_within_time", "c_within", "dossier", "dossiers in progress at E within time",
            "timeliness = 'within_time'"),
    Counter("in_progress_overdue", "c_overdue", "dossier", "dossiers in progress at E overdue",
            "timeliness = 'overdue'"),
    Counter("received_digitized", "digit", "dossier", "dossiers received in P with digitised components",
            "received_in_period AND digitized"),
    Counter("received_reusing_data", "reuse", "dossier", "dossiers received in P reusing digitised data",
            "received_in_period AND reused_data"),
    Counter("resolved_paper_9_10", "eres_den", "dossier",
            "dossiers resolved in P with status 9 or 10 whose result is a paper document (unknown = paper)",
            "resolved_in_period AND status_9_or_10 AND paper_result"),
    Counter("resolved_paper_9_10_e_result", "eres_num", "dossier",
            "dossiers resolved in P with status 9 or 10, a paper result and an e-result",
            "resolved_in_period AND status_9_or_10 AND paper_result AND e_result"),
    Counter("received_with_fee", "fee_den", "dossier", "dossiers received in P with a fee above 0",
            "received_in_period AND has_fee"),
    Counter("received_with_fee_paid_online", "fee_num", "dossier",
            "dossiers received in P with a fee above 0 and a successful payment dated by E",
            "received_in_period AND has_fee AND coalesce(paid_date <= evaluation_date, false)"),
    Counter("dissatisfied", "dissat", "dossier",
            "dossiers of the population late or overdue, or whose rating at E is Không hài lòng, or with a linked "
            "feedback item received by E", "timeliness IN ('late', 'overdue') OR rated_dissatisfied "
            "OR coalesce(feedback_date <= evaluation_date, false)"),
    Counter("received_online_e_result_if_paper", "i33", "dossier",
            "dossiers received in P online and, for a paper-result procedure, with an e-result",
            "received_in_period AND online AND (NOT paper_result OR e_result)"),
    Counter("received_digitized_e_result_if_paper", "i42", "dossier",
            "dossiers received in P with digitised components and, when resolved in P with status 9 or 10 and a "
            "paper result, with an e-result", "received_in_period AND digitized "
            "AND NOT (resolved_in_period AND status_9_or_10 AND paper_result AND NOT e_result)"),
    # feedback items (deadline = 15 working days after the received date)
    Counter("feedback_population", "fb_pop", "feedback",
            "feedback items received by E and not answered before P starts", "true"),
    Counter("feedback_on_time", "fb_ontime", "feedback",
            "feedback items answered by E by the deadline, or open at E with E on or before the deadline",
            "(answered AND answered_date <= deadline_date) OR (NOT answered AND evaluation_date <= deadline_date)"),
    Counter("feedback_received", "fb_recv", "feedback", "feedback items received in P", "received_in_period"),
    Counter("feedback_unsatisfied", "fb_unsat", "feedback",
            "feedback items received in P with more dislikes than likes, a re-complaint, or late at E",
            "received_in_period AND (dislikes > likes OR is_re_complaint "
            "OR (answered AND answered_date > deadline_date) OR (NOT answered AND evaluation_date > deadline_date))"),
    # procedures of the agency's level in the catalogue in force at E (settled rule 8)
    Counter("procedures_publishable", "pr_pub_den", "procedure",
            "procedures with a publication decision dated by E and not Dừng công khai", _PUBLISHABLE),
    Counter("procedures_published", "pr_pub_num", "procedure",
            "procedures with a publication decision dated by E that are Đang công khai",
            f"{_PUBLISHABLE} AND publication_state = 'published'"),
    Counter("procedures_with_sample", "pr_sample_num", "procedure",
            "procedures with a publication decision dated by E, not Dừng công khai, with a sample dossier",
            f"{_PUBLISHABLE} AND has_sample_dossier"),
    Counter("procedures_online_eligible", "pr_onl_den", "procedure", "procedures eligible for online service",
            "is_online_eligible"),
    Counter("procedures_online_offered", "pr_onl_num", "procedure",
            "procedures eligible for online service and offered at level 3 or 4",
            "is_online_eligible AND online_level IN (3, 4)"),
    Counter("procedures_full_online_eligible", "pr_full_den", "procedure",
            "procedures eligible for full online service (toàn trình)", "is_full_online_eligible"),
    Counter("procedures_full_online_offered", "pr_full_num", "procedure",
            "procedures eligible for full online service and offered at level 4",
            "is_full_online_eligible AND online_level = 4"),
    Counter("procedures_of_level", "pr_simp_den", "procedure", "procedures of the agency's level", "true"),
    Counter("procedures_simplified", "pr_simp_num", "procedure",
            "procedures of the agency's level with a simplification plan", "has_simplification_plan"),
    # e-certifications
    Counter("copies_certified", "ecert_copies", "e_certification", "copies certified in [period_start, E]", None),
)
COUNTER = {c.name: c for c in COUNTERS}
LISTED = ("dossier", "feedback")  # the record kinds explain lists record by record


def counters_of(records: str) -> list[Counter]:
    return [c for c in COUNTERS if c.records == records]


# ---------------------------------------------------------------------------------------------------------------
# formulas over counters
# ---------------------------------------------------------------------------------------------------------------
_TERM = re.compile(r"\s*([+-])?\s*([a-z0-9_]+)\s*")


def terms(formula: str) -> list[tuple[str, Counter]]:
    """``[(sign, counter), ...]`` of a formula such as ``"population - dissatisfied"``."""
    out, pos = [], 0
    while pos < len(formula):
        m = _TERM.match(formula, pos)
        if not m or (out and not m.group(1)) or (not out and m.group(1) == "-"):
            raise ValueError(f"formula {formula!r}: expected counter names joined by + and - at {pos}")
        if m.group(2) not in COUNTER:
            raise ValueError(f"formula {formula!r}: unknown counter {m.group(2)!r}")
        out.append((m.group(1) or "+", COUNTER[m.group(2)]))
        pos = m.end()
    if not out:
        raise ValueError("empty formula")
    return out


def sql(formula: str) -> str:
    """The formula over the aggregate columns (``"c_early + c_on_time + c_within"``)."""
    parts = []
    for i, (sign, c) in enumerate(terms(formula)):
        parts.append(c.column if i == 0 else f"{sign} {c.column}")
    return " ".join(parts)


def in_words(formula: str) -> str:
    """The formula with each counter in words."""
    ts = terms(formula)
    if len(ts) == 1:
        return ts[0][1].words
    return " ".join(f"({c.words})" if i == 0 else f"{sign} ({c.words})" for i, (sign, c) in enumerate(ts))


def record_condition(formula: str) -> str | None:
    """The condition a (record, period) pair meets to be counted by the formula: one added counter's condition and
    no subtracted one's; None when a counter is not listed record by record (``LISTED``)."""
    ts = terms(formula)
    if any(c.condition is None or c.records not in LISTED for _, c in ts):
        return None
    plus = [c.condition for s, c in ts if s == "+"]
    minus = [c.condition for s, c in ts if s == "-"]
    cond = plus[0] if len(plus) == 1 else " OR ".join(f"({p})" for p in plus)
    for m in minus:
        cond = f"({cond}) AND NOT ({m})"
    return cond


def records_of(*formulas: str | None) -> str | None:
    """The one kind of record every counter of the formulas counts (None when they mix kinds or it is not a kind
    explain lists, ``LISTED``)."""
    kinds = {c.records for f in formulas if f for _, c in terms(f)}
    ok = all(record_condition(f) is not None for f in formulas if f)
    return kinds.pop() if ok and len(kinds) == 1 and kinds <= set(LISTED) else None


# ---------------------------------------------------------------------------------------------------------------
# plan KPIs (mart_kpi__agency_period)
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Kpi:
    code: str
    vi: str
    en: str
    numerator: str
    denominator: str | None     # None: a count, value = numerator
    target: str                 # how the target is found: "file" (targets file, by kpi_code) or "previous_year"
    unit: str                   # rate or count
    rules: tuple[str, ...] = ()
    note: str = ""              # what the formula alone does not say

    @property
    def display(self) -> str:
        """Display format (Python format spec) of the value."""
        return "{:.1%}" if self.unit == "rate" else "{:,.0f}"

    @property
    def explain_records(self) -> str | None:
        return records_of(self.numerator, self.denominator) if self.denominator else None


KPIS: tuple[Kpi, ...] = (
    Kpi("on_time_rate", "Tỷ lệ hồ sơ giải quyết đúng hạn", "On-time rate",
        "resolved_early + resolved_on_time + in_progress_within_time", "population", "file", "rate",
        ("Timeliness", "S2", "S4", "S5")),
    Kpi("online_rate", "Tỷ lệ hồ sơ trực tuyến", "Online filing rate", "received_online", "received", "file",
        "rate"),
    Kpi("digitization_rate", "Tỷ lệ hồ sơ được số hóa", "Digitisation rate", "received_digitized", "received",
        "file", "rate", (), "an unknown flag counts as no"),
    Kpi("reuse_rate", "Tỷ lệ tái sử dụng dữ liệu số hóa", "Reuse rate", "received_reusing_data", "received",
        "file", "rate", (), "an unknown flag counts as no"),
    Kpi("e_result_rate", "Tỷ lệ cấp kết quả điện tử", "E-result rate", "resolved_paper_9_10_e_result",
        "resolved_paper_9_10", "file", "rate", ("S12",)),
    Kpi("online_payment_rate", "Tỷ lệ thanh toán trực tuyến", "Online payment rate",
        "received_with_fee_paid_online", "received_with_fee", "file", "rate", ("S6",)),
    Kpi("satisfaction_rate", "Tỷ lệ hài lòng", "Satisfaction rate", "population - dissatisfied", "population",
        "file", "rate", ("S6", "S17")),
    Kpi("feedback_on_time_rate", "Tỷ lệ PAKN xử lý đúng hạn", "Feedback on-time rate", "feedback_on_time",
        "feedback_population", "file", "rate", ("S7",)),
    Kpi("feedback_satisfaction_rate", "Tỷ lệ hài lòng về xử lý PAKN", "Feedback satisfaction",
        "feedback_received - feedback_unsatisfied", "feedback_received", "file", "rate", ("S7",)),
    Kpi("procedures_published_rate", "Tỷ lệ TTHC được công khai", "Procedures published",
        "procedures_published", "procedures_publishable", "file", "rate", ("S8",),
        "an unknown publication state is in the denominator and not published"),
    Kpi("procedures_sample_dossier_rate", "Tỷ lệ TTHC có hồ sơ mẫu", "Procedures with a sample dossier",
        "procedures_with_sample", "procedures_publishable", "file", "rate", ("S8",)),
    Kpi("procedures_online_rate", "Tỷ lệ TTHC cung cấp DVCTT", "Procedures online", "procedures_online_offered",
        "procedures_online_eligible", "file", "rate", ("S8",)),
    Kpi("procedures_full_online_rate", "Tỷ lệ TTHC cung cấp DVCTT toàn trình", "Procedures full online",
        "procedures_full_online_offered", "procedures_full_online_eligible", "file", "rate", ("S8",)),
    Kpi("procedures_simplified_rate", "Tỷ lệ TTHC có phương án đơn giản hóa", "Procedures simplified",
        "procedures_simplified", "procedures_of_level", "file", "rate", ("S8",)),
    Kpi("e_certified_copies", "Số bản sao chứng thực điện tử", "E-certified copies", "copies_certified", None,
        "previous_year", "count", ("S9", "S11")),
)
KPI = {k.code: k for k in KPIS}


# ---------------------------------------------------------------------------------------------------------------
# Decision 766 indicators (mart_766__agency_period), calendar periods only
# ---------------------------------------------------------------------------------------------------------------
GROUPS = {
    "1": ("Công khai, minh bạch", "Transparency", 18),
    "2": ("Tiến độ giải quyết", "Timeliness", 20),
    "3": ("Dịch vụ công trực tuyến", "Online service", 22),
    "4": ("Số hóa hồ sơ", "Digitisation", 22),
    "5": ("Mức độ hài lòng", "Satisfaction", 18),
}
# how the national portal shows a group in parts (group 3: online service 12 + online payment 10 points), and
# which indicators fall in each part: group -> ((vi, en, max points, indicator codes), ...)
GROUP_PARTS = {
    "3": (("Cung cấp dịch vụ công trực tuyến", "Online service", 12, ("3.3",)),
          ("Thanh toán trực tuyến", "Online payment", 10, ("3.6",))),
}
# why an indicator has no settled score (Indicator.score is "NULL"): code -> (vi, en)
NO_SCORE_WHY = {
    "3.3": ("cách chia điểm của nhóm chưa được công bố", "how the group's points split is not public"),
    "3.6": ("cách tính điểm chưa được công bố", "how its points are computed is not public"),
}


@dataclass(frozen=True)
class Indicator:
    code: str
    vi: str
    en: str
    numerator: str
    denominator: str
    score: str                  # SQL over ratio (null when denominator = 0) and denominator; "NULL": no score
    score_words: str
    max_score: int | None
    same_as: str | None = None  # the plan KPI with the same ratio
    rules: tuple[str, ...] = ()

    @property
    def group(self) -> str:
        return self.code.split(".")[0]

    @property
    def explain_records(self) -> str | None:
        return records_of(self.numerator, self.denominator)


def _same(kpi: str) -> dict:
    return {"numerator": KPI[kpi].numerator, "denominator": KPI[kpi].denominator, "same_as": kpi}


INDICATORS: tuple[Indicator, ...] = (
    Indicator("2.1", "Giải quyết đúng hạn", "On time", **_same("on_time_rate"), score="20 * ratio",
              score_words="20 × ratio", max_score=20, rules=("S13",)),
    Indicator("3.3", "Hồ sơ trực tuyến (kèm kết quả điện tử với TTHC kết quả giấy)", "Online dossiers",
              "received_online_e_result_if_paper", "received", "NULL",
              "none (how the group's points split is not public)", None, rules=("S12",)),
    Indicator("3.6", "Thanh toán trực tuyến", "Online payment", **_same("online_payment_rate"), score="NULL",
              score_words="none", max_score=None),
    Indicator("4.1", "Cấp kết quả điện tử", "E-results", **_same("e_result_rate"), score="least(6, 6 * ratio)",
              score_words="min(6, 6 × ratio)", max_score=6, rules=("S13",)),
    Indicator("4.2", "Số hóa hồ sơ", "Digitisation", "received_digitized_e_result_if_paper", "received",
              "least(4, 4 * ratio)", "min(4, 4 × ratio)", 4, rules=("S12", "S13")),
    Indicator("4.3", "Tái sử dụng dữ liệu", "Reuse", **_same("reuse_rate"), score="least(2, 2 * ratio / 0.8)",
              score_words="min(2, 2 × ratio / 0.8)", max_score=2, rules=("S13",)),
    Indicator("5.2", "PAKN đúng hạn", "Feedback on time", **_same("feedback_on_time_rate"),
              score="CASE WHEN denominator = 0 THEN 6 ELSE 6 * ratio END",
              score_words="6 × ratio; 6 when there is no feedback", max_score=6, rules=("S7", "S13")),
    Indicator("5.3", "Hài lòng về PAKN", "Feedback satisfaction", **_same("feedback_satisfaction_rate"),
              score="CASE WHEN denominator = 0 THEN 6 ELSE 6 * ratio END",
              score_words="6 × ratio; 6 when no feedback was received in P", max_score=6, rules=("S7", "S13")),
    Indicator("5.4", "Mức độ hài lòng", "Satisfaction", **_same("satisfaction_rate"),
              score="CASE WHEN denominator = 0 THEN 0 ELSE least(6, 6 * ratio / 0.9) END",
              score_words="min(6, 6 × ratio / 0.9); 0 when the population is empty", max_score=6, rules=("S13",)),
)
INDICATOR = {i.code: i for i in INDICATORS}


# ---------------------------------------------------------------------------------------------------------------
# Circular 01/2020 form 06 (mart_tt01_form06__agency_period): one column per counter (or formula)
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FormColumn:
    code: str
    vi: str
    en: str
    formula: str

    @property
    def explain_records(self) -> str | None:
        return records_of(self.formula)


FORM06: tuple[FormColumn, ...] = (
    FormColumn("c03_received_total", "Tổng số hồ sơ tiếp nhận, xử lý trong kỳ", "Population", "population"),
    FormColumn("c04_received_online", "Số mới tiếp nhận trực tuyến", "Received in P online", "received_online"),
    FormColumn("c05_received_direct_postal", "Số mới tiếp nhận trực tiếp hoặc qua bưu chính",
               "Received in P in person or by post", "received - received_online"),
    FormColumn("c06_carried_over", "Số từ kỳ trước chuyển qua", "Carried over", "carried_over"),
    FormColumn("c07_resolved_total", "Số hồ sơ đã giải quyết", "Resolved in P", "resolved"),
    FormColumn("c08_resolved_early", "Giải quyết trước hạn", "Resolved early", "resolved_early"),
    FormColumn("c09_resolved_on_time", "Giải quyết đúng hạn", "Resolved on time", "resolved_on_time"),
    FormColumn("c10_resolved_late", "Giải quyết quá hạn", "Resolved late", "resolved_late"),
    FormColumn("c11_in_progress_total", "Số hồ sơ đang giải quyết", "In progress at E", "in_progress"),
    FormColumn("c12_in_progress_within_time", "Đang giải quyết trong hạn", "In progress within time",
               "in_progress_within_time"),
    FormColumn("c13_in_progress_overdue", "Đang giải quyết quá hạn", "In progress overdue", "in_progress_overdue"),
)
FORM06_COLUMN = {f.code: f for f in FORM06}
# checked on every build (transforms.marts.check_form06) and by the mart contract
FORM06_IDENTITIES = ("c03 = c04 + c05 + c06", "c03 = c07 + c11", "c07 = c08 + c09 + c10", "c11 = c12 + c13")


def explainable() -> dict[str, tuple[str, str, str]]:
    """code -> (record kind, numerator condition, denominator condition) of every KPI, indicator and form 06
    column ``explain`` can list (a form 06 column's denominator is the population)."""
    out = {}
    for m in (*KPIS, *INDICATORS):
        kind = m.explain_records
        if kind:
            out[m.code] = (kind, record_condition(m.numerator), record_condition(m.denominator))
    for f in FORM06:
        kind = f.explain_records
        if kind:
            out[f.code] = (kind, record_condition(f.formula), "true")
    return out
