"""Text files in the encodings offices' exports come in: detection from the bytes, transcoding to UTF-8 for the
streaming CSV parser, and the line a decoding problem is on.

Detected, in this order: a byte order mark (UTF-8, UTF-16 LE/BE); UTF-16 without a BOM (one byte of nearly every
pair is 0 in text that is mostly ASCII: CSV separators, digits, codes); valid UTF-8; Windows-1258 (cp1258, the
Vietnamese ANSI code page; its text is NFC-normalised, since cp1258 writes tone marks as combining characters).
UTF-8 text showing the CP1252 round-trip damage ("MÃ£ há»“ sÆ¡") is repaired by the CSV reader (``repair_mojibake``)
when the repair works for the whole file. A file that is UTF-8 up to a line and something else after it is
rejected at that line (mixed encodings cannot be read with certainty).

Decoded text must not hold U+FFFD (characters lost in an earlier conversion) or C1 controls U+0080-U+009F (text
decoded with the wrong code page): the encoding is wrong, and the file is rejected naming the line. C0 controls
(NUL, ESC, BEL, ...) are kept as they are: they damage a value, not the file, and staging quarantines that row
(rule ``control_character``).
"""

from __future__ import annotations

import codecs
import io
import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

BOM_UTF8 = b"\xef\xbb\xbf"
BOM_UTF16_LE = b"\xff\xfe"
BOM_UTF16_BE = b"\xfe\xff"
BAD_CHARS = re.compile("[\x80-\x9f\ufffd]")
IN_MEMORY_TRANSCODE_MAX = 256 << 20  # text larger than this is transcoded into a temporary file
TRANSCODE_CHUNK = 8 << 20

_CODEC = {"utf-8": "utf-8", "utf-16-le": "utf-16-le", "utf-16-be": "utf-16-be", "cp1258": "cp1258",
          "mojibake": "utf-8"}


class DecodeProblem(Exception):
    """The text cannot be decoded with certainty; ``line`` is where (1-based), ``detail`` says what was found."""

    def __init__(self, line: int, detail: str):
        self.line = line
        self.detail = detail
        super().__init__(f"line {line}: {detail}")


@dataclass(frozen=True)
class Encoding:
    kind: str  # 'utf-8' | 'utf-16-le' | 'utf-16-be' | 'cp1258' | 'mojibake'
    bom: int = 0  # bytes of byte order mark at the start of the file
    certain: bool = True  # False: a guess that the header must confirm (cp1258, mojibake, UTF-16 without BOM)

    @property
    def label(self) -> str:
        """What ``ReadResult.encoding`` says."""
        if self.kind == "utf-8":
            return "utf-8-sig" if self.bom else "utf-8"
        if self.kind == "mojibake":
            return "cp1252-mojibake-repaired"
        return self.kind

    @property
    def describe(self) -> str:
        return {"utf-8": "UTF-8", "utf-16-le": "UTF-16 (little-endian)", "utf-16-be": "UTF-16 (big-endian)",
                "cp1258": "Windows-1258 (cp1258)", "mojibake": "UTF-8 damaged by a CP1252 round trip"}[self.kind]


# --------------------------------------------------------------------------------------------- mojibake
def _c1_passthrough(err: UnicodeError):
    """cp1252 leaves 0x81, 0x8D, 0x8F, 0x90, 0x9D undefined; Windows maps them to U+0081.. when it damages
    text, so encoding back maps those C1 characters to the same byte."""
    if isinstance(err, UnicodeEncodeError):
        chunk = err.object[err.start:err.end]
        if all(0x80 <= ord(ch) <= 0x9F for ch in chunk):
            return bytes(ord(ch) for ch in chunk), err.end
    raise err


codecs.register_error("tthc_c1_passthrough", _c1_passthrough)


def repair_mojibake(text: str) -> str:
    """Undoes a CP1252 round trip ("Ä‘" -> "đ"); raises UnicodeError when the text is not such damage."""
    return text.encode("cp1252", errors="tthc_c1_passthrough").decode("utf-8")


def looks_like_mojibake(text: str) -> bool:
    """True when the text survives the CP1252 round trip and changes: real Vietnamese text cannot (its letters
    are outside CP1252), damaged text can."""
    try:
        fixed = repair_mojibake(text)
    except UnicodeError:
        return False
    return fixed != text


