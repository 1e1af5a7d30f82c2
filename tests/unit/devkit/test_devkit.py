"""devkit (sample inbox, fake portal, synthetic batches) is out of the product: the wheel does not ship it, the CLI
loads it by name for ``tthc sample`` / ``tthc fake-portal`` and, where it is absent, says in one sentence to install
the dev extra."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from setuptools import find_namespace_packages

ROOT = Path(__file__).resolve().parents[3]


def _wheel_packages() -> list[str]:
    """The packages the wheel ships: pyproject's ``packages.find`` (namespace packages included, its default)."""
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    found = conf["packages"]["find"]
    assert found.get("namespaces", True)
    return find_namespace_packages(str(ROOT), include=found["include"], exclude=found.get("exclude", ()))


def test_the_wheel_ships_the_product_without_devkit():
    packages = _wheel_packages()
    tops = {p.split(".")[0] for p in packages}
    assert {"tthc", "flows", "transforms", "warehouse", "expectations"} <= tops
    assert "devkit" not in tops and not any(p.startswith("tthc.sample") or p.startswith("tthc.fakeportal")
                                            for p in packages)


def _tthc_without_devkit(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """``tthc <args>`` as installed from the wheel: the wheel's packages copied to a folder that replaces the clone
    on the import path (the same interpreter, so the dependencies are there), devkit not among them."""
    site = tmp_path / "site"
    for pkg in _wheel_packages():
        src = ROOT / pkg.replace(".", "/")
        dst = site / pkg.replace(".", "/")
        shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    code = (f"import sys; sys.path[:] = [{str(site)!r}] + [p for p in sys.path if p and p != {str(ROOT)!r}]; "
            f"from tthc.cli import main; main({list(args)!r})")
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [("sample", "--out", "{out}"), ("fake-portal", "--generate", "5", "--port", "0")])
def test_without_devkit_the_command_says_to_install_the_dev_extra(tmp_path, args):
    args = tuple(a.format(out=tmp_path / "inbox") for a in args)
    proc = _tthc_without_devkit(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr
    said = " ".join(proc.stderr.split())
    assert f"`tthc {args[0]}` is a development tool" in said and "pip install -e '.[dev]'" in said
    assert "Traceback" not in proc.stderr and not (tmp_path / "inbox").exists()


def test_with_devkit_tthc_sample_writes_the_inbox(tmp_path):
    from typer.testing import CliRunner

    from tthc.cli import app

    out = tmp_path / "inbox"
    res = CliRunner().invoke(app, ["sample", "--out", str(out), "--seed", "7", "--scale", "0.05"])
    assert res.exit_code == 0, res.output
    assert (out / "manifest.json").is_file() and (out / "agencies.csv").is_file()
