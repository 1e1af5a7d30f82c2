"""The data-quality gate: contracts on every staged batch, batch-vs-history checks, reports.

Entry points (no Prefect here): ``gate.check_batch`` per staged batch, ``report.build_reports`` after the run,
``mart_dq.build`` for ``mart_dq__agency_source_period``. Great Expectations is imported lazily (gx_runner).
"""
