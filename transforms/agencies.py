"""agencies.csv, read like any input, and the warehouse's last good copy of it.

Reading (``read_agencies``): the text encoding is detected as for every export (``transforms.readers._text``: UTF-8
with or without BOM, UTF-16 with or without BOM, Windows-1258, UTF-8 damaged by a CP1252 round trip) and the text
NFC-normalised; the delimiter is the one of
``,`` ``;`` or tab under which the header line names the most agency columns; header names are matched after NFC,
casefold and spaces/hyphens taken as ``_``. Dates are ``YYYY-MM-DD`` or, as offices write them, ``DD/MM/YYYY``
(also ``DD-MM-YYYY``, ``DD.MM.YYYY``); levels are matched case-insensitively. Every problem found is one line:
file, line, column, what was expected (``AgenciesError.problems``).

The last good list (``for_night``): whenever the list reads cleanly, the warehouse keeps it, written the one way
core reads it (UTF-8, comma, ISO dates, the eight columns), atomically, with its SHA-256:
``<warehouse>/_config/agencies.last_good.csv`` and ``agencies.last_good.json``. Core, marts and the quality gate
read that copy. When today's list is broken, the night goes on with the copy and says so; with no copy kept, the
caller ingests nothing new and leaves core and marts as they were.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from transforms.calendar import LOCAL_TZ
from warehouse.state import read_state, write_state

COLUMNS = ["agency_code", "agency_name", "level", "parent_code", "valid_from", "valid_to", "successor_code",
           "legal_basis"]
REQUIRED = COLUMNS[:6]
LEVELS = {"province", "district", "commune", "department"}
CONFIG_DIR = "_config"
LAST_GOOD = "agencies.last_good.csv"
LAST_GOOD_META = "agencies.last_good.json"
MAX_PROBLEMS = 20  # lines of one message; the rest are counted

_DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%Y-%m-%d %H:%M:%S")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # (U+FFFD and C1: the readers' bad_char_problem)


class AgenciesError(ValueError):
    """agencies.csv cannot be used; ``problems`` are its one-line reasons (file, line, column, what was expected)."""

    def __init__(self, path: Path, problems: list[str]):
        self.path = Path(path)
        self.problems = list(problems)
        shown = self.problems[:MAX_PROBLEMS]
        more = len(self.problems) - len(shown)
        super().__init__("\n".join(shown + ([f"... and {more} more problem(s) in {self.path}"] if more else [])))


# ---------------------------------------------------------------------------------------------------- decoding
def decode(data: bytes, path: Path) -> tuple[str, str]:
    """(text, encoding) of the list, detected as for any export (``transforms.readers._text``: BOM, UTF-16 without
    BOM, UTF-8, Windows-1258, CP1252 round-trip damage repaired), NFC; raises AgenciesError naming the file."""
    from transforms.readers._text import (
        DecodeProblem,
        bad_char_problem,
        decode_sample,
        looks_like_mojibake,
        repair_mojibake,
    )

    def fail(line: int, detail: str):
        raise AgenciesError(path, [f"{path}, line {line}: {detail}; save the list as UTF-8 (CSV UTF-8 in Excel) "
                                   f"and run again"])

    try:
        enc, text = decode_sample(data, complete=True)
    except DecodeProblem as e:
        fail(e.line, f"the text encoding could not be determined ({e.detail})")
    name = enc.describe
    if enc.kind == "utf-8" and looks_like_mojibake(text):  # real Vietnamese cannot survive the round trip
        try:
            text, name = repair_mojibake(text), "UTF-8 repaired from a CP1252 round trip"
        except UnicodeError:
            pass
    text = unicodedata.normalize("NFC", text.lstrip("\ufeff"))
    bad = bad_char_problem(text)
    if bad is not None:
        fail(bad.line, f"{bad.detail} (read as {name})")
    m = _CONTROL.search(text)
    if m:
        fail(text.count("\n", 0, m.start()) + 1, f"control character U+{ord(m.group()):04X} in the text (read as "
                                                  f"{name})")
    return text, name


def header_key(name: str) -> str:
    """A header cell as it is matched: NFC, casefold, trimmed, spaces and hyphens as ``_``."""
    s = unicodedata.normalize("NFC", name).strip().strip('"').strip().casefold()
    return re.sub(r"[\s\-]+", "_", s)


def _sniff(line: str) -> str:
    """The delimiter (``,`` ``;`` tab) under which the header names the most agency columns (then most fields)."""
    best = None
    for d in (",", ";", "\t"):
        cells = next(csv.reader([line], delimiter=d), [])
        key = (sum(header_key(c) in COLUMNS for c in cells), len(cells))
        if best is None or key > best[0]:
            best = (key, d)
    return best[1]


def parse_date(value: str) -> date | None:
    for fmt in _DATE_FORMATS:
        try:
            dt = datetime.strptime(value, fmt)
        except ValueError:
            continue
        if fmt.endswith("%S") and dt.time() != datetime.min.time():
            return None  # a date with a time of day is not a validity date
        return dt.date()
    return None


# ---------------------------------------------------------------------------------------------------- reading
def read_agencies(path: Path) -> list[dict]:
    """The list's rows (``COLUMNS`` -> trimmed NFC text or None; level lower-case; dates ISO), checked; raises
    AgenciesError with every problem found."""
    path = Path(path)
    text, _encoding = decode(_read_bytes(path), path)
    table = _parse(path, text)
    rows = _rows(path, table)
    problems = table.problems
    seen = _check_values(path, rows, problems)
    _check_links(path, rows, seen, problems)
    if not rows and not problems:
        problems.append(f"{path}, line {table.header_line + 1}: no agency listed after the header; expected one line "
                        f"per agency")
    if problems:
        raise AgenciesError(path, problems)
    return [r for _, r in rows]


def _read_bytes(path: Path) -> bytes:
    """The file's bytes; a missing, unreadable or folder path is an AgenciesError saying what to do."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise AgenciesError(path, [f"{path}: agencies file not found (put agencies.csv at the inbox root or set "
                                   f"TTHC_AGENCIES_PATH)"]) from None
    except PermissionError:
        raise AgenciesError(path, [f"{path}: cannot read the agencies file: permission denied; ask the operator to "
                                   f"fix its permissions"]) from None
    except IsADirectoryError:
        raise AgenciesError(path, [f"{path}: is a folder, not the agencies file"]) from None


