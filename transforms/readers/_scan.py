"""Looking at text cheaply: whether values need NFC normalisation (and doing it), C1 control characters, and the
footer rows ("Tổng cộng", "Người lập biểu") an export may end with; the notes that say what was skipped."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


# --------------------------------------------------------------------------------------------- NFC
# Text made only of U+0000-U+02FF (ASCII, Latin-1, Latin Extended-A/B, IPA, spacing modifiers) and U+1E00-U+1EFF
# (Latin Extended Additional: every precomposed Vietnamese letter with its tone mark) is NFC as it stands: none
# of these characters changes under NFC or combines with the one before it (tests/unit/readers checks this over
# the whole ranges). In UTF-8 their lead bytes are below 0xCC, or 0xE1 followed by 0xB8-0xBB. A column whose
# bytes show anything else (a combining mark U+0300-U+036F of a file saved in NFD, another script) is
# normalised with pyarrow's utf8_normalize; the usual column costs a few numpy passes over its bytes.
def _value_bytes(arr: pa.Array) -> np.ndarray | None:
    """The bytes of the values of a string array (only the slice's own range), or None when it has none."""
    if len(arr) == 0 or arr.null_count == len(arr):
        return None
    bufs = arr.buffers()
    if len(bufs) < 3 or bufs[2] is None:
        return None
    off_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(bufs[1], dtype=off_type)
    start, end = int(offsets[arr.offset]), int(offsets[arr.offset + len(arr)])
    return np.frombuffer(bufs[2], dtype=np.uint8)[start:end]


def _count_pairs(d: np.ndarray, mask: int, value: int) -> int:
    """How many byte pairs (d[i], d[i+1]) satisfy ``(d[i] | d[i+1] << 8) & mask == value``, at any i."""
    n = 0
    for a in (0, 1):
        m = (d.size - a) // 2
        if m:
            n += int(np.count_nonzero((d[a:a + 2 * m].view("<u2") & mask) == value))
    return n


def may_need_nfc(d: np.ndarray, top: int | None = None) -> bool:
    """False when the UTF-8 bytes certainly hold NFC text (see above); True when they may not. ``top``: d.max()
    when already known."""
    if d.size == 0 or (int(d.max()) if top is None else top) < 0xCC:
        return False
    high = int(np.count_nonzero(d >= 0xCC))
    return _count_pairs(d, 0xFCFF, 0xB8E1) != high  # every lead byte >= 0xCC is 0xE1 then 0xB8-0xBB


def nfc(arr: pa.Array) -> pa.Array:
    """The string array NFC-normalised (the same array when it already is)."""
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return arr
    d = _value_bytes(arr)
    if d is None or not may_need_nfc(d):
        return arr
    return pc.utf8_normalize(arr, "NFC")


_C1 = "[\u0080-\u009f]"


def scan_text(arr: pa.Array) -> tuple[pa.Array, int | None, str | None]:
    """One look at a UTF-8 string array's bytes: (the array NFC-normalised, index of the first value holding
    U+FFFD or a C1 control, that character) - (arr, None, None) for the usual clean column. Pure ASCII costs one
    numpy pass; text with letters beyond ASCII a few more, and a search only where a bad character may be."""
    d = _value_bytes(arr)
    if d is None:
        return arr, None, None
    top = int(d.max())
    if top < 0xC2:  # ASCII only
        return arr, None, None
    for pattern, present in ((_C1, bool((d == 0xC2).any()) and _count_pairs(d, 0xE0FF, 0x80C2) > 0),
                             ("\ufffd", top >= 0xEF and bool((d == 0xEF).any()))):
        if present:
            hits = np.flatnonzero(pc.fill_null(pc.match_substring_regex(arr, pattern), False)
                                  .to_numpy(zero_copy_only=False))
            if hits.size:
                row = int(hits[0])
                found = pc.extract_regex(arr[row:row + 1], f"(?P<c>{pattern})")[0]["c"].as_py()
                return arr, row, found
    if may_need_nfc(d, top):
        arr = pc.utf8_normalize(arr, "NFC")
    return arr, None, None


# --------------------------------------------------------------------------------------------- footers
# A footer is recognised by what it is: a row whose first non-empty cell starts with a word that opens the
# closing block of a Vietnamese report (totals, signatures, notes, recipients), or a row holding a single
# non-empty cell of text outside the key columns (a signature, a place and date line, a title). Rows after a
# footer are read as data when they carry every key column (another table part), else listed as footer rows.
_FOOTER_WORDS = re.compile(
    r"^\W*(tổng|cộng|người\s+lập|người\s+ký|người\s+duyệt|người\s+kiểm\s+tra|người\s+tổng\s+hợp|ghi\s+chú|"
    r"lưu\s+ý|chú\s+thích|nơi\s+nhận|ký|xác\s+nhận|thủ\s+trưởng|trưởng\s+phòng|phó\s+trưởng|giám\s+đốc|"
    r"chủ\s+tịch|lãnh\s+đạo|cán\s+bộ\s+lập)(?!\w)")


def footer_words(text: str) -> bool:
    return bool(_FOOTER_WORDS.match(unicodedata.normalize("NFC", text).casefold()))


def is_footer_start(cells: Sequence[str | None], key_idx: set[int], texts: Sequence[bool] | None = None) -> bool:
    """``cells``: the row's texts (None when empty); ``key_idx``: positions of key columns; ``texts``: whether
    each cell is text (XLSX knows: numbers and dates are not), else text means holding a letter."""
    filled = [(i, c) for i, c in enumerate(cells) if c is not None]
    if not filled:
        return False
    if footer_words(filled[0][1]):
        return True
    if len(filled) == 1:
        i, c = filled[0]
        is_text = texts[i] if texts is not None and i < len(texts) else any(ch.isalpha() for ch in c)
        return is_text and i not in key_idx
    return False


def line_list(nums: Sequence[int], limit: int = 12) -> str:
    """``[3, 4, 5, 9]`` -> ``'3-5, 9'``; long lists end with ``'... (N in all)'``."""
    parts: list[str] = []
    nums = sorted(nums)
    i = 0
    while i < len(nums) and len(parts) < limit:
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        parts.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    text = ", ".join(parts)
    return text + (f", ... ({len(nums)} in all)" if i < len(nums) else "")


def note_skipped(res_notes: list[str], skipped: dict[str, list[int]], where: str, unit: str) -> None:
    """Sentences for the rows a reader saw and did not take as data (``unit``: 'line' or 'row')."""
    blank = skipped.get("blank") or []
    if blank:
        res_notes.append(f"{where}: {len(blank)} blank {unit}{'s' if len(blank) > 1 else ''} skipped "
                         f"({unit}{'s' if len(blank) > 1 else ''} {line_list(blank)})")
    foot = skipped.get("footer") or []
    if foot:
        res_notes.append(f"{where}: {len(foot)} {unit}{'s' if len(foot) > 1 else ''} of the footer below the data "
                         f"not read as data ({unit}{'s' if len(foot) > 1 else ''} {line_list(foot)})")
