"""Tables published together (warehouse.generations.GenerationWriter): one rename shows every table of a generation,
readers resolve the generation once, a failed or killed publish shows nothing of itself, the previous generation is
kept and older ones go, and the older single-file layout is taken over."""

from __future__ import annotations

import os
import shutil
import stat

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from warehouse import generations, store
from warehouse.views import connect

A, B = "mart_a__x", "mart_b__x"


def _t(tag: str, n: int = 3) -> pa.Table:
    return pa.table({"id": pa.array(range(n), pa.int64()), "tag": pa.array([tag] * n, pa.string())})


def _publish(wh, tag: str, built_from: dict | None = None, **tables) -> str:
    with generations.GenerationWriter(wh) as g:
        for name in (A, B):
            g.write(name, tables.get(name, _t(tag)))
        g.publish({"built_from": built_from or {"night": tag}})
    return g.name


def _tags(con) -> dict[str, set[str]]:
    return {t: {r[0] for r in con.execute(f'SELECT DISTINCT tag FROM "{t}"').fetchall()} for t in (A, B)}


def test_publish_shows_every_table_at_once_through_the_fixed_links(tmp_path):
    g1 = _publish(tmp_path, "n1")
    # analysts' paths keep working: <table>/data.parquet, through a link that never changes
    for t in (A, B):
        assert os.readlink(tmp_path / t) == f"_marts/current/{t}"
        assert pq.read_table(tmp_path / t / "data.parquet").column("tag").to_pylist() == ["n1"] * 3
        assert stat.S_IMODE((tmp_path / t / "data.parquet").stat().st_mode) == 0o644
    assert store.list_tables(tmp_path) == [A, B]
    assert generations.published_manifest(tmp_path)["built_from"] == {"night": "n1"}
    assert generations.published_manifest(tmp_path)["generation"] == g1
    assert generations.published_manifest(tmp_path)["tables"] == [A, B]
    g2 = _publish(tmp_path, "n2")
    assert os.readlink(tmp_path / "_marts" / "current") == g2
    assert {p.name for p in (tmp_path / "_marts").iterdir()} == {"current", g1, g2}  # the previous one is kept
    g3 = _publish(tmp_path, "n3")
    assert {p.name for p in (tmp_path / "_marts").iterdir()} == {"current", g2, g3}  # older ones go
    assert pq.read_table(tmp_path / B / "data.parquet").column("tag").to_pylist() == ["n3"] * 3


def test_a_connection_reads_one_generation_whatever_is_published_meanwhile(tmp_path):
    _publish(tmp_path, "n1")
    con = connect(tmp_path)
    _publish(tmp_path, "n2")
    assert _tags(con) == {A: {"n1"}, B: {"n1"}}  # the generation it was opened on, both tables
    assert _tags(connect(tmp_path)) == {A: {"n2"}, B: {"n2"}}
    con.close()


def test_nothing_of_a_publish_is_visible_before_its_one_rename(tmp_path, monkeypatch):
    _publish(tmp_path, "n1")
    seen = []

    def validate(path):  # called on each new table before the generation is published
        seen.append(path)
        assert _tags(connect(tmp_path)) == {A: {"n1"}, B: {"n1"}}
        if len(seen) == 2:
            raise ValueError("contract broken")

    with store.validation(lambda table: validate), pytest.raises(ValueError, match="contract broken"):
        _publish(tmp_path, "n2")
    assert len(seen) == 2
    assert _tags(connect(tmp_path)) == {A: {"n1"}, B: {"n1"}}
    assert [p.name for p in (tmp_path / "_marts").iterdir() if p.name.startswith(".")] == []  # work removed


def test_work_left_by_a_killed_publish_is_never_read_and_goes_at_the_next_one(tmp_path):
    g1 = _publish(tmp_path, "n1")
    # as a kill -9 between the table writes leaves it: a hidden half generation, current untouched
    half = tmp_path / "_marts" / ".g20990101T000000000000-dead00" / A
    half.mkdir(parents=True)
    pq.write_table(_t("half"), half / "data.parquet")
    assert generations.current_generation(tmp_path).name == g1
    assert _tags(connect(tmp_path)) == {A: {"n1"}, B: {"n1"}}
    # killed after the generation was complete, before the swap: complete but not current
    shutil.copytree(tmp_path / "_marts" / g1, tmp_path / "_marts" / "g20990101T000000000000-late00")
    assert generations.current_generation(tmp_path).name == g1
    g2 = _publish(tmp_path, "n2")
    assert {p.name for p in (tmp_path / "_marts").iterdir()} == {"current", g1, g2}


def test_unchanged_table_is_carried_over_as_a_hard_link(tmp_path):
    _publish(tmp_path, "n1")
    before = (tmp_path / A / "data.parquet").resolve()
    prev = generations.current_generation(tmp_path)
    with generations.GenerationWriter(tmp_path) as g:
        g.keep(A, prev / A / "data.parquet")
        g.write(B, _t("n2"))
        g.publish({"built_from": {"night": "n2"}})
    after = (tmp_path / A / "data.parquet").resolve()
    assert after != before and os.path.samefile(after, before)
    assert _tags(connect(tmp_path)) == {A: {"n1"}, B: {"n2"}}


def test_the_older_single_file_layout_is_taken_over_by_the_first_publish(tmp_path):
    store.write_table(tmp_path, A, _t("old"))
    store.write_table(tmp_path, B, _t("old"))
    assert generations.current_generation(tmp_path) is None
    assert _tags(connect(tmp_path)) == {A: {"old"}, B: {"old"}}  # readable as before
    _publish(tmp_path, "n1")
    assert (tmp_path / A).is_symlink() and (tmp_path / B).is_symlink()
    assert _tags(connect(tmp_path)) == {A: {"n1"}, B: {"n1"}}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_copy_that_followed_the_links_is_published_into_again(tmp_path):
    _publish(tmp_path, "n1")
    copy = tmp_path.parent / f"{tmp_path.name}-copy"
    shutil.copytree(tmp_path, copy)  # symlinks followed: current and the tables became folders
    assert generations.current_generation(copy) is None
    assert _tags(connect(copy)) == {A: {"n1"}, B: {"n1"}}
    _publish(copy, "n2")
    assert (copy / "_marts" / "current").is_symlink() and (copy / A).is_symlink()
    assert _tags(connect(copy)) == {A: {"n2"}, B: {"n2"}}
    shutil.rmtree(copy)


def test_recovery_removes_what_killed_publishes_left_and_keeps_current_and_previous(tmp_path):
    g1 = _publish(tmp_path, "n1")
    g2 = _publish(tmp_path, "n2")
    root = tmp_path / "_marts"
    # killed while writing (hidden work), after a complete generation was renamed but before the swap (a newer
    # generation that never became current), and during a table link's replacement (a temporary link, the link gone)
    (root / ".g20990101T000000000000-dead00" / A).mkdir(parents=True)
    shutil.copytree(root / g2, root / "g20990101T000000000001-late00")
    os.symlink(f"_marts/current/{A}", tmp_path / f".{A}.1234abcd.lnk")
    (tmp_path / B).unlink()
    removed = generations.recover_generations(tmp_path)
    assert {p.name for p in root.iterdir()} == {"current", g1, g2}
    assert ".g20990101T000000000000-dead00" in removed and "g20990101T000000000001-late00" in removed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_marts", A, B]
    assert _tags(connect(tmp_path)) == {A: {"n2"}, B: {"n2"}}
    assert generations.recover_generations(tmp_path) == []
