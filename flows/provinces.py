"""Many provinces at once on a Dask cluster, then the national roll-up.

``provinces`` (flow ``tthc-provinces``) runs one task per province folder ``<inbox_root>/<name>/``: the nightly flow
(``flows.nightly.nightly``, the same run as ``tthc run``) on the warehouse ``<warehouse_root>/<name>/``, a folder or
an ``s3://`` URL (then in a local working copy published back by warehouse/objectstore.py). The tasks run on Dask
through Prefect's Dask integration (``prefect_dask.DaskTaskRunner``): an existing scheduler (``address``,
``TTHC_DASK_ADDRESS``) or a local cluster of ``workers`` processes. A province's failure is its task's result and
the others go on. Then ``<warehouse_root>/national/`` gets the roll-up of every province's published marts
(transforms/national.py): a province that failed tonight is counted with its last good marts and named.

Ledgers: each province keeps a SQLite ledger in its warehouse, or (``ledger_url``, a template holding
``{province}``) one PostgreSQL database per province on a shared server, created when missing; each province's
ledger URL is passed to its run as an argument, never through the environment of a worker that runs many.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from warehouse import external_ledger, generations, ledger_server, objectstore

NATIONAL = "national"


def child(root: str, name: str) -> str:
    return objectstore.join_url(root, name) if objectstore.is_url(root) else str(Path(root) / name)


def run_province(inbox: str, warehouse: str, as_of: date | None, full_rebuild: bool = False,
                 ledger_url: str | None = None) -> dict:
    """The nightly flow for one province, on a folder or on object storage; returns what happened (status,
    message, published generation, notes). On object storage: pull the working copy, repair an interrupted publish
    (orphan batch files removed, core and marts rebuilt in full), run, publish.

    ``ledger_url``: this province's ledger outside its warehouse (a PostgreSQL database, created when missing); the
    run holds its lock (ledger_server.run_lock), the warehouse's own SQLite ledger is moved into it, and on object storage
    what an unpublished run took is forgotten after the pull (warehouse/external_ledger.py). None: the SQLite
    ledger in the warehouse. Either way the nightly run is given its ledger explicitly, never through the
    environment (provinces share worker processes)."""
    if ledger_url is None:
        return _run_province(inbox, warehouse, as_of, full_rebuild, None)
    ledger_server.ensure_database(ledger_url)
    with ledger_server.run_lock(ledger_url):
        return _run_province(inbox, warehouse, as_of, full_rebuild, ledger_url)


def _run_province(inbox: str, warehouse: str, as_of: date | None, full_rebuild: bool,
                  ledger_url: str | None) -> dict:
    from flows.nightly import nightly

    notes: list[str] = []
    if not objectstore.is_url(warehouse):
        if ledger_url is not None:
            notes += external_ledger.attach(Path(warehouse), ledger_url)
        state = nightly(inbox=inbox, warehouse=warehouse, as_of=as_of, full_rebuild=full_rebuild,
                        ledger_url=ledger_url or _own_ledger(Path(warehouse)), return_state=True)
        gen = generations.current_generation(Path(warehouse))
        return _outcome(state, gen.name if gen is not None else None, repaired=False, notes=notes)
    from warehouse.lock import warehouse_lock

    ow = objectstore.ObjectWarehouse(warehouse)
    with warehouse_lock(ow.local.parent / "sync", wait_seconds=1800):  # one working copy user per machine
        pulled = ow.pull()
        if ledger_url is not None:  # before the repair: a wrong ledger would make every batch file an orphan
            notes += external_ledger.attach(ow.local, ledger_url)
        url = ledger_url or _own_ledger(ow.local)
        repaired = pulled.interrupted is not None
        if repaired:
            objectstore.remove_orphan_batches(ow.local, url)
            full_rebuild = True
        if ledger_url is not None:
            gone = external_ledger.forget_unpublished(ow.local, ledger_url)
            if gone:
                notes.append(f"{len(gone)} batch(es) taken by a run that did not publish are taken again")
        state = nightly(inbox=inbox, warehouse=str(ow.local), as_of=as_of, full_rebuild=full_rebuild,
                        ledger_url=url, return_state=True)
        if _raised(state):  # stopped on an exception: the working copy is left to the next run's recovery
            return _outcome(state, pulled.generation, repaired, notes)
        gen = ow.publish(run_id=state.name or "")
    return _outcome(state, gen, repaired, notes)


def _own_ledger(warehouse: Path) -> str:
    """The warehouse's own SQLite ledger, named explicitly (a TTHC_LEDGER_URL in a worker's environment must not
    make every province's run write to one ledger)."""
    return f"sqlite:///{(warehouse / objectstore.LEDGER).resolve()}"


def _raised(state) -> bool:
    """Whether the run stopped on an exception (or crashed) rather than reaching its end (completed, or failed
    with its reasons recorded: files held or rejected, whose marts are published as usual)."""
    if state.is_crashed():
        return True
    try:
        res = state.result(raise_on_failure=False)
    except BaseException:  # noqa: BLE001 - the state's exception is the answer
        return True
    return isinstance(res, BaseException)


def _outcome(state, generation: str | None, repaired: bool, notes: list[str] | None = None) -> dict:
    status = "completed" if state.is_completed() else "failed"
    return {"status": status, "message": state.message or "", "generation": generation, "repaired": repaired,
            "notes": notes or []}


