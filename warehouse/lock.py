"""One writer at a time per warehouse: the nightly and pull flows hold an exclusive lock while they run.

An OS file lock (``flock``) on ``<warehouse>/.lock``: the kernel releases it when the process ends, however it
ends, so a killed run never leaves a stale lock. Crash recovery runs only under the lock, so it can never mistake
a batch another live run is writing for a crashed one.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class WarehouseBusy(RuntimeError):
    pass


@contextmanager
def warehouse_lock(warehouse: Path, wait_seconds: float = 1800, poll: float = 1.0) -> Iterator[None]:
    path = Path(warehouse) / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait_seconds
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise WarehouseBusy(f"another run holds {path} (waited {wait_seconds:.0f} s); try again later")
                time.sleep(poll)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
