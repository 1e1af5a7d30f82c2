"""The physical line of each CSV row pyarrow gives (``_source_line``), counted without per-row Python.

pyarrow skips the physical lines up to the header's end (a quoted line break in a title counts as one), numbers
the rows it reports as bad (the wrong number of fields: handed to ``on_invalid`` and left out of its batches)
from the first line on, and gives a row with line breaks inside quoted cells as one row: a row's number, shifted
past the bad rows before it, plus the line breaks inside cells before it is its physical line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def newlines_per_row(batch: pa.RecordBatch) -> np.ndarray | None:
    """Line breaks inside quoted cells, per row (None when the batch has none: the usual, cheap case)."""
    per_row = None
    for col in batch.columns:
        bufs = col.buffers()
        if len(bufs) < 3 or bufs[2] is None or col.null_count == len(col):
            continue
        if not (np.frombuffer(bufs[2], dtype=np.uint8) == 10).any():
            continue  # no line break anywhere in this column's data: nothing to count
        counts = pc.fill_null(pc.count_substring(col, "\n"), 0).to_numpy(zero_copy_only=False).astype(np.int64)
        per_row = counts if per_row is None else per_row + counts
    return per_row


def physical_lines(r: np.ndarray, nl: np.ndarray | None, base: int, cands: list[tuple[int, str]]
          ) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Physical lines of a batch's rows (pyarrow row numbers ``r``, shifted in place past the bad rows
    ``cands`` that fall among them) and of those bad rows; ``base``: line breaks inside cells before the
    batch. Bad rows after the batch are left out."""
    placed: list[tuple[int, str]] = []
    for x, text in cands:  # ascending
        if not r.size or x > r[-1]:
            break
        r[r >= x] += 1
        placed.append((x, text))
    lines = r + base
    cum = None
    if nl is not None:
        cum = np.cumsum(nl)
        lines += cum - nl
    out: list[tuple[int, str]] = []
    inv_nl = 0
    for x, text in placed:
        before = int(np.searchsorted(r, x))
        out.append((x + base + inv_nl + (int(cum[before - 1]) if cum is not None and before else 0), text))
        k = text.count("\n")
        if k:  # a bad row's own line breaks move the rows after it
            lines[r > x] += k
            inv_nl += k
    return lines, out


@dataclass
class LineCounter:
    """Where the stream is: what pyarrow gave so far, and the bad rows it reported."""

    skip_rows: int  # physical lines pyarrow skips (up to the header's end)
    last_line: int  # the last line read
    invalid: list[tuple[int, str]] = field(default_factory=list)  # (pyarrow row number, text) of bad rows
    valid_seen: int = 0  # rows pyarrow gave so far
    inv_used: int = 0  # bad rows placed so far
    extra_lines: int = 0  # line breaks inside quoted cells of the rows so far

    def on_invalid(self, row) -> str:
        """pyarrow's ``invalid_row_handler``: the row is noted and skipped."""
        self.invalid.append((row.number, row.text))
        return "skip"

    def place(self, batch: pa.RecordBatch) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """The physical lines of the batch's rows, and (line, text) of the bad rows among them."""
        n = batch.num_rows
        r = self.skip_rows + 1 + self.valid_seen + self.inv_used + np.arange(n, dtype=np.int64)
        nl = newlines_per_row(batch)
        lines, placed = physical_lines(r, nl, self.extra_lines, sorted(self.invalid[self.inv_used:]))
        self.inv_used += len(placed)
        self.valid_seen += n
        self.extra_lines += (int(nl.sum()) if nl is not None else 0) + sum(t.count("\n") for _, t in placed)
        self.last_line = int(lines[-1])
        return lines, placed

    def bad_rows_left(self) -> list[tuple[int, str]]:
        """(line, text) of the bad rows after the last row pyarrow gave (at the end of the file)."""
        out: list[tuple[int, str]] = []
        inv_nl = 0
        for x, text in sorted(self.invalid[self.inv_used:]):
            out.append((x + self.extra_lines + inv_nl, text))
            inv_nl += text.count("\n")
        return out
