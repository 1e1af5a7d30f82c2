"""The choice of each dossier's latest version (transforms.core.losers_sql, hash aggregation; the full and the
incremental core builds both use it) against the rule as kpis.md states it, written as the plain ranking: latest
updated_at (NULL last), then the later ingest, then the greater batch id, then the greater source row."""

import random
from datetime import datetime, timedelta

import duckdb
import pyarrow as pa

from transforms.core import LATER_INGEST, losers_sql


def _versions(seed: int, n: int = 3000) -> pa.Table:
    """Many dossiers with several versions, ties on updated_at and on the ingest time, NULL updated_at, a NULL
    dossier id (never a winner nor a loser)."""
    rnd = random.Random(seed)
    day = datetime(2025, 1, 1)
    stamps = [None] + [day + timedelta(hours=h) for h in range(4)]  # few values: ties are common
    ingests = [day + timedelta(days=d) for d in range(3)]
    rows = {"dossier_id": [], "updated_at": [], "_ingested_at": [], "_batch_id": [], "_source_row": []}
    for i in range(n):
        rows["dossier_id"].append(None if i == 7 else f"D{rnd.randrange(n // 4)}")
        rows["updated_at"].append(rnd.choice(stamps))
        rows["_ingested_at"].append(rnd.choice(ingests))
        rows["_batch_id"].append(f"b{rnd.randrange(3)}")
        rows["_source_row"].append(i)  # (batch, row) is unique, as in staging
    return pa.table(rows, schema=pa.schema([("dossier_id", pa.string()), ("updated_at", pa.timestamp("us")),
                                            ("_ingested_at", pa.timestamp("us")), ("_batch_id", pa.string()),
                                            ("_source_row", pa.int64())]))


def test_losers_are_exactly_the_ranked_versions_after_the_first():
    con = duckdb.connect()
    for seed in range(5):
        con.register("v", _versions(seed))
        got = set(con.execute(losers_sql("v")).fetchall())
        want = set(con.execute(
            "SELECT _batch_id, _source_row FROM v WHERE dossier_id IS NOT NULL QUALIFY row_number() OVER ("
            f"PARTITION BY dossier_id ORDER BY updated_at DESC NULLS LAST, {LATER_INGEST}) > 1").fetchall())
        assert got == want and len(want) > 1000
        # every dossier keeps exactly one version
        kept = con.execute(
            f"SELECT count(DISTINCT dossier_id), count(*) FROM v ANTI JOIN ({losers_sql('v')}) l "
            "USING (_batch_id, _source_row) WHERE dossier_id IS NOT NULL").fetchall()[0]
        assert kept[0] == kept[1] > 500
        con.unregister("v")


def test_full_build_enum_types_sort_as_their_strings_so_the_rule_holds():
    """A full build carries the low-cardinality text columns as ENUM types (transforms.core.dossier_enums): each
    type holds every value the build can meet (the staged column's, the catalogue's, the agencies', '') in the
    strings' order, so the later-ingest rule (ORDER BY _batch_id) picks the same losers as with strings."""
    from transforms.core import ENUM_EXTRA, FIXED_ENUMS, dossier_enums

    rnd = random.Random(11)
    t = _versions(4)
    n = t.num_rows
    pick = {  # values in an order that is not sorted, with diacritics and digits that sort differently from numbers
        "procedure_code": ["2.10", "1.9", "2.9", None], "procedure_name": ["Đăng ký khai sinh", "Cấp bản sao", "Ân xá"],
        "field_code": ["TP-HT", "", "KH-2", None], "field_name": ["Hộ tịch", "Đất đai", ""],
        "agency_code": ["H31.9", "H31.10", "H31"], "_format": ["flat_export", "national_sync"],
        "_source_file": ["z.csv", "a.json", "m.xlsx"],
    }
    for c, values in pick.items():
        t = t.append_column(c, pa.array([rnd.choice(values) for _ in range(n)], pa.string()))
    t = t.set_column(t.schema.get_field_index("_batch_id"), "_batch_id",
                     pa.array([rnd.choice(["b10", "b9", "b2", "b100", "b1"]) for _ in range(n)], pa.string()))
    con = duckdb.connect()
    con.execute("CREATE TEMP TABLE procs AS SELECT * FROM (VALUES ('0.5', 'ZZ', 'Ý tế')) p(procedure_code, "
                "field_code, field_name)")
    con.execute("CREATE TEMP TABLE agency_chain AS SELECT 'H31.0' AS member")
    con.register("v", t)
    types = dossier_enums(con, "v")
    assert set(types) == set(ENUM_EXTRA) | set(FIXED_ENUMS)
    extra = {"procedure_code": {"0.5"}, "field_code": {"ZZ", ""}, "field_name": {"Ý tế", ""}, "agency_code": {"H31.0"}}
    for c in ENUM_EXTRA:
        want = sorted({v for v in t.column(c).to_pylist() if v is not None} | extra.get(c, set()))
        assert con.execute(f"SELECT enum_range(NULL::{types[c]})").fetchall()[0][0] == want, c
    for c, values in FIXED_ENUMS.items():
        assert con.execute(f"SELECT enum_range(NULL::{types[c]})").fetchall()[0][0] == sorted(values)
    typed = f"(SELECT * REPLACE (CAST(_batch_id AS {types['_batch_id']}) AS _batch_id) FROM v)"
    got = {(str(b), r) for b, r in con.execute(losers_sql(typed)).fetchall()}
    assert got == set(con.execute(losers_sql("v")).fetchall()) and len(got) > 1000
