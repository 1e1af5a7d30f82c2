"""tthc run-provinces for real: two province inboxes, warehouses on an S3 API server (moto_server) and a Dask
scheduler with two workers (separate processes), the provinces' ledgers on the machine's PostgreSQL (a ledger URL
template, one database per province; SQLite ledgers in the warehouses when PostgreSQL cannot be reached). Each
province's marts equal its single-province run (on a folder, with its own SQLite ledger); each province's runs and
batches are in its own database only; the national marts equal the sums of the provinces' top-level rows; a worker
killed mid-run leaves every published mart readable, and the next run completes with every batch its ledger counts
as taken published. Budget: ~90 s for the module on 2 shared cores (four small province runs + two)."""

from __future__ import annotations

import shutil
import threading
import time
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.cluster import dask_cluster, s3_server
from tests.pg import ledger_template

pytestmark = pytest.mark.integration
AS_OF = date(2025, 12, 31)
MARTS = ("mart_kpi__agency_period", "mart_766__agency_period", "mart_tt01_form06__agency_period")
KEEP = ("agencies.csv", "dvc_portal/procedures/danhmuc_tthc_20250710.csv", "dvc_portal/feedback",
        "one_stop/dossiers/dongbo_hoso_2025Q3.jsonl")
LATER = "one_stop/dossiers/dongbo_hoso_2025_10_11.json"  # added before the run whose worker is killed
PROVINCES = {"lam_xuyen": 11, "song_bac": 12}  # folder name -> sample seed


def _province(root: Path, name: str, seed: int, tmp: Path) -> None:
    from devkit.sample import generate_inbox

    full = tmp / f"full_{name}"
    generate_inbox(full, seed=seed, scale=0.2)
    for rel in KEEP:
        src, dst = full / rel, root / name / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
    (tmp / f"later_{name}.json").write_bytes((full / LATER).read_bytes())


@pytest.fixture(scope="module")
def setup(prefect_harness, tmp_path_factory):
    from prefect.settings import PREFECT_API_URL

    tmp = tmp_path_factory.mktemp("provinces")
    root = tmp / "inboxes"
    for name, seed in PROVINCES.items():
        _province(root, name, seed, tmp)
    env = {"TTHC_PSEUDONYM_KEY": "provinces-test-key", "TTHC_CACHE_DIR": str(tmp / "cache"),
           "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_LOGGING_LEVEL": "WARNING"}
    with s3_server() as s3env, pytest.MonkeyPatch.context() as mp:
        env.update(s3env)
        for k, v in env.items():
            mp.setenv(k, v)
        with dask_cluster(2, env) as (address, workers):
            yield {"root": root, "tmp": tmp, "address": address, "workers": workers, "env": env}


@pytest.fixture(scope="module")
def ledgers():
    """The provinces' ledger template on the machine's PostgreSQL, databases tthc_test_<random>_<province> (dropped
    at the end), and its province -> URL map; (None, {}, why) when PostgreSQL cannot be reached."""
    from warehouse.ledger_server import province_urls

    with ledger_template() as (template, why):
        yield (template, province_urls(template, list(PROVINCES)), None) if template else (None, {}, why)


def _published(url: str) -> dict:
    """The three marts a reader sees at ``url`` (one generation), as sorted row lists."""
    from flows.provinces import _published_folder

    folder = _published_folder(url)
    assert folder is not None, f"no published marts at {url}"
    return {m: _rows(folder / m / "data.parquet") for m in MARTS}


def _rows(path: Path) -> list[dict]:
    t = pq.read_table(path)
    return sorted(t.to_pylist(), key=lambda r: tuple(str(v) for v in r.values()))


@pytest.fixture(scope="module")
def published(setup, ledgers):
    """run-provinces' flow over both inboxes into s3://tthc-test/vn on the Dask cluster (the first night), the
    ledgers on PostgreSQL."""
    from flows import provinces

    url = "s3://tthc-test/vn"
    state = provinces.run(str(setup["root"]), url, AS_OF, address=setup["address"], ledger_url=ledgers[0])
    assert state.is_completed(), state.message
    result = state.result()
    assert result["failed"] == [], result
    assert sorted(result["national"]["provinces"]) == ["lam_xuyen", "song_bac"]
    return url


