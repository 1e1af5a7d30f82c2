"""The staging SQL of one raw batch: every row rule in order (the first one a row breaks is recorded), the typed
rows that break none, and the quarantined ones as text with their rule, column, value and message."""

from __future__ import annotations

from transforms.contracts import Contract, contract, source_header, stg_table
from transforms.readers.json_reader import MALFORMED_KEY  # the text of a line that is no JSON object, in _extra
from transforms.staging.columns import _Col, _column_sql, _sync_dossier_overrides, _v
from transforms.staging.formats import _lit, _q
from transforms.staging.text import CONTROL_CHARS, TRIMMED, control_columns, raw_columns

LINEAGE = ["_batch_id", "_source_file", "_source_row", "_source_line", "_ingested_at", "_format"]
STG_LINEAGE = ["_batch_id", "_source_file", "_source_row", "_ingested_at", "_format"]
STG_CONSTANT = ["_batch_id", "_source_file", "_ingested_at", "_format"]  # one value per batch

Rule = tuple[str, str, str, str, str]  # rule, header, failing predicate, offending value, message


def _t(name: str) -> str:
    """The typed value of a contract column, computed once per row in the query's second layer."""
    return _q(f"__t_{name}")


def _typed_columns(c: Contract, entity: str, fmt: str, x_columns: set[str], agencies_relation: str) -> list[_Col]:
    """Every contract column's typing and checks; an agency column takes the Mã hồ sơ prefix when absent
    (sources.md) and must be listed in agencies.csv (settled detail 16)."""
    overrides = _sync_dossier_overrides(fmt) if entity == "dossiers" else {}
    cols: list[_Col] = []
    for col in c.columns:
        if col.name in overrides:
            cols.append(overrides[col.name])
        elif col.type == "supplement_list":
            cols.append(_Col(col.name, "NULL::STRUCT(requested_at TIMESTAMP, received_at TIMESTAMP)[]", [], "NULL"))
        else:
            cols.append(_column_sql(col, entity, fmt, x_columns))
    by_name = {x.name: x for x in cols}
    for col in c.columns:
        if col.type != "agency":
            continue
        x = by_name[col.name]
        if col.fallback == "dossier_id_prefix":
            x.expr = f"coalesce({x.expr}, NULLIF(split_part({_v('dossier_id')}, '-', 1), ''))"
        x.checks.append(("unknown_agency", source_header(fmt, entity, col.name),
                         f"@T@ IS NOT NULL AND @T@ NOT IN (SELECT agency_code FROM {agencies_relation})",
                         "is not an agency listed in agencies.csv"))
    return cols


def _damage_rules(entity: str, fmt: str, control_characters: bool) -> list[Rule]:
    """First a line the reader could not parse (JSONL cut in half: its columns are empty, say why), then a control
    character (the value around it cannot be trusted, whatever it looks like)."""
    malformed = f"json_extract_string({_q('_extra')}, '$.{MALFORMED_KEY}')"
    rules: list[Rule] = [("malformed_json", "(the whole line)",
                          f"{_q('_extra')} IS NOT NULL AND contains({_q('_extra')}, {_lit(MALFORMED_KEY)}) "
                          f"AND {malformed} IS NOT NULL", malformed,
                          "is not a JSON object (the line is cut or damaged): nothing of it can be read")]
    for rc in control_columns(entity, fmt) if control_characters else []:
        rules.append(("control_character", source_header(fmt, entity, rc),
                      f"regexp_matches({_q(rc)}, {_lit(CONTROL_CHARS)})", _q(rc),
                      "holds a control character (NUL, BEL, ESC or another below space other than tab and line "
                      "breaks): the export is damaged there"))
    return rules


def _value_rules(c: Contract, by_name: dict[str, _Col], entity: str, fmt: str) -> list[Rule]:
    """The required values, then each column's own checks, in contract order."""
    rules: list[Rule] = []
    for col in c.columns:
        x = by_name[col.name]
        header = source_header(fmt, entity, col.name)
        if col.required:
            rules.append(("required", header, f"{_t(col.name)} IS NULL AND {x.value} IS NULL", x.value,
                          "is empty but required"))
        if col.required_unless:
            (ucol, vals), = col.required_unless.items()
            inlist = ", ".join(str(v) for v in vals)
            rules.append(("required_if_received", header,
                          f"{x.value} IS NULL AND coalesce({_t(ucol)} NOT IN ({inlist}), true)",
                          x.value, f"is empty but required unless status is {inlist}"))
    agency_cols = {col.name for col in c.columns if col.type == "agency"}
    for col in c.columns:
        x = by_name[col.name]
        for rule, header, pred, msg in x.checks:
            pred = pred.replace("@T@", _t(col.name)).replace("@V@", x.value)
            # an agency taken from the Mã hồ sơ prefix is reported as the value that was checked
            value = _t(col.name) if (rule == "unknown_agency" and col.name in agency_cols) else x.value
            rules.append((rule, header, pred, value, msg))
    return rules


