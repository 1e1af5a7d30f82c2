"""Type casting: for each contract column, the SQL that types its trimmed text and the row rules that check it
(``invalid_date``, ``invalid_number``, ``invalid_bool``, ``unknown_code``, ``out_of_range``); the dossier fields the
national sync shape carries in nested JSON lists."""

from __future__ import annotations

from dataclasses import dataclass

from transforms.contracts import Column, code_is_numeric, code_lookup, source_header
from transforms.staging.formats import _lit, _q

@dataclass
class _Col:
    name: str
    expr: str                    # typed value, in terms of the trimmed text columns "__v_<raw column>"
    checks: list[tuple[str, str, str, str]]  # (rule, header, failing predicate, message); @T@ = typed, @V@ = text
    value: str                   # the offending text


def _v(col: str) -> str:
    """The trimmed text of a raw column (empty = NULL), computed once per row in the query's first layer."""
    return _q(f"__v_{col}")


def _code_expr(v: str, col: Column) -> str:
    """Code decoding with a fast path for the canonical code itself; a numeric code also as Excel writes it (4.0)
    or zero-padded (04); labels compare NFC, case-folded."""
    lookup = code_lookup(col.codes)
    numeric = code_is_numeric(col.codes)
    codes = sorted({str(c) for c in lookup.values()})
    key = f"lower(nfc_normalize(regexp_replace({v}, '\\s+', ' ', 'g')))"
    labels = " ".join(f"WHEN {_lit(k)} THEN {str(c) if numeric else _lit(c)}" for k, c in lookup.items())
    if numeric:
        fast = ", ".join(_lit(c) for c in codes)
        excel = ", ".join(f"{c}" for c in codes)
        return (f"CASE WHEN {v} IN ({fast}) THEN CAST({v} AS BIGINT) "
                f"WHEN regexp_matches({v}, '^\\d+(\\.0+)?$') AND CAST(TRY_CAST({v} AS DOUBLE) AS BIGINT) IN ({excel}) "
                f"THEN CAST(TRY_CAST({v} AS DOUBLE) AS BIGINT) "
                f"ELSE CAST(CASE {key} {labels} END AS BIGINT) END")
    fast = ", ".join(_lit(c) for c in codes)
    return f"CASE WHEN {v} IN ({fast}) THEN {v} ELSE CASE {key} {labels} END END"


def _column_sql(col: Column, entity: str, fmt: str, x_columns: set[str]) -> _Col:
    """Typed expression and row-rule predicates for one canonical column of a flat (or SQL) record."""
    v = _v(col.name)
    header = source_header(fmt, entity, col.name)
    checks: list[tuple[str, str, str, str]] = []
    t = col.type
    if t in ("string", "agency"):
        expr = v
    elif t == "timestamp":
        expr = f"tthc_ts({v})"
        checks.append(("invalid_date", header, "@V@ IS NOT NULL AND @T@ IS NULL",
                       "is not a valid date (expected dd/mm/yyyy [HH:MM[:SS]], yyyyMMddHHmmss or ISO 8601)"))
    elif t == "date":
        expr = f"CAST(tthc_ts({v}) AS DATE)"
        checks.append(("invalid_date", header, "@V@ IS NOT NULL AND @T@ IS NULL",
                       "is not a valid date (expected dd/mm/yyyy)"))
    elif t == "int":
        expr = f"CASE WHEN regexp_full_match({v}, '[0-9]+') THEN TRY_CAST({v} AS BIGINT) ELSE tthc_int({v}) END"
        checks.append(("invalid_number", header, "@V@ IS NOT NULL AND @T@ IS NULL", "is not a whole number"))
    elif t == "money":
        expr = f"CASE WHEN regexp_full_match({v}, '[0-9]+') THEN TRY_CAST({v} AS BIGINT) ELSE tthc_money({v}) END"
        checks.append(("invalid_number", header, "@V@ IS NOT NULL AND @T@ IS NULL",
                       "is not an amount in VND (expected 50000, 50.000, 50,000 or 50.000 đ)"))
    elif t == "bool":
        if col.name in x_columns:  # a column that marks yes with 'x': empty means no
            expr = f"CASE WHEN {v} IS NULL THEN false ELSE tthc_bool({v}) END"
        else:
            expr = f"tthc_bool({v})"
        checks.append(("invalid_bool", header, "@V@ IS NOT NULL AND @T@ IS NULL",
                       "is not yes/no (expected Có/Không, x/empty, 1/0, TRUE/FALSE)"))
    elif t == "code":
        expr = _code_expr(v, col)
        checks.append(("unknown_code", header, "@V@ IS NOT NULL AND @T@ IS NULL",
                       f"is not a code of the list '{col.codes}'"))
    elif t == "code_list":
        lookup = code_lookup(col.codes)
        labels = " ".join(f"WHEN {_lit(k)} THEN {_lit(c)}" for k, c in lookup.items())
        items = f"list_transform(string_split({v}, ';'), lambda x: CASE lower(nfc_normalize(trim(x))) {labels} END)"
        expr = f"CASE WHEN {v} IS NOT NULL THEN array_to_string(list_sort(list_distinct({items})), ';') END"
        checks.append(("unknown_code", header, f"@V@ IS NOT NULL AND len(list_filter({items}, lambda x: x IS NULL)) > 0",
                       f"holds a value outside the list '{col.codes}'"))
    else:
        raise ValueError(f"unsupported column type {t!r} for {col.name}")
    if col.default is not None and t in ("int", "code", "money"):
        expr = f"coalesce({expr}, {col.default})"
    if col.min is not None and t in ("int", "money"):
        checks.append(("out_of_range", header, f"@T@ < {col.min}", f"is below the minimum {col.min}"))
    return _Col(col.name, expr, checks, v)


