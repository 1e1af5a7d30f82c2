"""What every flow that writes to the warehouse does first and last: lock, ledger run, crash recovery."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from flows.naming import current_flow_run_id, name_flow_run
from transforms import ingest
from transforms.calendar import LOCAL_TZ
from tthc.settings import Settings
from warehouse import generations, store
from warehouse.ledger import Ledger
from warehouse.lock import warehouse_lock


@dataclass
class WarehouseRun:
    run_id: str
    warehouse: Path
    ledger: Ledger
    rolled_back: list[str]


@contextmanager
def warehouse_run(settings: Settings, prefix: str, as_of: date | None, label: str) -> Iterator[WarehouseRun]:
    """Hold the warehouse's lock, record a run in the ledger, roll back what a killed run left; on an error the
    run is recorded failed (and the error raised again); the ledger and the lock are always released."""
    store.use_warehouse_umask()  # explicit modes whatever the operator's umask (store.WAREHOUSE_UMASK)
    wh = Path(settings.warehouse)
    wh.mkdir(parents=True, exist_ok=True)
    with warehouse_lock(wh):  # one writer per warehouse; recovery only under the lock
        ledger = Ledger(settings.resolved_ledger_url)
        run_id = f"{prefix}{datetime.now(LOCAL_TZ):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        try:
            ledger.start_run(run_id, as_of, label, flow_run_id=current_flow_run_id())
            name_flow_run(run_id, as_of)  # the server's UI shows the run id and data date, not 'brave-otter'
            rolled_back = ingest.recover(wh, ledger, run_id)
            generations.recover_generations(wh)  # a publish of the marts killed midway: its work goes, links are made
            yield WarehouseRun(run_id, wh, ledger, rolled_back)
        except BaseException as exc:
            ledger.finish_run(run_id, "failed", {"error": f"{type(exc).__name__}: {exc}"})
            raise
        finally:
            ledger.dispose()