@dataclass
class _Table:
    """The list split into cells: its header line and the non-blank lines after it."""

    delim: str
    header: list[str]  # header_key of each header cell
    header_line: int
    records: list[tuple[int, list[str]]]  # (line, cells)
    problems: list[str]  # found so far (a column named twice in the header)


def _parse(path: Path, text: str) -> _Table:
    """The header (the first non-blank line, its delimiter sniffed) and the records below it; blank lines are
    skipped. Rejects an empty list and a header without the agency columns."""
    lines = text.splitlines()
    first = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if first is None:
        raise AgenciesError(path, [f"{path}: the file is empty; expected a header line ({','.join(COLUMNS)}) and "
                                   f"one line per agency"])
    delim = _sniff(lines[first])
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    table: _Table | None = None
    last = 0
    for cells in reader:
        line, last = last + 1, reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if table is None:
            table = _Table(delim, [header_key(c) for c in cells], line, [], [])
            _check_header(path, table, cells, lines[first])
            continue
        table.records.append((line, cells))
    assert table is not None
    return table


def _check_header(path: Path, table: _Table, cells: list[str], first_line: str) -> None:
    """A column named twice is a problem; a header missing agency columns rejects the list at once."""
    header, where = table.header, f"{path}, line {table.header_line}"
    dupes = sorted({h for h in header if h and header.count(h) > 1})
    if dupes:
        table.problems.append(f"{where}: column(s) {', '.join(dupes)} appear twice in the header")
    missing = [c for c in REQUIRED if c not in header]
    if len(missing) == len(REQUIRED):
        raise AgenciesError(path, [
            f"{where}: no agency column found in the header (read with a comma, semicolon or tab as the "
            f"delimiter: {first_line.strip()}); expected the header {','.join(COLUMNS)}"])
    if missing:
        sep = {",": "comma", ";": "semicolon", "\t": "tab"}[table.delim]
        raise AgenciesError(path, table.problems + [
            f"{where}: missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)} "
            f"(the header read with {sep} as the delimiter: {' | '.join(cells)})"])


