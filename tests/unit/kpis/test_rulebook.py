"""The rule book docs/kpis.md: committed as the generator writes it, every rule pinned by tests that exist, every
settled rule the code cites written down, and no product file pointing outside the repository."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from transforms.kpis import registry as reg
from transforms.kpis.rulebook import RULEBOOK, main, render
from transforms.kpis.rules import RULES, SETTLED

ROOT = Path(__file__).resolve().parents[3]


def test_committed_rulebook_is_what_the_generator_writes():
    assert RULEBOOK.read_text(encoding="utf-8") == render(), "run: python -m transforms.kpis.rulebook"
    assert main(["--check"]) == 0


def test_rulebook_states_every_kpi_indicator_and_form_column_with_its_formula():
    text = render()
    for k in reg.KPIS:
        row = next(line for line in text.splitlines() if line.startswith(f"| `{k.code}` |"))
        assert reg.in_words(k.numerator) in row and k.vi in row
    assert "| `on_time_rate` |" in text and ">= 0.96" in text  # the shipped target
    for i in reg.INDICATORS:
        assert f"| `{i.code}` | {i.group} " in text
    for f in reg.FORM06:
        assert f"| `{f.code}` |" in text


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


def test_every_rule_is_pinned_by_tests_that_exist():
    for rule in RULES.values():
        assert rule.tests, rule.ref
        for t in rule.tests:
            path, name = t.split("::")
            assert name in _test_functions(ROOT / path), f"{rule.ref}: {t} does not exist"
    for m in (*reg.KPIS, *reg.INDICATORS):
        assert set(m.rules) <= set(RULES), m.code


def test_every_settled_rule_the_code_cites_is_in_the_rule_book():
    cited: set[int] = set()
    for folder in ("transforms", "tthc", "flows", "warehouse", "expectations"):
        for path in (ROOT / folder).rglob("*.py"):
            for m in re.finditer(r"settled details? ((?:\d+(?:,? and |, )?)+)", path.read_text(encoding="utf-8")):
                cited |= {int(n) for n in re.findall(r"\d+", m.group(1))}
    assert cited, "the code cites settled details"
    assert cited <= {int(r.ref[1:]) for r in SETTLED}
    assert [r.ref for r in SETTLED] == [f"S{n}" for n in range(1, len(SETTLED) + 1)]


def test_no_product_file_points_outside_the_repository():
    here = Path(__file__).resolve()
    files = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
    for folder in ("transforms", "tthc", "flows", "warehouse", "expectations", "tests"):
        files += [p for p in (ROOT / folder).rglob("*.py") if p.resolve() != here]
    bad = [f"{p.relative_to(ROOT)}: {line.strip()}" for p in files
           for line in p.read_text(encoding="utf-8").splitlines()
           if "/work/" in line or "shared/docs" in line]
    assert not bad, "\n".join(bad)