def _output_columns(c: Contract, with_pseudonyms: bool) -> list[str]:
    """The staged columns: typed values, personal data dropped or replaced by its keyed pseudonym."""
    out = []
    for col in c.columns:
        if col.pii == "drop":
            continue
        if col.pii == "pseudonym":
            if with_pseudonyms:
                out.append(f"tthc_hmac(regexp_replace({_t(col.name)}, '\\s', '', 'g')) AS {_q(col.pseudonym)}")
            else:
                out.append(f"NULL::VARCHAR AS {_q(col.pseudonym)}")
            continue
        out.append(f"{_t(col.name)} AS {_q(col.name)}")
    return out


def _layers(cols: list[_Col], raw_cols: list[str], rules_sql: str, out_exprs: list[str],
            pretrimmed: bool) -> tuple[str, str]:
    """(trimmed text layer, typed layer) with only what is read: the typed values the output, a rule or another
    typed value uses, and the raw columns those (or a rule or a quarantine value) read. A dropped personal column
    is then neither typed nor trimmed."""
    reads = " ".join((rules_sql, *out_exprs))
    typed = [x for x in cols if _t(x.name) in reads]
    while more := [x for x in cols if x not in typed and any(_t(x.name) in y.expr for y in typed)]:
        typed += more
    typed = [x for x in cols if x in typed] or cols[:1]
    layer_t = ", ".join(f"{x.expr} AS {_t(x.name)}" for x in typed)
    reads = " ".join((layer_t, rules_sql))
    used = [rc for rc in raw_cols if _v(rc) in reads] or raw_cols[:1]
    if pretrimmed:
        layer_v = ", ".join(f"NULLIF({_q(TRIMMED + rc)}, '') AS {_v(rc)}" for rc in used)
    else:
        layer_v = ", ".join(f"NULLIF(trim({_q(rc)}), '') AS {_v(rc)}" for rc in used)
    return layer_v, layer_t


def staging_select(source: str, entity: str, fmt: str, raw_relation: str, agencies_relation: str,
                   x_columns: set[str] = frozenset(), with_pseudonyms: bool = True,
                   staged_relation: str | None = None, pretrimmed: bool = False,
                   constant_lineage: bool = True, control_characters: bool = True) -> tuple[str, str]:
    """SQL for (staged rows, quarantined rows) of one raw batch.

    Three layers, each value computed once per row: ``__v_<col>`` the trimmed text of every raw column,
    ``__t_<col>`` the typed value of every contract column, ``__rule`` the index of the first row rule broken.
    With ``staged_relation`` (the staged file already written), the quarantine query looks only at the rows
    missing from it, so a clean file is typed once, not twice. With ``pretrimmed``, the relation also holds
    ``__s_<col>``, each raw column already trimmed as DuckDB's ``trim`` would (``trim_for_staging``), and those
    are used instead of trimming in SQL; the raw columns themselves stay as they were for quarantine. Without
    ``constant_lineage``, the staged rows carry ``_source_row`` only and the caller adds the lineage values that
    are the same on every row of a batch (``STG_CONSTANT``), cheaper in Arrow than through DuckDB. Without
    ``control_characters``, the SQL leaves out the ``control_character`` rules (for a chunk known to hold none).
    """
    c = contract(stg_table(source, entity))
    cols = _typed_columns(c, entity, fmt, x_columns, agencies_relation)
    ordered = _damage_rules(entity, fmt, control_characters) + _value_rules(c, {x.name: x for x in cols},
                                                                             entity, fmt)
    raw_cols = raw_columns(entity)
    rule_idx = "CASE " + " ".join(f"WHEN {p} THEN {i}" for i, (_r, _h, p, _v2, _m) in enumerate(ordered, 1)) + " END"
    values = "CASE __rule " + " ".join(f"WHEN {i} THEN CAST({v} AS VARCHAR)"
                                       for i, (_r, _h, _p, v, _m) in enumerate(ordered, 1)) + " END"
    out_exprs = _output_columns(c, with_pseudonyms)
    layer_v, layer_t = _layers(cols, raw_cols, " ".join((rule_idx, values)), out_exprs, pretrimmed)

    def ruled(where: str = "") -> str:
        return (f"(SELECT *, {rule_idx} AS __rule FROM (SELECT *, {layer_t} FROM "
                f"(SELECT *, {layer_v} FROM {raw_relation} {where})))")

    lineage = ", ".join(_q(n) for n in STG_LINEAGE if constant_lineage or n not in STG_CONSTANT)
    staged = f"SELECT {', '.join(out_exprs)}, {lineage} FROM {ruled()} WHERE __rule IS NULL"
    raw_out = ", ".join(_q(n) for n in raw_cols + ["_extra"] + LINEAGE)
    where = (f"WHERE _source_row NOT IN (SELECT _source_row FROM {staged_relation})" if staged_relation else "")
    names, headers, messages = (("[" + ", ".join(_lit(r[i]) for r in ordered) + "]") for i in (0, 1, 4))
    quarantined = (f"SELECT {raw_out}, {names}[__rule] AS _rule, {headers}[__rule] AS _column, "
                   f"{values} AS _value, {messages}[__rule] AS _message FROM {ruled(where)} "
                   f"WHERE __rule IS NOT NULL ORDER BY _source_row")
    return staged, quarantined
