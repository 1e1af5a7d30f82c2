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