def test_provinces_on_dask_and_s3_equal_single_runs_and_roll_up(setup, published):
    from flows import provinces
    from transforms.kpis import registry

    url = published
    got = {n: _published(f"{url}/{n}") for n in ("lam_xuyen", "song_bac")}
    # each province alone on a folder, with its own SQLite ledger: run_province on a folder is `tthc run`'s nightly
    # flow on that folder (the two run side by side on the cluster, to keep the test short)
    single = provinces.run(str(setup["root"]), str(setup["tmp"] / "single"), AS_OF, address=setup["address"])
    assert single.is_completed() and single.result()["failed"] == []
    for name, marts in got.items():
        wh = setup["tmp"] / "single" / name
        for m in MARTS:
            assert marts[m] == _rows(wh / m / "data.parquet"), f"{name} {m} differs from its single run"
    national = _published(f"{url}/national")
    # national KPI rows: the sums of the provinces' province-level rows, rates recomputed from the sums
    top = {n: {r["agency_code"] for r in got[n][MARTS[0]] if r["agency_level"] == "province"} for n in got}
    sums: dict = {}
    for n, marts in got.items():
        for r in marts[MARTS[0]]:
            if r["agency_code"] in top[n]:
                s = sums.setdefault((r["period_type"], r["period"], r["kpi_code"]), [0, None, set()])
                s[0] += r["numerator"] or 0
                s[1] = r["denominator"] if s[1] is None else s[1] + (r["denominator"] or 0)
                s[2].add(n)
    rows = {(r["period_type"], r["period"], r["kpi_code"]): r for r in national[MARTS[0]]}
    assert set(rows) == set(sums)
    for key, (num, den, provs) in sums.items():
        r = rows[key]
        assert (r["numerator"], r["denominator"], r["provinces"]) == (num, den, ";".join(sorted(provs))), key
        if registry.KPI[key[2]].denominator is not None:
            assert r["value"] == (None if not den else pytest.approx(num / den)), key
        assert r["agency_code"] == "VN" and r["as_of"] == AS_OF
    # a national 766 score from national counts: 2.1 is 20 x ratio of the summed counts
    for r in national[MARTS[1]]:
        if r["indicator_code"] == "2.1" and r["denominator"]:
            assert r["score"] == pytest.approx(20 * r["numerator"] / r["denominator"])
    # form 06: summed column by column
    f06 = {}
    for n, marts in got.items():
        for r in marts[MARTS[2]]:
            if r["agency_code"] in top[n]:
                k = (r["period_basis"], r["period_type"], r["period"], r["field_code"])
                f06[k] = f06.get(k, 0) + r["c03_received_total"]
    assert {(r["period_basis"], r["period_type"], r["period"], r["field_code"]): r["c03_received_total"]
            for r in national[MARTS[2]]} == f06


def _ledger(url: str) -> tuple[list[dict], list[dict]]:
    """A province ledger's runs and batches."""
    from warehouse.ledger import Ledger

    led = Ledger(url)
    try:
        return led.recent_runs(1000), led.recent_batches(1000)
    finally:
        led.dispose()


def _bucket_batches(url: str) -> dict[str, set[str]]:
    """Batch id -> the layers (raw_, stg_, quarantine_) holding a file of it in the warehouse at ``url``."""
    from warehouse import objectstore

    out: dict[str, set[str]] = {}
    for key in objectstore.ObjectWarehouse(url).listing():
        parts = key.removeprefix("_held/").split("/")
        if len(parts) == 2 and parts[0].startswith(("raw_", "stg_", "quarantine_")):
            out.setdefault(parts[1].removesuffix(".parquet"), set()).add(parts[0].split("_", 1)[0] + "_")
    return out


def _taken_and_published(ledger_url: str, url: str) -> list[dict]:
    """The batches the ledger counts as taken, each checked to have in the bucket every file its counts call for."""
    from warehouse.ledger import DONE_STATUSES

    files = _bucket_batches(url)
    taken = [b for b in _ledger(ledger_url)[1] if b["status"] in DONE_STATUSES]
    for b in taken:
        need = {layer for layer, n in (("raw_", b["rows_raw"]), ("stg_", b["rows_staged"]),
                                       ("quarantine_", b["rows_quarantined"])) if n}
        assert need <= files.get(b["batch_id"], set()), (url, b["batch_id"], b["path"], files.get(b["batch_id"]))
    return taken


def test_each_province_ledger_is_its_own_postgresql_database(setup, published, ledgers):
    template, urls, why = ledgers
    if template is None:
        pytest.skip(why)
    url = published
    taken = {}
    for n, lurl in urls.items():
        assert lurl.endswith(f"_{n}")
        runs, batches = _ledger(lurl)
        # its runs read its inbox only, and its batches are the files of its inbox, each published in its warehouse
        assert runs and {Path(r["inbox"]).resolve() for r in runs} == {(setup["root"] / n).resolve()}
        assert {r["status"] for r in runs} == {"completed"}
        taken[n] = _taken_and_published(lurl, f"{url}/{n}")
        inbox = setup["root"] / n
        assert sorted(b["path"] for b in taken[n]) == sorted(
            p.relative_to(inbox).as_posix() for p in inbox.rglob("*") if p.is_file() and p.name != "agencies.csv")
        assert {b["batch_id"] for b in taken[n]} == set(_bucket_batches(f"{url}/{n}"))
        # no ledger file beside the batches: not in the bucket, not in the working copy
        from warehouse import objectstore

        assert objectstore.LEDGER not in objectstore.ObjectWarehouse(f"{url}/{n}").listing()
        assert not (objectstore.cache_dir(f"{url}/{n}") / objectstore.LEDGER).exists()
    a, b = ({x["batch_id"] for x in _ledger(urls[n])[1]} for n in PROVINCES)
    assert a and b and not a & b  # neither database holds a batch of the other


