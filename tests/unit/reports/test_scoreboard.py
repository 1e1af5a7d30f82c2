import pytest

from transforms.kpis import registry
from transforms.reports import data, scoreboard


def test_scoreboard_groups_points_reachable_and_rank(small_wh):
    d = data.load(small_wh.wh, "2024-03")
    boards = {b.agency_code: b for b in scoreboard.build(d.s766)}
    assert set(boards) >= {"C1", "C2", "S1", "P"}
    c1 = boards["C1"]
    assert [g.max_points for g in c1.groups] == [18, 20, 22, 22, 18]
    g3 = c1.groups[2]
    assert [(p.max_points, [c.code for c in p.cells]) for p in g3.parts] == [(12, ["3.3"]), (10, ["3.6"])]
    # points = sum of the scores in the mart; reachable = sum of maxima of the scored indicators
    rows = d.s766[d.s766.agency_code == "C1"]
    assert c1.points == pytest.approx(rows.score.sum())
    assert c1.reachable == pytest.approx(rows.loc[rows.score.notna(), "max_score"].sum())
    assert c1.reachable < 100
    on_time = next(c for c in c1.groups[1].cells if c.code == "2.1")
    assert on_time.score == pytest.approx(20 * 3 / 4) and on_time.numerator == 3 and on_time.denominator == 4
    # no settled score: the ratio shown with the reason
    c33 = g3.parts[0].cells[0]
    assert c33.score is None and c33.ratio is not None and c33.why == registry.NO_SCORE_WHY["3.3"][0]
    # communes ranked among communes only: C2 (all on time) above C1
    assert (boards["C2"].rank, boards["C1"].rank, boards["C1"].rank_of) == (1, 2, 2)
    assert boards["S1"].rank == 1 and boards["S1"].rank_of == 1


def test_empty_denominator_says_why_and_is_not_reachable(small_wh):
    d = data.load(small_wh.wh, "2024-03")
    s1 = next(b for b in scoreboard.build(d.s766) if b.agency_code == "S1")
    e_res = next(c for g in s1.groups for c in g.cells if c.code == "4.1")
    if e_res.denominator == 0:
        assert e_res.score is None and "mẫu số" in e_res.why
        assert s1.reachable == pytest.approx(sum(c.max_score for g in s1.groups for c in g.cells
                                                 if c.score is not None))


def test_frame_has_indicator_group_and_total_rows(small_wh):
    d = data.load(small_wh.wh, "2024-Q1")
    f = scoreboard.frame(scoreboard.build(d.s766))
    tot = f[(f.row_kind == "total") & (f.agency_code == "C1")].iloc[0]
    grp = f[(f.row_kind == "group") & (f.agency_code == "C1")]
    assert tot.points == pytest.approx(grp.points.sum()) and tot.reachable == pytest.approx(grp.reachable.sum())
    assert set(f[f.row_kind == "indicator"].indicator_code) == {i.code for i in registry.INDICATORS}


def test_load_scope_names_and_errors(small_wh):
    d = data.load(small_wh.wh, "2024-03")
    assert d.roots == ["P"] and d.name("C1") == "Xã C1"
    assert set(d.s766.agency_name.dropna()) >= {"Xã C1", "Sở S1"}
    only = data.load(small_wh.wh, "2024-03", agency="D1")
    assert set(only.agencies.agency_code) <= {"D1", "C1", "C2"} and only.roots == ["D1"]
    with pytest.raises(data.ReportDataError, match="X9"):
        data.load(small_wh.wh, "2024-03", agency="X9")
    with pytest.raises(data.ReportDataError, match="2030-Q1"):
        data.load(small_wh.wh, "2030-Q1")
    assert d.as_of.isoformat() == "2024-03-31"
    assert set(d.trend.period) <= {m.period for m in d.period.trend_months()}