def _rows(path: Path, table: _Table) -> list[tuple[int, dict]]:
    """(line, ``COLUMNS`` -> trimmed NFC text or None) of each record; a record with more fields than the header
    is a problem (unless every record ends with the same empty fields: a delimiter after the last value)."""
    # a delimiter after the last value of every line (header excepted) is a harmless habit of some exports
    records, width = table.records, len(table.header)
    trailing = bool(records) and len({len(c) for _, c in records}) == 1 and len(records[0][1]) > width and all(
        not x.strip() for _, c in records for x in c[width:])
    rows: list[tuple[int, dict]] = []
    for line, cells in records:
        if len(cells) > width and not trailing:
            table.problems.append(f"{path}, line {line}: {len(cells)} fields, the header has {width} (a value "
                                  f"holding '{table.delim}' must be quoted)")
            continue
        r = {c: None for c in COLUMNS}
        for h, v in zip(table.header, cells, strict=False):
            if h in r and r[h] is None:
                r[h] = unicodedata.normalize("NFC", v).strip() or None
        rows.append((line, r))
    return rows


def _check_values(path: Path, rows: list[tuple[int, dict]], problems: list[str]) -> dict[str, int]:
    """Each row's code (present, once), level and dates, in line order; levels lower-cased and dates made ISO in
    place. Returns agency_code -> its line."""
    seen: dict[str, int] = {}
    for line, r in rows:
        where = f"{path}, line {line}"
        code = r["agency_code"]
        if not code:
            problems.append(f"{where}, column agency_code: empty; every line needs the agency's code")
        elif code in seen:
            problems.append(f"{where}, column agency_code: {code} is listed twice (first on line {seen[code]})")
        else:
            seen[code] = line
        _check_level_and_dates(where, r, problems)
    return seen


def _check_level_and_dates(where: str, r: dict, problems: list[str]) -> None:
    """One of LEVELS (lower-cased in place); dates parsed and made ISO in place; valid_to not before valid_from."""
    level = (r["level"] or "").casefold()
    if level not in LEVELS:
        problems.append(f"{where}, column level: '{r['level'] or ''}' is not one of "
                        f"{', '.join(sorted(LEVELS))}")
    else:
        r["level"] = level
    for c in ("valid_from", "valid_to"):
        if r[c]:
            d = parse_date(r[c])
            if d is None:
                problems.append(f"{where}, column {c}: '{r[c]}' is not a date (expected YYYY-MM-DD or "
                                f"DD/MM/YYYY)")
            else:
                r[c] = d.isoformat()
    if r["valid_from"] and r["valid_to"] and r["valid_to"] < r["valid_from"] and \
            parse_date(r["valid_from"]) and parse_date(r["valid_to"]):
        problems.append(f"{where}, column valid_to: {r['valid_to']} is before valid_from {r['valid_from']}")


def _check_links(path: Path, rows: list[tuple[int, dict]], seen: dict[str, int], problems: list[str]) -> None:
    """parent_code and successor_code name agencies of this list; no agency is its own successor."""
    for line, r in rows:
        for c in ("parent_code", "successor_code"):
            if r[c] and r[c] not in seen:
                problems.append(f"{path}, line {line}, column {c}: {r[c]} is not an agency of this file (expected "
                                f"one of its agency_code values)")
        if r["successor_code"] and r["successor_code"] == r["agency_code"]:
            problems.append(f"{path}, line {line}, column successor_code: the agency is its own successor")