def _worker_at_the_worst_moment(setup, url: str, urls: dict, run: threading.Thread, limit: float = 120):
    """(worker process, province) as soon as a province's run on one of the cluster's workers has taken its new
    batch (ledger) that is not yet published (bucket): the run lock's holder names the worker's pid. (None, None)
    when the run ended first."""
    import re

    import sqlalchemy as sa

    from warehouse.ledger import DONE_STATUSES
    from warehouse.ledger_server import lock_holder

    workers = {p.pid: p for p in setup["workers"]}
    engines = {n: sa.create_engine(u, poolclass=sa.pool.NullPool) for n, u in urls.items()}
    deadline = time.monotonic() + limit
    try:
        while run.is_alive() and time.monotonic() < deadline:
            for n, engine in engines.items():
                m = re.match(r"tthc run pid (\d+) ", lock_holder(urls[n]) or "")
                if not m or int(m.group(1)) not in workers:
                    continue
                with engine.connect() as c:
                    taken = [r[0] for r in c.execute(sa.text(
                        "SELECT batch_id FROM batches WHERE path = :p AND status IN :s").bindparams(
                        sa.bindparam("s", expanding=True)), {"p": LATER, "s": list(DONE_STATUSES)})]
                if taken and not set(taken) & set(_bucket_batches(f"{url}/{n}")):
                    return workers[int(m.group(1))], n
            time.sleep(0.2)
    finally:
        for engine in engines.values():
            engine.dispose()
    return None, None


def test_worker_killed_mid_run_leaves_marts_readable_and_next_run_completes(setup, published, ledgers):
    from flows import provinces

    url = published
    template, urls, _ = ledgers
    before = {n: _published(f"{url}/{n}") for n in ("lam_xuyen", "song_bac")}
    for n in before:  # new data for both: the next run has work to do
        shutil.copy2(setup["tmp"] / f"later_{n}.json", setup["root"] / n / LATER)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("state", provinces.run(
        str(setup["root"]), url, AS_OF, address=setup["address"], ledger_url=template)))
    t.start()
    # the worker dies at the worst moment for a ledger outside the bucket: its province's new batch taken, not yet
    # published (the ledgers tell); without PostgreSQL to watch, 6 s in (ingest/gate)
    victim, caught = _worker_at_the_worst_moment(setup, url, urls, t) if template else (None, None)
    if victim is None:
        time.sleep(0 if template else 6)
        victim = setup["workers"][0]
    victim.kill()
    victim.wait()
    t.join(240)
    assert not t.is_alive()
    killed = out["state"]  # completed or not: what counts is what readers see and what the next run does
    # whatever that run did, every province's published marts are readable, three of one generation
    for n in before:
        marts = _published(f"{url}/{n}")
        assert all(marts[m] for m in MARTS)
    # the next run (on the surviving worker) completes and brings every province to its complete data
    again = provinces.run(str(setup["root"]), url, AS_OF, address=setup["address"], ledger_url=template)
    assert again.is_completed(), again.message
    res = again.result()
    assert res["failed"] == [], res
    for n in before:
        after = _published(f"{url}/{n}")
        assert after[MARTS[0]] != before[n][MARTS[0]], (n, killed.result(raise_on_failure=False), res)
    assert _published(f"{url}/national")[MARTS[0]]
    # a ledger outside the bucket is not rolled back with a dead working copy: whatever the killed run took and did
    # not publish was taken again, so every batch the ledger counts as taken is published, the new file once
    for n, lurl in urls.items():
        taken = _taken_and_published(lurl, f"{url}/{n}")
        assert [b["path"] for b in taken].count(LATER) == 1, (n, res)
    if caught:  # the province killed with its batch taken was set right by its next run (rescheduled, or again)
        killed_res = killed.result(raise_on_failure=False)
        runs = [r for got in (killed_res, res) if isinstance(got, dict) for r in got["provinces"]
                if r["province"] == caught]
        assert any(r["repaired"] or any("did not publish" in note for note in r["notes"]) for r in runs), runs
    for p in setup["root"].iterdir():
        (p / LATER).unlink(missing_ok=True)
