"""A warehouse whose ledger lives outside it (a PostgreSQL database: ``tthc run-provinces --ledger-url``, one
database per province). The warehouse's own SQLite ledger is published with its files (warehouse/objectstore.py
sends it after the batch files it names); a ledger outside is written as the run goes and is never rolled back
with an unpublished working copy, so the two are kept consistent here, before each run:

- ``attach``: a warehouse that kept its own ledger (``_ledger.sqlite``) has it moved into the outside one, once
  (``ledger_server.adopt_sqlite``), so no stale SQLite ledger stays in the warehouse or the bucket; an outside ledger
  that names none of the warehouse's batch files is refused (a wrong URL, or a new database for a warehouse
  whose ledger is elsewhere: the run would take every inbox file again, and an interrupted publish's repair would
  delete every batch file as an orphan);
- ``forget_unpublished`` (object storage, after ``pull``): batches the ledger counts as taken whose files the
  published warehouse lacks were taken by a run that never published (killed, failed, refused by the pointer):
  their remaining files go, and the ledger marks them failed (their input is taken again; a pull's watermark
  goes back), as the published SQLite ledger would not have named them.
"""

from __future__ import annotations

from pathlib import Path

from warehouse import store
from warehouse.ledger import DONE_STATUSES, Ledger
from warehouse.ledger_server import LedgerConflict, adopt_sqlite, safe_url

SQLITE_LEDGER = "_ledger.sqlite"  # the warehouse's own ledger (tthc.settings' default, objectstore.LEDGER)
HELD = "_held"  # staged files a critical check holds out of core (transforms.ingest.batches.HELD_DIR)
LAYERS = ("raw_", "stg_", "quarantine_")


def batch_files(warehouse: Path) -> dict[str, set[str]]:
    """Batch id -> the layers (``raw_``, ``stg_``, ``quarantine_``) holding a file of it; a held staged file counts
    as ``stg_``."""
    root = Path(warehouse)
    out: dict[str, set[str]] = {}
    for table in store.list_tables(root):
        layer = next((p for p in LAYERS if table.startswith(p)), None)
        if layer is not None:
            for f in store.table_files(root, table):
                out.setdefault(f.stem, set()).add(layer)
    if (root / HELD).is_dir():
        for f in (root / HELD).glob(f"stg_*/{store.PARQUET_GLOB}"):
            out.setdefault(f.stem, set()).add("stg_")
    return out


def attach(warehouse: Path, url: str) -> list[str]:
    """Make ``url`` the warehouse's one ledger (see the module's docstring); returns what was done, as notes.
    Raises ``LedgerConflict`` (one sentence) when the two cannot be one history."""
    notes = []
    own = Path(warehouse).resolve() / SQLITE_LEDGER
    if own.is_file():
        n = adopt_sqlite(own, url)
        notes.append(f"the warehouse's ledger {SQLITE_LEDGER} moved into {safe_url(url)} ({n} batches)" if n else
                     f"{SQLITE_LEDGER} set aside: {safe_url(url)} already held its runs and batches")
    files = batch_files(warehouse)
    if files:
        led = Ledger(url)
        try:
            known = led.batch_ids()
        finally:
            led.dispose()
        if not known & files.keys():
            raise LedgerConflict(f"the ledger {safe_url(url)} names none of the {len(files)} batches whose files "
                                 f"are in {warehouse}: point the ledger URL at this warehouse's ledger (a new "
                                 f"database for a warehouse whose ledger is elsewhere would take every file again)")
    return notes


def forget_unpublished(warehouse: Path, url: str) -> list[str]:
    """After ``pull`` (the local copy is what was published): the batches ``url`` counts as taken (staged, passed,
    held) without every file their row counts call for are forgotten (files removed, ledger rows failed).
    Returns their ids."""
    files = batch_files(warehouse)
    led = Ledger(url)
    try:
        gone = []
        for b in led.batches_with_status(DONE_STATUSES):
            need = {layer for layer, n in (("raw_", b["rows_raw"]), ("stg_", b["rows_staged"]),
                                           ("quarantine_", b["rows_quarantined"])) if n}
            if not need <= files.get(b["batch_id"], set()):
                gone.append(b["batch_id"])
        if gone:
            store.remove_batch_files(warehouse, gone)
            for f in (Path(warehouse) / HELD).glob(f"stg_*/{store.PARQUET_GLOB}"):
                if f.stem in gone:
                    f.unlink()
            led.mark_unpublished(gone)
        return gone
    finally:
        led.dispose()