def validity(settings) -> dict | None:
    """agency -> (valid_from, valid_to) dates of the list the settings name, or of the warehouse's last good list
    when that one is broken; None when there is none."""
    if settings is None or getattr(settings, "resolved_agencies_path", None) is None:
        return None
    rows = None
    try:
        rows = read_agencies(settings.resolved_agencies_path)
    except AgenciesError:
        wh = getattr(settings, "warehouse", None)
        kept = last_good(Path(wh)) if wh is not None else None
        rows = kept.rows if kept is not None else None
    if rows is None:
        return None
    return {r["agency_code"]: (date.fromisoformat(r["valid_from"]) if r["valid_from"] else None,
                               date.fromisoformat(r["valid_to"]) if r["valid_to"] else None) for r in rows}


# ---------------------------------------------------------------------------------------------------- last good
@dataclass
class KeptList:
    rows: list[dict]
    path: Path
    kept_on: str  # the local date the list last read cleanly
    source: str


@dataclass
class NightList:
    """The agency list a night works with."""
    rows: list[dict] | None  # None: no usable list (today's is broken and none was kept)
    path: Path | None  # the file core, marts and the gate read: the warehouse's kept copy
    problem: str | None = None  # why today's list cannot be used (one line per problem)
    kept_on: str | None = None  # set when the last good list stands in for a broken one: its date

    @property
    def codes(self) -> list[str]:
        return [r["agency_code"] for r in self.rows or []]

    def alert(self) -> str | None:
        """The operator's message when today's list was not used, else None."""
        if self.problem is None:
            return None
        if self.rows is not None:
            return (f"agencies.csv is broken: {self.problem}\nThe last good list (read cleanly on {self.kept_on}) "
                    f"was used tonight for ingest, the quality gate, core and marts; fix the file and the next run "
                    f"uses it.")
        return (f"CRITICAL: agencies.csv is unusable and no good list was ever kept: {self.problem}\nNothing new was "
                f"ingested and core and marts were left as they were; fix the file and run again (the inbox files "
                f"wait, nothing is lost).")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def canonical_csv(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([r[c] or "" for c in COLUMNS])
    return buf.getvalue().encode("utf-8")


def keep(rows: list[dict], warehouse: Path, source: Path) -> Path:
    """Keep ``rows`` (a list that read cleanly) as the warehouse's last good list; returns the copy's path."""
    d = Path(warehouse) / CONFIG_DIR
    d.mkdir(parents=True, exist_ok=True)
    data = canonical_csv(rows)
    path = d / LAST_GOOD
    if not path.exists() or path.read_bytes() != data:
        _atomic_write(path, data)
    meta = {"sha256": _digest(data), "kept_on": datetime.now(LOCAL_TZ).date().isoformat(), "source": str(source),
            "rows": len(rows)}
    write_state(d / LAST_GOOD_META, meta)
    return path


def last_good(warehouse: Path) -> KeptList | None:
    """The warehouse's last good list, when one was kept and still reads cleanly."""
    d = Path(warehouse) / CONFIG_DIR
    path = d / LAST_GOOD
    if not path.is_file():
        return None
    try:
        meta = read_state(d / LAST_GOOD_META)
    except (OSError, ValueError):
        meta = {}
    try:
        rows = read_agencies(path)
    except AgenciesError:
        return None
    kept_on = meta.get("kept_on") if meta.get("sha256") == _digest(path.read_bytes()) else None
    if kept_on is None:  # the copy was replaced after its record (a run stopped between the two writes)
        kept_on = datetime.fromtimestamp(path.stat().st_mtime, LOCAL_TZ).date().isoformat()
    return KeptList(rows, path, kept_on, str(meta.get("source") or ""))


def for_night(source: Path, warehouse: Path) -> NightList:
    """Today's list, kept as the last good one, when it reads cleanly; else the last good list with the problem;
    else no list with the problem."""
    try:
        rows = read_agencies(source)
    except AgenciesError as exc:
        kept = last_good(warehouse)
        if kept is None:
            return NightList(None, None, str(exc))
        return NightList(kept.rows, kept.path, str(exc), kept.kept_on)
    return NightList(rows, keep(rows, warehouse, source))