def _sync_dossier_overrides(fmt: str) -> dict[str, _Col]:
    """Dossier fields that the national sync shape carries in nested lists (sources.md 1b)."""
    if fmt != "national_sync":
        return {}

    def hdr(c):
        return source_header(fmt, "dossiers", c)

    sup = _v("supplements_json")
    docs = _v("submitted_documents_json")
    fees = _v("fees_json")
    res = _v("result_documents_json")
    reqs_raw = f"from_json({sup}, '[{{\"NgayBoSung\":\"VARCHAR\",\"NgayTiepNhanBoSung\":\"VARCHAR\"}}]')"
    reqs = (f"list_transform({reqs_raw}, lambda x: struct_pack(requested_at := tthc_ts(NULLIF(trim(x.NgayBoSung), '')), "
            f"received_at := tthc_ts(NULLIF(trim(x.NgayTiepNhanBoSung), ''))))")
    # the latest request is the one with the greatest date, wherever it stands in the list (settled detail 1)
    latest = f"list_last(list_sort(list_filter({reqs}, lambda x: x.requested_at IS NOT NULL), 'ASC', 'NULLS FIRST'))"
    docs_l = (f"from_json({docs}, '[{{\"DuongDanTaiTepTin\":\"VARCHAR\",\"DuocTaiSuDung\":\"VARCHAR\","
              f"\"DuocLayTuKhoDMQG\":\"VARCHAR\"}}]')")
    fees_l = f"from_json({fees}, '[{{\"Gia\":\"VARCHAR\"}}]')"
    res_l = f"from_json({res}, '[{{\"DuongDanTepTinKetQua\":\"VARCHAR\"}}]')"
    flag = _v("has_digitized_components_flag")
    bad_json = lambda v, lst: f"{v} IS NOT NULL AND TRY({lst}) IS NULL"  # noqa: E731
    bad_dates = (f"{sup} IS NOT NULL AND len(list_filter({reqs_raw}, lambda x: (NULLIF(trim(x.NgayBoSung), '') IS NOT NULL "
                 f"AND tthc_ts(NULLIF(trim(x.NgayBoSung), '')) IS NULL) OR (NULLIF(trim(x.NgayTiepNhanBoSung), '') "
                 f"IS NOT NULL AND tthc_ts(NULLIF(trim(x.NgayTiepNhanBoSung), '')) IS NULL))) > 0")
    return {
        "supplement_requests": _Col("supplement_requests", f"CASE WHEN {sup} IS NULL THEN [] ELSE {reqs} END",
                                    [("invalid_json", hdr("supplements_json"), bad_json(sup, reqs_raw),
                                      "is not a list of supplement requests"),
                                     ("invalid_date", hdr("supplements_json"), bad_dates,
                                      "holds a date that is not valid")], sup),
        "supplement_count": _Col("supplement_count", f"coalesce(len({reqs_raw}), 0)", [], sup),
        "supplement_requested_at": _Col("supplement_requested_at", f"({latest}).requested_at", [], sup),
        "supplement_received_at": _Col("supplement_received_at", f"({latest}).received_at", [], sup),
        "has_digitized_components": _Col(
            "has_digitized_components",
            f"CASE WHEN {docs} IS NOT NULL THEN len(list_filter({docs_l}, lambda x: NULLIF(trim(x.DuongDanTaiTepTin), '') IS NOT NULL)) > 0 END",
            [("invalid_json", hdr("submitted_documents_json"), bad_json(docs, docs_l),
              "is not a list of submitted documents")], docs),
        "reused_digitized_data": _Col(
            "reused_digitized_data",
            f"CASE WHEN tthc_bool({flag}) THEN true WHEN {docs} IS NOT NULL THEN "
            f"len(list_filter({docs_l}, lambda x: tthc_bool(x.DuocTaiSuDung) OR tthc_bool(x.DuocLayTuKhoDMQG))) > 0 "
            f"WHEN {flag} IS NOT NULL THEN tthc_bool({flag}) END", [], docs),
        "has_e_result": _Col(
            "has_e_result",
            f"CASE WHEN {res} IS NOT NULL THEN len(list_filter({res_l}, lambda x: NULLIF(trim(x.DuongDanTepTinKetQua), '') IS NOT NULL)) > 0 END",
            [("invalid_json", hdr("result_documents_json"), bad_json(res, res_l),
              "is not a list of result documents")], res),
        "fee_vnd": _Col("fee_vnd",
                        f"CASE WHEN {fees} IS NOT NULL THEN CAST(coalesce(list_sum(list_transform({fees_l}, lambda x: tthc_money(NULLIF(trim(x.Gia), '')))), 0) AS BIGINT) END",
                        [("invalid_json", hdr("fees_json"), bad_json(fees, fees_l), "is not a list of fees"),
                         ("invalid_number", hdr("fees_json"),
                          f"{fees} IS NOT NULL AND len(list_filter({fees_l}, lambda x: NULLIF(trim(x.Gia), '') IS NOT NULL AND tthc_money(NULLIF(trim(x.Gia), '')) IS NULL)) > 0",
                          "holds a fee that is not an amount")], fees),
    }

