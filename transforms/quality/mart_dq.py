"""``mart_dq__agency_source_period``: what each agency's exports lack, per source, entity and month.

One row per (agency_code, source, entity, period = month of the record's ``updated_at``):
rows_received (= staged + quarantined), rows_staged, rows_quarantined, quarantined_rate, rule_shares (MAP rule ->
share of the rows received that broke it), and the completeness (share of staged rows with a value in the raw
export) of the flags the KPIs depend on: digitisation (has_digitized_components), electronic result
(has_e_result) and channel (Kênh thực hiện; staging fills an empty channel with 1, so completeness is read from
the raw row). A flag is complete when any raw column it is made from holds a value: the flat export's yes/no
column, or the national sync's document lists (``TaiLieuNop`` / ``DanhSachGiayToKetQua``; an empty list ``[]`` is a
known "no"). Quarantined rows carry raw text: their agency is the Mã đơn vị or the Mã hồ sơ prefix, their month
the parsed Ngày cập nhật (else the ingestion month).
"""

from __future__ import annotations

from pathlib import Path

from transforms.staging.formats import TS_FORMATS
from warehouse.store import copy_query_to_table, table_files, table_glob

TABLE = "mart_dq__agency_source_period"
ENTITIES = {"dossiers": "one_stop", "procedures": "dvc_portal", "payments": "dvc_portal", "ratings": "dvc_portal",
            "feedback": "dvc_portal", "e_certifications": "dvc_portal"}
# completeness column -> (staged column, the raw columns it is made from in any export format)
FLAGS = {"digitization_completeness": ("has_digitized_components",
                                       ("has_digitized_components", "submitted_documents_json")),
         "e_result_completeness": ("has_e_result", ("has_e_result", "result_documents_json")),
         "channel_completeness": ("channel", ("channel",))}


def _given(alias: str, columns: list[str]) -> str:
    """SQL: 1.0 when any of the raw ``columns`` holds a non-blank value, else 0.0."""
    values = ", ".join(f"nullif(trim({alias}.{c}::VARCHAR), '')" for c in columns)
    return f"CASE WHEN coalesce({values}) IS NOT NULL THEN 1.0 ELSE 0.0 END"


def _cols(con, glob: str) -> set[str]:
    return {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{glob}', union_by_name=true)"
                                      ).fetchall()}


def _agency_expr(cols: set[str]) -> str:
    parts = []
    if "agency_code" in cols:
        parts.append("nullif(trim(agency_code::VARCHAR), '')")
    if "dossier_id" in cols:
        parts.append("nullif(split_part(dossier_id::VARCHAR, '-', 1), '')")
    return f"coalesce({', '.join(parts)}, '(không rõ)')" if parts else "'(toàn bảng)'"


def build_sql(con, warehouse: Path) -> str | None:
    parts = []
    # a quarantined row's Ngày cập nhật is read with staging's formats: the month staging would have given it
    fmts = "[" + ", ".join(f"'{f}'" for f in TS_FORMATS) + "]"
    for entity, source in ENTITIES.items():
        stg, raw, quar = (f"{p}_{source}__{entity}" for p in ("stg", "raw", "quarantine"))
        if table_files(warehouse, stg):
            g = table_glob(warehouse, stg)
            cols = _cols(con, g)
            raw_ok = bool(table_files(warehouse, raw))
            rcols = _cols(con, table_glob(warehouse, raw)) if raw_ok else set()
            flag_sel = []
            use_raw = raw_ok and any(c in rcols for _, raw_cols in FLAGS.values() for c in raw_cols)
            for out, (col, raw_cols) in FLAGS.items():
                present = [c for c in raw_cols if c in rcols]
                if use_raw and present:
                    flag_sel.append(f"avg({_given('r', present)}) AS {out}")
                elif col in cols:
                    flag_sel.append(f"avg(CASE WHEN s.{col} IS NOT NULL THEN 1.0 ELSE 0.0 END) AS {out}")
                else:
                    flag_sel.append(f"CAST(NULL AS DOUBLE) AS {out}")
            rjoin = (f"LEFT JOIN read_parquet('{table_glob(warehouse, raw)}', union_by_name=true) r "
                     f"ON r._batch_id = s._batch_id AND r._source_row = s._source_row") if use_raw else ""
            tcol = next((c for c in ("updated_at", "rated_at") if c in cols), "_ingested_at")
            agency = _agency_expr(cols).replace("agency_code", "s.agency_code").replace("dossier_id", "s.dossier_id")
            parts.append(f"""SELECT {agency} AS agency_code, '{source}' AS source, '{entity}' AS entity,
                strftime(s.{tcol}, '%Y-%m') AS period, count(*) AS rows_staged, 0 AS rows_quarantined,
                NULL::VARCHAR AS rule, {', '.join(flag_sel)}
                FROM read_parquet('{g}', union_by_name=true) s {rjoin} GROUP BY ALL""")
        if table_files(warehouse, quar):
            g = table_glob(warehouse, quar)
            cols = _cols(con, g)
            qcol = next((c for c in ("updated_at", "rated_at") if c in cols), None)
            upd = (f"coalesce(try_strptime(trim({qcol}::VARCHAR), {fmts}), _ingested_at::TIMESTAMP)"
                   if qcol else "_ingested_at::TIMESTAMP")
            parts.append(f"""SELECT {_agency_expr(cols)} AS agency_code, '{source}' AS source, '{entity}' AS entity,
                strftime({upd}, '%Y-%m') AS period, 0 AS rows_staged, count(*) AS rows_quarantined,
                _rule AS rule
                FROM read_parquet('{g}', union_by_name=true) GROUP BY ALL""")
    if not parts:
        return None
    union = "\nUNION ALL BY NAME\n".join(f"({p})" for p in parts)
    return f"""
        WITH u AS ({union}),
        k AS (SELECT agency_code, source, entity, period, sum(rows_staged)::BIGINT AS rows_staged,
                     sum(rows_quarantined)::BIGINT AS rows_quarantined,
                     max(digitization_completeness) AS digitization_completeness,
                     max(e_result_completeness) AS e_result_completeness,
                     max(channel_completeness) AS channel_completeness
              FROM u GROUP BY ALL),
        r AS (SELECT agency_code, source, entity, period, rule, sum(rows_quarantined) AS n
              FROM u WHERE rule IS NOT NULL GROUP BY ALL)
        SELECT k.agency_code, k.source, k.entity, k.period, k.rows_staged + k.rows_quarantined AS rows_received,
               k.rows_staged, k.rows_quarantined,
               k.rows_quarantined / nullif(k.rows_staged + k.rows_quarantined, 0) AS quarantined_rate,
               coalesce((SELECT map(list(r.rule ORDER BY r.rule), list(r.n / (k.rows_staged + k.rows_quarantined)
                                ORDER BY r.rule))
                FROM r WHERE r.agency_code = k.agency_code AND r.source = k.source AND r.entity = k.entity
                      AND r.period IS NOT DISTINCT FROM k.period), MAP {{}}::MAP(VARCHAR, DOUBLE)) AS rule_shares,
               k.digitization_completeness, k.e_result_completeness, k.channel_completeness
        FROM k ORDER BY ALL"""


def build(warehouse: Path) -> Path | None:
    import duckdb

    warehouse = Path(warehouse)
    con = duckdb.connect()
    try:
        sql = build_sql(con, warehouse)
        if sql is None:
            return None
        return copy_query_to_table(con, sql, warehouse, TABLE)
    finally:
        con.close()
