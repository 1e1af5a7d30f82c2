"""What staging prepares in Arrow before the SQL: the raw columns of an entity, each value trimmed (as DuckDB's
``trim`` would, cheaper here) and the chunk's control-character flag; the ingest's memory pool."""

from __future__ import annotations

from transforms.contracts import mapping
from transforms.readers._headers import raw_canonical_names



# What DuckDB's trim() removes from both ends: exactly the Unicode space separators (category Zs); not tab or
# line breaks. trim_for_staging does the same in Arrow (measured: ~3x cheaper than trimming in the SQL).
ZS_CHARS = " \u00a0\u1680" + "".join(chr(c) for c in range(0x2000, 0x200B)) + "\u202f\u205f\u3000"
TRIMMED = "__s_"


_POOL = None


def ingest_memory_pool():
    """The Arrow memory pool of the ingest's big, short-lived buffers (CSV blocks, trimmed text, Parquet pages).

    jemalloc that keeps freed pages for 10 s: with the default pool the 1M-row ingest spent ~0.8 CPU-s more,
    much of it zeroing pages the allocator had just handed back to the system. Falls back to the default pool
    when pyarrow was built without jemalloc. Only the ingest uses it, so other work keeps the default.
    """
    global _POOL
    if _POOL is None:
        import pyarrow as pa

        try:
            pool = pa.jemalloc_memory_pool()
            pa.jemalloc_set_decay_ms(10_000)
        except (NotImplementedError, pa.ArrowNotImplementedError):
            pool = pa.default_memory_pool()
        _POOL = pool
    return _POOL


def trim_for_staging(table, columns: list[str]):
    """``table`` plus ``__s_<col>``: each of ``columns`` trimmed of Zs characters (what ``pretrimmed`` reads)."""
    import pyarrow.compute as pc

    pool = ingest_memory_pool()
    for c in columns:
        table = table.append_column(TRIMMED + c, pc.utf8_trim(table.column(c), ZS_CHARS, memory_pool=pool))
    return table


# C0 control characters except tab, line feed and carriage return (RE2 syntax, for DuckDB and Arrow alike)
CONTROL_CHARS = r"[\x00-\x08\x0B\x0C\x0E-\x1F]"
HAS_CONTROL = "__cc"


def control_columns(entity: str, fmt: str) -> list[str]:
    """The raw columns the format maps for the entity: the ones a control character is looked for in."""
    mapped = mapping(fmt)["entities"].get(entity, {})
    return [rc for rc in raw_columns(entity) if rc in mapped]


def _has_control_byte(data) -> bool:
    """Whether a text buffer holds a C0 control byte other than tab, LF, CR. UTF-8 never uses bytes below 0x20
    inside a multi-byte character, so the bytes say it; one SIMD pass (the buffer's minimum) clears a clean one."""
    import numpy as np

    b = np.frombuffer(data, np.uint8)
    if not b.size or b.min() >= 0x20:
        return False
    counts = np.bincount(b[b < 0x20], minlength=0x20)
    counts[list(ALLOWED_C0)] = 0
    return bool(counts.any())


ALLOWED_C0 = (0x09, 0x0A, 0x0D)


def mark_control_characters(table, columns: list[str]):
    """``table`` plus ``__cc``, the same on every row: whether some value of ``columns`` in this chunk holds a
    control character. Each column's text buffer is looked at once as bytes (~0.04 CPU-s per million dossier
    rows); ChunkStager stages a clean chunk with SQL that has no control-character rule (each such rule reads a
    raw column the staging SQL otherwise leaves alone: +6% of the staging SQL's time on a clean file)."""
    import pyarrow as pa

    columns = [c for c in columns if pa.types.is_string(table.schema.field(c).type)
               or pa.types.is_large_string(table.schema.field(c).type)]
    hit = any(_has_control_byte(chunk.buffers()[2]) for c in columns for chunk in table.column(c).chunks
              if chunk.null_count < len(chunk) and chunk.buffers()[2] is not None)
    n = table.num_rows
    return table.append_column(HAS_CONTROL, pa.repeat(pa.scalar(hit), n) if n else pa.array([], pa.bool_()))



def raw_columns(entity: str) -> list[str]:
    """Every canonical column any mapping file gives this entity: the raw table's fixed schema."""
    return list(raw_canonical_names(entity))