# --------------------------------------------------------------------------------------------- detection
def bom_of(head: bytes) -> Encoding | None:
    if head.startswith(BOM_UTF8):
        return Encoding("utf-8", 3)
    if head.startswith(b"\xff\xfe\x00\x00") or head.startswith(b"\x00\x00\xfe\xff"):
        return None  # UTF-32: not read (named by the caller's detection as not text it knows)
    if head.startswith(BOM_UTF16_LE):
        return Encoding("utf-16-le", 2)
    if head.startswith(BOM_UTF16_BE):
        return Encoding("utf-16-be", 2)
    return None


def utf16_without_bom(head: bytes) -> str | None:
    """'utf-16-le' / 'utf-16-be' when one byte of nearly every pair is 0 and the other almost never is."""
    n = min(len(head), 8192) & ~1
    if n < 8:
        return None
    b = np.frombuffer(head[:n], dtype=np.uint8)
    zeros_even = float(np.count_nonzero(b[0::2] == 0)) / (n // 2)
    zeros_odd = float(np.count_nonzero(b[1::2] == 0)) / (n // 2)
    if zeros_odd >= 0.3 and zeros_even <= 0.02:
        return "utf-16-le"
    if zeros_even >= 0.3 and zeros_odd <= 0.02:
        return "utf-16-be"
    return None


def _line_at(data: bytes, pos: int, kind: str) -> int:
    """1-based line of byte ``pos`` of ``data`` (text of ``kind`` from its start)."""
    if kind.startswith("utf-16"):
        return data[:pos - pos % 2].decode(kind, errors="replace").count("\n") + 1
    return data[:pos].count(b"\n") + 1


def _hex(bs: bytes) -> str:
    return " ".join(f"0x{b:02X}" for b in bs[:4])


def decode_sample(sample: bytes, complete: bool) -> tuple[Encoding, str]:
    """The encoding of a file from its first bytes (``complete``: they are the whole file) and their text, cut
    to whole lines. Raises DecodeProblem when the bytes are no text this module reads."""
    enc = bom_of(sample)
    if enc is None:
        if sample.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
            raise DecodeProblem(1, "the file is UTF-32 text (byte order mark FF FE 00 00)")
        k = utf16_without_bom(sample)
        enc = Encoding(k, 0, certain=False) if k else Encoding("utf-8", 0)
    body = sample[enc.bom:]
    if enc.kind.startswith("utf-16"):
        if not complete:
            body = body[:len(body) & ~1]
        try:
            text = codecs.getincrementaldecoder(enc.kind)().decode(body, final=complete)
        except UnicodeDecodeError as e:
            raise DecodeProblem(_line_at(body, e.start, enc.kind),
                                f"bytes {_hex(body[e.start:e.end])} are not {enc.describe} text") from None
        return enc, _whole_lines(text, complete)
    if not complete:  # judge whole lines only
        cut = body.rfind(b"\n")
        body = body[:cut + 1] if cut > 0 else body
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(body, final=complete)
        return enc, text
    except UnicodeDecodeError as e:
        bad_line = _line_at(body, e.start, "utf-8")
        prefix = body[:e.start]
        if enc.bom or any(b >= 0x80 for b in prefix):  # UTF-8 text before, something else from here
            raise DecodeProblem(bad_line, f"bytes {_hex(body[e.start:e.start + 4])} are not UTF-8, although the "
                                          f"text before line {bad_line} is UTF-8 (mixed encodings)") from None
    try:
        text = unicodedata.normalize("NFC", body.decode("cp1258"))
    except UnicodeDecodeError as e:
        raise DecodeProblem(_line_at(body, e.start, "cp1258"),
                            f"byte {_hex(body[e.start:e.end])} is neither UTF-8 nor Windows-1258 "
                            f"(cp1258) text") from None
    return Encoding("cp1258", 0, certain=False), text


def _whole_lines(text: str, complete: bool) -> str:
    if complete:
        return text
    cut = text.rfind("\n")
    return text[:cut + 1] if cut > 0 else text


def bad_char_problem(text: str, first_line: int = 1) -> DecodeProblem | None:
    """A DecodeProblem for the first U+FFFD or C1 control of ``text`` (whose first line is ``first_line``)."""
    m = BAD_CHARS.search(text)
    if not m:
        return None
    line = first_line + text.count("\n", 0, m.start())
    ch = m.group()
    if ch == "\ufffd":
        what = "U+FFFD (the replacement character �): characters were lost when the file was converted"
    else:
        what = f"U+{ord(ch):04X}, a C1 control character: the text was decoded with the wrong code page"
    return DecodeProblem(line, what)


# --------------------------------------------------------------------------------------------- transcoding
def _convert(kind: str, piece: str, first_line: int) -> str:
    if kind == "cp1258":
        return unicodedata.normalize("NFC", piece)
    if kind == "mojibake":
        try:
            return repair_mojibake(piece)
        except UnicodeError:
            for i, line in enumerate(piece.split("\n")):  # the failing line, for the message
                try:
                    repair_mojibake(line)
                except UnicodeError:
                    raise DecodeProblem(first_line + i, "the CP1252 round-trip repair fails on this line "
                                                        "(the damage is not the same throughout)") from None
            raise DecodeProblem(first_line, "the CP1252 round-trip repair fails") from None
    return piece


def transcode(path: Path, enc: Encoding) -> tuple[pa.NativeFile, Path | None]:
    """The whole file decoded (``enc``), checked (``bad_char_problem``) and written as UTF-8 without BOM, in memory
    when small, else into a temporary file (mode 600, deleted by the caller). Work is done on whole lines, so
    combining sequences and multi-byte characters stay whole. Raises DecodeProblem with the line."""
    size = path.stat().st_size
    tmp_path: Path | None = None
    if size * (2 if enc.kind.startswith("utf-16") else 1) <= IN_MEMORY_TRANSCODE_MAX:
        out: io.BufferedIOBase = io.BytesIO()
    else:
        fd, name = tempfile.mkstemp(prefix=".tthc-transcode-", suffix=".csv")
        os.chmod(name, 0o600)  # may hold personal data
        tmp_path = Path(name)
        out = os.fdopen(fd, "wb")
    codec = _CODEC[enc.kind]
    dec = codecs.getincrementaldecoder(codec)()
    line_no = 1  # line of the first character of ``carry``
    carry = ""
    try:
        with path.open("rb") as fh:
            fh.seek(enc.bom)
            while True:
                chunk = fh.read(TRANSCODE_CHUNK)
                final = not chunk
                try:
                    text = dec.decode(chunk, final=final)
                except UnicodeDecodeError as e:
                    good = bytes(e.object[:e.start]).decode(codec, errors="replace")
                    line = line_no + carry.count("\n") + good.count("\n")
                    raise DecodeProblem(line, f"bytes {_hex(bytes(e.object[e.start:e.end]))} are not "
                                              f"{Encoding(enc.kind).describe} text") from None
                data = carry + text
                if final:
                    piece, carry = data, ""
                else:
                    cut = data.rfind("\n")
                    if cut < 0:
                        carry = data
                        continue
                    piece, carry = data[:cut + 1], data[cut + 1:]
                if piece:
                    piece = _convert(enc.kind, piece, line_no)
                    if line_no == 1:
                        piece = piece.removeprefix("\ufeff")
                    problem = bad_char_problem(piece, line_no)
                    if problem:
                        raise problem
                    out.write(piece.encode("utf-8"))
                    line_no += piece.count("\n")
                if final:
                    break
        if tmp_path is None:
            assert isinstance(out, io.BytesIO)
            return pa.BufferReader(pa.py_buffer(out.getvalue())), None
        out.close()
        return pa.OSFile(str(tmp_path), "rb"), tmp_path
    except BaseException:
        if tmp_path is not None:
            out.close()
            tmp_path.unlink(missing_ok=True)
        raise


def first_bad_utf8(path: Path, bom: int) -> DecodeProblem | None:
    """Where a UTF-8 file stops being UTF-8 (read again on that error path only), or None."""
    dec = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with path.open("rb") as fh:
        fh.seek(bom)
        while True:
            chunk = fh.read(TRANSCODE_CHUNK)
            try:
                text = dec.decode(chunk, final=not chunk)
            except UnicodeDecodeError as e:
                obj = bytes(e.object)
                at = line + obj[:e.start].count(b"\n")
                return DecodeProblem(at, f"bytes {_hex(obj[e.start:e.start + 4])} are not UTF-8, although the "
                                         f"text before line {at} is (mixed encodings)")
            line += text.count("\n")
            if not chunk:
                return None


def decode_all(data: bytes) -> tuple[Encoding, str]:
    """A whole small text file (JSON) decoded: BOM, UTF-16 without BOM, or UTF-8 (nothing else)."""
    enc = bom_of(data)
    if enc is None:
        k = utf16_without_bom(data)
        enc = Encoding(k, 0, certain=False) if k else Encoding("utf-8", 0)
    body = data[enc.bom:]
    try:
        text = body.decode(_CODEC[enc.kind])
    except UnicodeDecodeError as e:
        raise DecodeProblem(_line_at(body, e.start, enc.kind),
                            f"bytes {_hex(body[e.start:e.end])} are not {enc.describe} text") from None
    return enc, text
