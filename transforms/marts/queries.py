"""The static SQL of the marts, kept in ``sql/<name>.sql`` beside this module (shipped as package data).

A file may hold ``${name}`` placeholders (``string.Template``: SQL's own braces, as in struct literals, stay as
they are), filled by ``query(name, name=value, ...)``; a placeholder left unfilled raises ``KeyError``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from string import Template

SQL_DIR = Path(__file__).resolve().parent / "sql"


@cache
def _template(name: str) -> Template:
    return Template((SQL_DIR / f"{name}.sql").read_text(encoding="utf-8"))


def query(name: str, **values: object) -> str:
    """The text of ``sql/<name>.sql`` with its placeholders filled."""
    return _template(name).substitute({k: str(v) for k, v in values.items()})
