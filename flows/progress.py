"""A hook the CLI sets to draw progress bars while a flow runs in-process (no-op on a worker)."""

from __future__ import annotations

from collections.abc import Callable

_callback: Callable[[str, int, int, str], None] | None = None


def set_callback(cb: Callable[[str, int, int, str], None] | None) -> None:
    global _callback
    _callback = cb


def report(stage: str, done: int, total: int, detail: str = "") -> None:
    if _callback is not None:
        _callback(stage, done, total, detail)
