"""mart_tt01_form06__agency_period: Circular 01/2020 form 06 by agency, period (both bases) and field, and the
form's identities, checked before anything is published."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from transforms.kpis import registry as kpis
from transforms.marts.names import F06_COLUMNS, F06_KEYS


class FormIdentityError(ValueError):
    """Form 06 rows break one of the form's identities (``FORM06_IDENTITIES`` in the KPI registry)."""


def form06_table(con) -> pa.Table:
    """The mart's rows of the selected periods: fields with a population, from ``field_counts``."""
    cols = ", ".join(f"({expr})::BIGINT AS {name}" for name, expr in F06_COLUMNS)
    sql = f"""
        SELECT x.agency_code, p.basis AS period_basis, p.period_type, p.period, p.period_start, p.period_end,
               x.field_code, x.field_name, {cols}
        FROM field_counts x JOIN periods p ON p.period_id = x.period_id AND p.selected
        WHERE x.pop > 0
    """
    return con.sql(sql).to_arrow_table()


def _identities(t: pa.Table) -> dict[str, pa.ChunkedArray]:
    """identity -> whether each row holds it, for the registry's ``FORM06_IDENTITIES`` ("c03 = c07 + c11")."""
    column = {f.code.split("_")[0]: f.code for f in kpis.FORM06}
    out = {}
    for identity in kpis.FORM06_IDENTITIES:
        left, right = (side.split("+") for side in identity.split("="))
        total = t.column(column[right[0].strip()])
        for term in right[1:]:
            total = pc.add(total, t.column(column[term.strip()]))
        out[identity] = pc.equal(t.column(column[left[0].strip()]), total)
    return out


def check_form06(t: pa.Table) -> None:
    """Raise FormIdentityError when any row breaks the form's identities (nothing is published then)."""
    bad = []
    for name, ok in _identities(t).items():
        # a NULL side breaks the identity too (not pc.fill_null: it imports pandas, 0.2 s of every build)
        broken = pc.or_kleene(pc.invert(ok), pc.is_null(ok))
        n = pc.sum(broken).as_py() or 0
        if n:
            first = t.filter(broken).slice(0, 3).select(F06_KEYS).to_pylist()
            bad.append(f"{name}: {n} rows, e.g. {first}")
    if bad:
        raise FormIdentityError("form 06 identities broken, nothing published: " + "; ".join(bad))
