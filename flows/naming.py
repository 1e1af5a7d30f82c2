"""Flow runs named after what an operator looks for: the pipeline's run id and data date.

Prefect gives each flow run a random name (``brave-otter``); the ledger, ``tthc status`` and the alerts speak of
run ids (``r20251231T013000-1a2b3c``). Once a flow knows its run id, ``name_flow_run`` renames its Prefect flow
run to ``<run id> as_of <date>``, so the server's UI and the ledger name the same run.
"""

from __future__ import annotations

import logging
from datetime import date

log = logging.getLogger(__name__)


def flow_run_title(run_id: str, as_of: date | None) -> str:
    return f"{run_id} as_of {as_of.isoformat()}" if as_of else run_id


def current_flow_run_id() -> str | None:
    """The Prefect flow run this code runs in, if any (Prefect is not imported for the asking)."""
    import sys

    if "prefect" not in sys.modules:
        return None
    try:
        from prefect.runtime import flow_run

        return str(flow_run.id) if flow_run.id else None
    except Exception:  # noqa: BLE001 - outside Prefect
        return None


def name_flow_run(run_id: str, as_of: date | None) -> None:
    """Rename the current Prefect flow run; best effort (a run is never failed for its name)."""
    try:
        from prefect import get_client
        from prefect.runtime import flow_run

        if not flow_run.id:
            return
        with get_client(sync_client=True) as client:
            client.update_flow_run(flow_run.id, name=flow_run_title(run_id, as_of))
    except Exception as exc:  # noqa: BLE001 - naming is cosmetic
        log.debug("could not rename the flow run: %s", exc)
