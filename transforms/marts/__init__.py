"""Core -> marts: the plan KPIs, Decision 766 indicators and Circular 01/2020 form 06 of docs/kpis.md, built from
the KPI registry (transforms/kpis/registry.py), and ``explain``, the records behind a measure.

The steps, one module each:

- ``scope``: core tables, agencies, periods (both bases, every type), the owner a record counts for (rule 9) and
  roll-ups (settled detail 10); ``changed_periods``;
- ``dossier_pairs``: dossiers by period the plain way, classified pair by pair (what explain lists, the reference
  count); ``dossier_counters``: the same counters the fast way (``dossier_counts``);
- ``feedback_catalogue``: feedback, e-certification and procedure counters;
- ``build``: the counters moved to the agency they count for and rolled up, then the marts' rows:
  ``mart_kpi`` (with targets), ``mart_766``, ``form06`` (with its identities);
- ``publish``: one generation for the three marts; ``explanation``: ``explain``.

``names`` holds the marts' names, keys and measures (SQL from the registry); ``queries`` reads ``sql/*.sql``.
"""

from transforms.marts.build import build_marts, compute_marts
from transforms.marts.dossier_counters import count_dossiers
from transforms.marts.dossier_pairs import classified_sql, load_dossier_rows, pairs_reference_agg
from transforms.marts.explanation import EXPLAIN, explain
from transforms.marts.form06 import FormIdentityError, check_form06
from transforms.marts.names import (ALL_COUNTERS, DEFAULT_TARGETS, DOSSIER_COUNTERS, F06_COLUMNS, F06_KEYS,
                                    FEEDBACK_COUNTERS, I766_KEYS, INDICATORS, KPI_KEYS, KPIS, MART_766, MART_F06,
                                    MART_KPI, MARTS, PROC_COUNTERS)
from transforms.marts.publish import built_from, marts_as_of, publish_marts
from transforms.marts.scope import bases_sql, changed_periods, core_table, load_agencies, load_periods

__all__ = [
    "ALL_COUNTERS", "DEFAULT_TARGETS", "DOSSIER_COUNTERS", "EXPLAIN", "F06_COLUMNS", "F06_KEYS", "FEEDBACK_COUNTERS",
    "I766_KEYS", "INDICATORS", "KPIS", "KPI_KEYS", "MARTS", "MART_766", "MART_F06", "MART_KPI", "PROC_COUNTERS",
    "FormIdentityError", "bases_sql", "build_marts", "built_from", "changed_periods", "check_form06",
    "classified_sql", "compute_marts", "core_table", "count_dossiers", "explain", "load_agencies",
    "load_dossier_rows", "load_periods", "marts_as_of", "pairs_reference_agg", "publish_marts",
]