@task(name="province", cache_policy=NONE, task_run_name="province {name}")
def province_task(name: str, inbox: str, warehouse: str, as_of: date | None, ledger_url: str | None = None) -> dict:
    import resource
    import time

    t0 = time.perf_counter()
    try:
        out = run_province(inbox, warehouse, as_of, ledger_url=ledger_url)
    except Exception as exc:  # noqa: BLE001 - reported as this province's failure; the others go on
        out = {"status": "failed", "message": f"{type(exc).__name__}: {exc}", "generation": None,
               "repaired": False, "notes": []}
    # what a deployment is sized by: the wall time and the worker process's peak resident memory so far
    return {"province": name, "warehouse": warehouse, **out, "seconds": round(time.perf_counter() - t0, 1),
            "worker_pid": os.getpid(), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}


@task(name="national-rollup", cache_policy=NONE)
def national_task(warehouse_root: str, names: list[str]) -> dict:
    """``<warehouse_root>/national/``: the roll-up of every province's published marts (as a generation)."""
    from transforms import national

    sources, missing = [], []
    for name in names:
        folder = _published_folder(child(warehouse_root, name))
        if folder is None:
            missing.append(name)
            continue
        built = generations.generation_manifest(folder).get("built_from", {})
        sources.append(national.ProvinceMarts(name, folder, date.fromisoformat(str(built.get("as_of")))))
    tables = national.rollup(sources)
    target = child(warehouse_root, NATIONAL)
    ow = objectstore.ObjectWarehouse(target) if objectstore.is_url(target) else None
    local = ow.local if ow is not None else Path(target)
    if ow is not None:
        ow.pull()
    with generations.GenerationWriter(local) as gw:
        for mart, t in tables.items():
            gw.write(mart, t)
        gen = gw.publish({"built_from": {"provinces": {p.name: {"as_of": p.as_of.isoformat(),
                                                                "generation": p.folder.name} for p in sources},
                                         "as_of": min(p.as_of for p in sources).isoformat()}})
    if ow is not None:
        ow.publish(run_id="national")
    return {"generation": gen.name, "provinces": [p.name for p in sources], "without_marts": missing,
            "rows": {m: t.num_rows for m, t in tables.items()}}


def _published_folder(warehouse: str) -> Path | None:
    """The folder of a province's published generation (pulled into a read cache when on object storage)."""
    if not objectstore.is_url(warehouse):
        return generations.current_generation(Path(warehouse))
    ow = objectstore.ObjectWarehouse(warehouse, local=objectstore.cache_dir(warehouse, "read"))
    pulled = ow.pull(select=lambda rel: rel.startswith(f"{generations.GENERATIONS}/"))  # the published one only
    return generations.generations_root(ow.local) / pulled.generation if pulled.generation else None


def province_names(inbox_root: Path) -> list[str]:
    """The province folders: every folder of the root holding an agencies.csv."""
    return sorted(p.name for p in Path(inbox_root).iterdir()
                  if p.is_dir() and not p.name.startswith((".", "_")) and p.name != NATIONAL
                  and (p / "agencies.csv").is_file())


@flow(name="tthc-provinces", log_prints=False)
def provinces(inbox_root: str, warehouse_root: str, as_of: date | None = None,
              names: list[str] | None = None, ledger_url: str | None = None) -> dict:
    """Every province's nightly run as a task (in parallel on the flow's task runner), then the roll-up.

    ``ledger_url``: a template holding ``{province}`` (ledger_server.province_urls): each province's ledger is its own
    database on that server; None: each keeps a SQLite ledger in its warehouse."""
    log = get_run_logger()
    names = names or province_names(Path(inbox_root))
    ledgers = ledger_server.province_urls(ledger_url, names) if ledger_url else {}
    futures = {n: province_task.submit(n, str(Path(inbox_root) / n), child(warehouse_root, n), as_of,
                                       ledgers.get(n))
               for n in names}
    results = []
    for n, fut in futures.items():
        try:
            results.append(fut.result())
        except Exception as exc:  # noqa: BLE001 - the task itself could not run (a worker lost for good)
            results.append({"province": n, "warehouse": child(warehouse_root, n), "status": "failed",
                            "message": f"{type(exc).__name__}: {exc}", "generation": None, "repaired": False,
                            "notes": []})
    for r in results:
        (log.info if r["status"] == "completed" else log.error)("%s: %s %s", r["province"], r["status"],
                                                                r["message"])
    try:
        nat = national_task(warehouse_root, names)
    except ValueError as exc:
        nat = {"error": str(exc)}
    return {"provinces": results, "national": nat,
            "failed": [r["province"] for r in results if r["status"] != "completed"]}


def task_runner(address: str | None = None, workers: int = 2):
    """Prefect's Dask task runner: the scheduler at ``address`` (or ``TTHC_DASK_ADDRESS``), else a local cluster
    of ``workers`` processes with one thread each (a province run is CPU-bound and holds its own DuckDB)."""
    from prefect_dask import DaskTaskRunner

    address = address or os.environ.get("TTHC_DASK_ADDRESS")
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})


def run(inbox_root: str, warehouse_root: str, as_of: date | None, address: str | None = None,
        workers: int = 2, ledger_url: str | None = None):
    """The flow on Dask; returns its final state (the result dict is ``state.result()``). ``ledger_url``: the
    provinces' ledger template (``{province}``), or None for a SQLite ledger in each warehouse."""
    return provinces.with_options(task_runner=task_runner(address, workers))(
        inbox_root=inbox_root, warehouse_root=warehouse_root, as_of=as_of, ledger_url=ledger_url,
        return_state=True)
