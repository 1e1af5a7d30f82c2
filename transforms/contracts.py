"""Loads the table contracts (expectations/tables/*.yaml), the code lists and the column mappings.

These files are data: adding a vendor's header spelling or a label is an edit there, not here.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

EXPECTATIONS_DIR = Path(__file__).resolve().parent.parent / "expectations"
MAPPINGS_DIR = Path(__file__).resolve().parent / "mappings"

ENTITY_SOURCE = {
    "dossiers": "one_stop",
    "procedures": "dvc_portal",
    "payments": "dvc_portal",
    "ratings": "dvc_portal",
    "feedback": "dvc_portal",
    "e_certifications": "dvc_portal",
}
FORMATS = ("flat_export", "national_sync", "onestop_sql")


def norm_label(s: str) -> str:
    """How labels and headers are compared: NFC, case-folded, spaces collapsed."""
    return " ".join(unicodedata.normalize("NFC", str(s)).casefold().split())


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    required: bool = False
    codes: str | None = None
    default: Any = None
    min: float | None = None
    pii: str | None = None
    pseudonym: str | None = None
    fallback: str | None = None
    required_unless: dict | None = None
    pattern: str | None = None
    vi: str = ""
    en: str = ""


@dataclass(frozen=True)
class Contract:
    table: str
    source: str | None
    entity: str | None
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    vi: str = ""
    en: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.table} has no column {name!r}")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


@cache
def contract(table: str) -> Contract:
    path = EXPECTATIONS_DIR / "tables" / f"{table}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    known = set(Column.__dataclass_fields__)
    cols = tuple(Column(**{k: v for k, v in c.items() if k in known}) for c in data["columns"])
    return Contract(table=data["table"], source=data.get("source"), entity=data.get("entity"),
                    key=tuple(data.get("key", ())), columns=cols, vi=data.get("vi", ""), en=data.get("en", ""),
                    extra={k: v for k, v in data.items() if k not in {"table", "source", "entity", "key",
                                                                        "columns", "vi", "en"}})


def all_contracts() -> list[Contract]:
    return [contract(p.stem) for p in sorted((EXPECTATIONS_DIR / "tables").glob("*.yaml"))]


@cache
def code_lists() -> dict[str, dict[Any, list[str]]]:
    return yaml.safe_load((EXPECTATIONS_DIR / "codes.yaml").read_text(encoding="utf-8"))


def code_lookup(list_name: str) -> dict[str, Any]:
    """normalized label or code text -> canonical code."""
    out: dict[str, Any] = {}
    for code, labels in code_lists()[list_name].items():
        out[norm_label(str(code))] = code
        for lab in labels:
            out[norm_label(lab)] = code
    return out


def code_is_numeric(list_name: str) -> bool:
    return all(isinstance(k, int) for k in code_lists()[list_name])


# What each contract type is in the two engines: (DuckDB type, Arrow/Parquet type name as the GX suites check it).
# A ``code`` is numeric or text by its code list (``code_is_numeric``); ``map`` exists only in marts (Arrow).
ENGINE_TYPES: dict[str, tuple[str | None, str]] = {
    "string": ("VARCHAR", "string"), "agency": ("VARCHAR", "string"), "code_list": ("VARCHAR", "string"),
    "int": ("BIGINT", "int64"), "money": ("BIGINT", "int64"), "bool": ("BOOLEAN", "bool"),
    "timestamp": ("TIMESTAMP", "timestamp"), "date": ("DATE", "date32"), "double": ("DOUBLE", "double"),
    "supplement_list": ("STRUCT(requested_at TIMESTAMP, received_at TIMESTAMP)[]", "list"), "map": (None, "map"),
}


def duckdb_type(col_type: str, codes: str | None = None) -> str:
    """The DuckDB type of a contract column (``codes``: its code list, for type ``code``)."""
    if col_type == "code":
        return "BIGINT" if code_is_numeric(codes) else "VARCHAR"
    duck = ENGINE_TYPES.get(col_type, (None, None))[0]
    if duck is None:
        raise ValueError(f"unknown contract type {col_type!r}")
    return duck


def arrow_type(col_type: str, codes: str | None = None) -> str:
    """The Arrow type name of a contract column in a staged file (unknown types: ``string``)."""
    if col_type == "code":
        return "int64" if code_is_numeric(codes) else "string"
    return ENGINE_TYPES.get(col_type, (None, "string"))[1]


@cache
def mapping(fmt: str) -> dict:
    return yaml.safe_load((MAPPINGS_DIR / f"{fmt}.yaml").read_text(encoding="utf-8"))


def source_header(fmt: str, entity: str, canonical: str) -> str:
    """The column name a person sees in a file of this format (the first alias), for messages."""
    ent = mapping(fmt)["entities"].get(entity, {})
    v = ent.get(canonical)
    if isinstance(v, list):
        return v[0]
    return v or canonical


def stg_table(source: str, entity: str) -> str:
    return f"stg_{source}__{entity}"


def raw_table(source: str, entity: str) -> str:
    return f"raw_{source}__{entity}"


def quarantine_table(source: str, entity: str) -> str:
    return f"quarantine_{source}__{entity}"
