"""The marts' table names and keys, and their measures as SQL over the counters, all taken from the KPI registry
(transforms/kpis/registry.py: the only place a KPI, indicator or form 06 column is defined)."""

from __future__ import annotations

from pathlib import Path

from transforms.kpis import registry as kpis

MART_KPI = "mart_kpi__agency_period"
MART_766 = "mart_766__agency_period"
MART_F06 = "mart_tt01_form06__agency_period"
MARTS = (MART_KPI, MART_766, MART_F06)
KPI_KEYS = ["agency_code", "period_type", "period", "kpi_code"]
I766_KEYS = ["agency_code", "period_type", "period", "indicator_code"]
F06_KEYS = ["agency_code", "period_basis", "period_type", "period", "field_code", "field_name"]
KEYS = {MART_KPI: KPI_KEYS, MART_766: I766_KEYS, MART_F06: F06_KEYS}
DEFAULT_TARGETS = Path(__file__).resolve().parents[2] / "tthc" / "config" / "targets.csv"

# kpi_code -> (numerator, denominator) over the counters (denominator None: a count)
KPIS: list[tuple[str, str, str | None]] = [
    (k.code, kpis.sql(k.numerator), k.denominator and kpis.sql(k.denominator)) for k in kpis.KPIS]
# indicator -> (numerator, denominator, score over ratio (null when the denominator is 0) and denominator, max)
INDICATORS: list[tuple[str, str, str, str, str]] = [
    (i.code, kpis.sql(i.numerator), kpis.sql(i.denominator), i.score,
     "NULL" if i.max_score is None else str(i.max_score)) for i in kpis.INDICATORS]
F06_COLUMNS = [(f.code, kpis.sql(f.formula)) for f in kpis.FORM06]
DOSSIER_COUNTERS = [c.column for c in kpis.counters_of("dossier")]
FEEDBACK_COUNTERS = [c.column for c in kpis.counters_of("feedback")]
PROC_COUNTERS = [c.column for c in kpis.counters_of("procedure")]
ECERT_COUNTERS = [c.column for c in kpis.counters_of("e_certification")]
ALL_COUNTERS = DOSSIER_COUNTERS + FEEDBACK_COUNTERS + PROC_COUNTERS + ECERT_COUNTERS
