"""Result types of the gate."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class CheckResult:
    name: str                      # stable rule name, e.g. "not_null:dossier_id", "volume:H19.26293"
    severity: str                  # critical | warning
    success: bool
    unexpected_count: int = 0
    unexpected_percent: float = 0.0
    examples: list[str] = field(default_factory=list)   # ids and source rows only, never personal data
    message: str = ""             # plain words: file, rule, count
    expectation_type: str = ""
    element_count: int = 0
    kind: str = "row_rule"        # row_rule | batch_rule | history
    table: str = ""
    batch_id: str = ""
    source_file: str = ""
    agency_code: str | None = None
    observed: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class GateResult:
    table: str
    batch_id: str
    source_file: str
    rows: int
    results: list[CheckResult]
    gx_seconds: float = 0.0
    duckdb_seconds: float = 0.0
    set_aside: dict[str, Any] = field(default_factory=dict)  # rows the gate moved to quarantine (setaside.SetAside)

    @property
    def criticals(self) -> list[CheckResult]:
        return [r for r in self.results if not r.success and r.severity == "critical"]

    @property
    def warnings(self) -> list[CheckResult]:
        return [r for r in self.results if not r.success and r.severity == "warning"]

    @property
    def passed(self) -> bool:
        return not self.criticals

    def summary_line(self) -> str:
        if self.passed and not self.warnings:
            return f"{self.table} {self.source_file} ({self.batch_id}): {self.rows} rows, all checks passed"
        head = "REJECTED" if not self.passed else "passed with warnings"
        parts = [r.message for r in self.criticals + self.warnings]
        return f"{self.table} {self.source_file} ({self.batch_id}): {head}; " + "; ".join(parts)

    def to_dict(self) -> dict:
        return {"table": self.table, "batch_id": self.batch_id, "source_file": self.source_file,
                "rows": self.rows, "passed": self.passed, "set_aside": dict(self.set_aside),
                "results": [r.to_dict() for r in self.results]}
