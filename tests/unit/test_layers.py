"""No import runs from a lower layer to a higher one (docs/design.md, "Layers").

Layers, bottom to top: ``warehouse`` and ``expectations``; ``transforms``; ``flows``; the ``tthc`` CLI. A module may
import its own layer and the layers below it, never one above, not even inside a function. ``tthc.settings`` is
ground for the orchestration: it imports no project package, ``flows`` and the CLI may import it, and
``transforms``, ``warehouse`` and ``expectations`` never do (they are given what they need as arguments). Tools are
not layers of the running product: ``devkit`` (sample inbox, fake portal, synthetic batches) and the suite generator
``expectations/build_suites.py`` (run by hand, its JSON reviewed) may build on ``transforms``, ``warehouse`` and
``expectations`` but not on ``flows`` or ``tthc``, and no product module imports them (the CLI reaches devkit by
name, ``tthc.commands.devkit_module``). Every import statement of every module is read with ``ast``, the modules
are not imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("warehouse", "expectations", "transforms", "flows", "tthc")
RANK = {"warehouse": 0, "expectations": 0, "transforms": 1, "flows": 2, "tthc": 3}
SETTINGS = "tthc.settings"
DEVKIT = "devkit"
TOOLS = (DEVKIT, "expectations.build_suites")
TOOL = "tool"


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported module) of every import statement in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name))
    return out


def _is(name: str, module: str) -> bool:
    return name == module or name.startswith(module + ".")


def _layer_of(module: str) -> str | None:
    top = module.split(".")[0]
    if _is(module, SETTINGS):
        return SETTINGS
    if any(_is(module, t) for t in TOOLS):
        return TOOL
    return top if top in RANK else None


def _broken_rule(importer: str, imported: str) -> str | None:
    """Why ``importer`` may not import ``imported``, or None when it may."""
    src, dst = _layer_of(importer), _layer_of(imported)
    if dst is None or src is None or src == dst and src != SETTINGS:
        return None
    if src == SETTINGS:
        return "tthc.settings is ground: it imports no project package"
    if dst == TOOL:
        return "the product never imports a tool (the CLI loads devkit by name: tthc.commands.devkit_module)"
    if src == TOOL:
        return "a tool builds on transforms, warehouse and expectations, never on flows or the CLI" if (
            dst == SETTINGS or RANK[dst] >= RANK["flows"]) else None
    if dst == SETTINGS:
        return None if RANK[src] >= RANK["flows"] else ("transforms, warehouse and expectations never read "
                                                        "tthc.settings: the flow or the CLI passes what they need")
    if RANK[dst] > RANK[src]:
        return f"{dst} is above {src}"
    return None


def violations(root: Path) -> list[str]:
    found = []
    for top in (*PRODUCT, DEVKIT):
        for path in sorted((root / top).rglob("*.py")):
            module = _module_name(root, path)
            for line, imported in _imports(path, module):
                why = _broken_rule(module, imported)
                if why:
                    found.append(f"{path.relative_to(root)}:{line} imports {imported}: {why}")
    return found


def test_no_import_runs_up_a_layer():
    assert violations(ROOT) == []


def test_the_tree_has_the_layers_the_rule_names():
    # the rule reads these folders; a renamed one would make it pass on nothing
    for top in (*PRODUCT, DEVKIT):
        assert any((ROOT / top).rglob("*.py")), top
    assert (ROOT / "tthc" / "settings.py").is_file()
    assert not (ROOT / "tthc" / "sample").exists() and not (ROOT / "tthc" / "fakeportal").exists()
    assert not (ROOT / "transforms" / "quality" / "synth.py").exists()


def test_the_walker_catches_each_kind_of_upward_import(tmp_path):
    files = {
        "warehouse/__init__.py": "",
        "warehouse/store.py": "def f():\n    from transforms import staging\n",  # lazy, still counted
        "expectations/__init__.py": "",
        "transforms/__init__.py": "",
        "transforms/pull/__init__.py": "",
        "transforms/pull/sql.py": "from tthc.settings import get_settings\nfrom warehouse import store\n",
        "transforms/pull/run.py": "from . import sql\nfrom ..quality import gate\nimport flows.nightly\n",
        "flows/__init__.py": "",
        "flows/nightly.py": "from tthc.settings import Settings\nfrom tthc.commands import pipeline\n",
        "tthc/__init__.py": "",
        "tthc/settings.py": "import os\n",
        "tthc/cli.py": "from flows.nightly import nightly\nfrom devkit.sample import generate_inbox\n",
        "devkit/__init__.py": "",
        "devkit/synth.py": "from warehouse.store import table_dir\nfrom flows import runs\n",
        "expectations/build_suites.py": "from transforms.pull import sql\nfrom tthc.settings import Settings\n",
        "expectations/loader.py": "from expectations.build_suites import TABLES\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    found = violations(tmp_path)
    assert sorted(f.split(": ")[0] for f in found) == [
        "devkit/synth.py:2 imports flows",
        "expectations/build_suites.py:2 imports tthc.settings",
        "expectations/loader.py:1 imports expectations.build_suites",
        "flows/nightly.py:2 imports tthc.commands",
        "transforms/pull/run.py:3 imports flows.nightly",
        "transforms/pull/sql.py:1 imports tthc.settings",
        "tthc/cli.py:2 imports devkit.sample",
        "warehouse/store.py:2 imports transforms",
    ]
