"""The warehouse's small JSON state files (core's build state ``_core_meta.json``, a mart generation's
``_generation.json``, the kept agency list's record): read, and written atomically (aside, flushed, renamed)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path


def read_state(path: Path) -> dict:
    """The JSON object in ``path``; {} when there is no such file (a broken one raises ``ValueError``)."""
    p = Path(path)
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else {}


def write_state(path: Path, state: dict, *, indent: int | None = None, mode: int | None = None) -> None:
    """Replace ``path`` with ``state`` as JSON (keys sorted, non-ASCII kept): written aside, flushed to disk, then
    renamed, so a reader sees the old file or the new one, never half of one."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(state, sort_keys=True, ensure_ascii=False, indent=indent, default=str))
        fh.flush()
        os.fsync(fh.fileno())
    if mode is not None:
        os.chmod(tmp, mode)
    tmp.replace(p)
