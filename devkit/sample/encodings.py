"""Legacy text encodings seen in real exports: Windows-1258 and text damaged by a CP1252 round trip."""

from __future__ import annotations

import unicodedata

# Vietnamese tone marks: Windows-1258 text carries them as combining characters after the base letter
_TONES = {"\u0300", "\u0301", "\u0303", "\u0309", "\u0323"}


def encode_cp1258(text: str) -> bytes:
    """Encode as Windows-1258 the way Vietnamese Windows software does: base letter (with its breve, circumflex
    or horn, which cp1258 has precomposed) followed by a combining tone mark; a precomposed character is used
    where the decomposed form cannot be encoded."""
    out = bytearray()
    for ch in text:
        if ord(ch) < 128:
            out.append(ord(ch))
            continue
        decomposed = unicodedata.normalize("NFD", ch)
        tones = "".join(c for c in decomposed if c in _TONES)
        base = unicodedata.normalize("NFC", "".join(c for c in decomposed if c not in _TONES))
        try:
            out += (base + tones).encode("cp1258")
        except UnicodeEncodeError:
            out += ch.encode("cp1258")  # raises for characters cp1258 cannot hold at all
    return bytes(out)


# bytes cp1252 leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D) become the C1 control of the same value, as
# Windows' conversion does; this keeps the damage reversible
_CP1252_TABLE = []
for _i in range(256):
    try:
        _CP1252_TABLE.append(bytes([_i]).decode("cp1252"))
    except UnicodeDecodeError:
        _CP1252_TABLE.append(chr(_i))


def cp1252_mojibake(text: str) -> str:
    """UTF-8 bytes read as CP1252 (e.g. 'Mã' -> 'MÃ£'); save the result as UTF-8 to get a damaged file."""
    return "".join(_CP1252_TABLE[b] for b in text.encode("utf-8"))


def undo_cp1252_mojibake(text: str) -> str:
    """Inverse of cp1252_mojibake (used by tests)."""
    rev = {c: i for i, c in enumerate(_CP1252_TABLE)}
    return bytes(rev[c] for c in text).decode("utf-8")
