"""The corpus generator itself (fast, no Prefect): enough cases, deterministic, one damage each, a clean twin."""

from __future__ import annotations

import pytest

from corpus import damage
from corpus.base import AGENCIES, build_base


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_base(tmp_path_factory.mktemp("corpus_gen") / "base")


def _files(root):
    """path -> (bytes, mode), or the target of a symlink."""
    return {p.relative_to(root).as_posix(): (("->", str(p.readlink())) if p.is_symlink()
                                             else (p.read_bytes(), p.stat().st_mode & 0o777))
            for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def test_at_least_40_named_cases():
    assert len(damage.names()) >= 40
    assert len(set(damage.names())) == len(damage.names())


def test_the_base_is_deterministic_and_small(base, tmp_path):
    again = build_base(tmp_path / "again")
    assert _files(again.root) == _files(base.root)
    assert set(base.files) | {AGENCIES} == set(_files(base.root))
    assert all(30 <= f.n <= 900 for f in base.files.values()), {k: f.n for k, f in base.files.items()}
    assert {f.kind for f in base.files.values()} == {"csv", "xlsx", "json", "jsonl"}


@pytest.mark.parametrize("name", damage.names())
def test_each_case_damages_one_file_and_restores_the_clean_base(name, base, tmp_path):
    clean = _files(base.root)
    c = damage.make(name, base, tmp_path / "a")
    damaged = _files(tmp_path / "a")
    changed = {k for k in clean.keys() | damaged.keys() if clean.get(k) != damaged.get(k)}
    assert changed == ({c.replaces} - {None}) | ({c.damaged} if c.damaged in damaged else set()), changed
    assert c.replaces is None or c.replaces in base.files or c.replaces == AGENCIES
    if c.replaces is not None and c.damaged != c.replaces:
        assert c.replaces not in damaged  # renamed: the clean name is gone
    assert c.expect.exit_code in (0, 1) and c.what
    # the same name writes the same bytes
    damage.make(name, base, tmp_path / "b")
    assert _files(tmp_path / "b") == damaged
    # the clean rerun's inbox is the clean base again
    c.restore(base, tmp_path / "a")
    assert _files(tmp_path / "a") == clean
