"""The bad-input corpus: named damaged inboxes, each the clean base (tests/corpus/base.py) with ONE kind of damage
applied to one file (or to agencies.csv), and the outcome the night must have on it (issue 11).

``CASES`` maps a case name to its maker; ``make(name, base, inbox)`` copies the clean base to ``inbox``, applies
the damage and returns the ``Case``: what was done, which clean file it replaced (``replaces``), which file
carries the damage (``damaged``) and the ``Expect``-ed outcome. Every maker is deterministic (its own
``random.Random`` seeded by the case name), so the same name writes the same bytes.

Expectations follow the issue and the project's design (docs/design.md, docs/alerts.md): row problems hold rows (quarantined
with their rule; below the table's threshold, 5 % by default, the file goes on and the run passes with a warning),
file problems hold files and fail the run naming the file, the place and what was expected; every file under
the inbox is read or listed with its reason; a broken agencies.csv does not lose the night; what offices
export (UTF-16, cp1258, NFD, tab or semicolon, a title block, a blank row inside an XLSX table, a due date
without a time) is read correctly. Whole files in Windows-1258 or CP1252 mojibake are left to the shared sample's
conformance tests (the sample inbox has both).
"""

from __future__ import annotations

import gzip
import json
import random
import re
import shutil
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from corpus.base import (
    AGENCIES,
    CSV_2024,
    ECERTS,
    JSON_2025,
    JSONL_2025,
    SEED,
    XLSX_2023,
    Base,
    BaseFile,
    csv_text,
    write_json_records,
    write_xlsx_rows,
)
from devkit.sample import inbox as I
from devkit.sample import refdata as R
from devkit.sample.encodings import encode_cp1258


@dataclass(frozen=True)
class Expect:
    """The outcome a night on the damaged inbox must have.

    exit_code      what `tthc run` exits with (0: completed; 1: failed, loudly)
    named          a file (inbox-relative path, or its name) that one message must name ...
    place          ... together with all of these regular expressions (line/row/column words, what was expected)
    staged         rows of the damaged file that reach staging (stg or held); 0 when the file is not read
    quarantined    rows of the damaged file set aside in quarantine (None: not checked)
    rule           a regular expression every quarantined row's _rule matches
    lines          the _source_line of the quarantined rows (the line/row a person looks up)
    held           the damaged file's batch is held out of core and marts (None: not checked)
    marts_exact    the damaged night's KPI marts already equal a clean build's (the file was read right)
    marts_absent   no KPI mart is published by the damaged night (first night without a usable agency list)
    others_staged  every other data file of the base is fully staged (all its rows in stg, none held)
    ingested_all   every data file of the base got a gated batch in the damaged night
    fresh          the night starts on an empty warehouse with the whole inbox new (default: when it must fail,
                   so "the night goes on with the other files" is seen); otherwise on a copy of a warehouse that
                   holds a clean night of the base without the replaced file (without dongbo_2025H1.json for
                   agencies.csv: "the last good list the warehouse kept"; the whole base for an added file),
                   so only the damaged file is new (the corpus' time budget)
    export_safe    `tthc query ... --out` of the form 06 mart's field names writes no cell a spreadsheet runs
    unprivileged   the night must run as a user the file modes apply to (mode 000)
    otherwise      other outcomes the issue accepts as well ("read as CSV, or the message says exactly that")
    """

    exit_code: int
    named: str | None = None
    place: tuple[str, ...] = ()
    staged: int | None = None
    quarantined: int | None = 0
    rule: str | None = None
    lines: tuple[int, ...] | None = None
    held: bool | None = False
    marts_exact: bool = False
    marts_absent: bool = False
    others_staged: bool = True
    ingested_all: bool = False
    fresh: bool | None = None
    export_safe: bool = False
    unprivileged: bool = False
    otherwise: tuple[Expect, ...] = ()


@dataclass
class Case:
    name: str
    what: str  # the damage, in words
    replaces: str | None  # the clean base file the damage replaced (None: a file was added)
    damaged: str  # the inbox-relative path of the file that carries the damage
    expect: Expect
    extra_paths: tuple[Path, ...] = ()  # files written outside the inbox (a symlink's target)
    checks: list[Callable] = field(default_factory=list)  # more assertions: f(case, warehouse, batch_rows)

    @property
    def fresh(self) -> bool:
        return self.expect.exit_code != 0 if self.expect.fresh is None else self.expect.fresh

    def warm_without(self, base: Base) -> str | None:
        """The base file a warm start's warehouse was built without (None: the whole base)."""
        if self.replaces == AGENCIES:
            return JSON_2025
        return self.replaces if self.replaces in base.files else None

    def restore(self, base: Base, inbox: Path) -> None:
        """The clean rerun's inbox: the damaged file removed, its clean twin put back, nothing else touched."""
        p = inbox / self.damaged
        if p.is_symlink() or p.exists():
            p.chmod(0o644) if not p.is_symlink() else None
            p.unlink()
        for q in (inbox / AGENCIES, *(inbox / rel for rel in base.files)):
            rel = q.relative_to(inbox).as_posix()
            if not q.exists() or q.read_bytes() != base.path(rel).read_bytes():
                q.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(base.path(rel), q)


CASES: dict[str, Callable[[Base, Path, random.Random], Case]] = {}


def case(fn: Callable[[Base, Path, random.Random], Case]) -> Callable:
    CASES[fn.__name__.removeprefix("case_")] = fn
    return fn


def make(name: str, base: Base, inbox: Path) -> Case:
    """Copy the clean base to ``inbox`` and apply the damage of case ``name``."""
    inbox = Path(inbox)
    if inbox.exists():
        shutil.rmtree(inbox)
    shutil.copytree(base.root, inbox, symlinks=True)
    c = CASES[name](base, inbox, random.Random(f"{SEED}/{name}"))
    c.name = name
    return c


# ------------------------------------------------------------------------------------------------ helpers
def _write(inbox: Path, rel: str, data: bytes | str, encoding: str = "utf-8") -> Path:
    p = inbox / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data if isinstance(data, bytes) else data.encode(encoding))
    return p


def _col(f: BaseFile, key: str) -> int:
    return [k for k, _h in f.cols].index(key)


def _header(f: BaseFile, key: str) -> str:
    return dict(f.cols)[key]


def _csv_rows(base: Base) -> tuple[BaseFile, list[str], list[list[str]]]:
    f = base.files[CSV_2024]
    return f, list(f.headers), f.cells()


def _pick(rng: random.Random, rows: list, ok: Callable[[int], bool], k: int = 1) -> list[int]:
    """k row indexes, in file order, among rows with ``ok(i)``, away from the first and last rows."""
    cands = [i for i in range(3, len(rows) - 3) if ok(i)]
    return sorted(rng.sample(cands, k))


def _line(i: int, above: int = 0) -> int:
    """The CSV line of data row i (0-based) with the header on line 1 + ``above`` lines above it."""
    return i + 2 + above


def _esc(s: str) -> str:
    return re.escape(s)


NAMED_COLUMN = r"(column|cột)"


def _csv_case(name_what: str, base: Base, inbox: Path, text: str | bytes, expect: Expect, *,
              rel: str = CSV_2024, encoding: str = "utf-8") -> Case:
    _write(inbox, rel, text, encoding)
    return Case("", name_what, CSV_2024, rel, expect)


def _read_exact(f: BaseFile, **kw) -> Expect:
    """The file is read right: the night completes, every row is staged, the marts are a clean build's."""
    return Expect(0, staged=f.n, quarantined=0, marts_exact=True, **kw)


def _row_damage(f: BaseFile, bad: list[int], rule: str, lines: list[int], **kw) -> Expect:
    """A few rows break a row rule: they are quarantined with it, the rest of the file goes on (below 5 %)."""
    return Expect(0, named=f.rel, place=(rf"\b{len(bad)}\b",), staged=f.n - len(bad), quarantined=len(bad),
                  rule=rule, lines=tuple(lines), **kw)


# ------------------------------------------------------------------------------------------------ dates
@case
def case_same_day_due_date_only_csv(base: Base, inbox: Path, rng) -> Case:
    f, hdr, rows = _csv_rows(base)
    due = _col(f, "due_at")
    for r in rows:
        r[due] = r[due][:10]  # dd/mm/yyyy: the whole day
    n_same = sum(1 for r in f.rows if r.values["procedure_code"] in base.procedures_same_day and r.values["due_at"])
    assert n_same >= 5, n_same
    return _csv_case(f"Ngày hẹn trả as a date without a time; {n_same} same-day procedures due the day received",
                     base, inbox, csv_text(hdr, rows), _read_exact(f))


@case
def case_same_day_due_date_only_xlsx(base: Base, inbox: Path, rng) -> Case:
    f = base.files[XLSX_2023]
    rows = [I.Row({**r.values, "due_at": r.values["due_at"].date() if r.values["due_at"] else None}, None,
                  r.record_id) for r in f.rows]
    assert sum(1 for r in f.rows if r.values["procedure_code"] in base.procedures_same_day and r.values["due_at"]) >= 5
    write_xlsx_rows(inbox / f.rel, f, rows)
    return Case("", "XLSX: Ngày hẹn trả as Excel dates without a time (dd/mm/yyyy), same-day procedures included",
                f.rel, f.rel, _read_exact(f))


@case
def case_same_day_due_date_only_json(base: Base, inbox: Path, rng) -> Case:
    f = base.files[JSON_2025]
    recs = [{**r, "NgayHenTra": (r["NgayHenTra"] or "")[:10]} for r in f.records]
    assert sum(1 for r in f.rows if r.values["procedure_code"] in base.procedures_same_day and r.values["due_at"]) >= 3
    write_json_records(inbox / f.rel, recs, "json")
    return Case("", "JSON: NgayHenTra as 'yyyy-mm-dd' (no time), same-day procedures included", f.rel, f.rel,
                _read_exact(f))


@case
def case_dossier_date_2052(base: Base, inbox: Path, rng) -> Case:
    f, hdr, rows = _csv_rows(base)
    rec = _col(f, "received_at")
    [i] = _pick(rng, rows, lambda i: f.rows[i].values["status"] == 10)
    rows[i][rec] = rows[i][rec][:6] + "2052" + rows[i][rec][10:]
    return _csv_case("one dossier received in 2052 (a clock error), finished and returned in 2024", base, inbox,
                     csv_text(hdr, rows), _row_damage(f, [i], r"date_order|future|clock", [_line(i)]))


# ------------------------------------------------------------------------------------------------ columns, codes
@case
def case_missing_required_column_received_at(base: Base, inbox: Path, rng) -> Case:
    f, hdr, rows = _csv_rows(base)
    j = _col(f, "received_at")
    text = csv_text(hdr[:j] + hdr[j + 1:], [r[:j] + r[j + 1:] for r in rows])
    return _csv_case("the required column 'Ngày tiếp nhận' is missing", base, inbox, text,
                     Expect(1, named=f.rel, place=("Ngày tiếp nhận",), staged=0, quarantined=None, held=None))


@case
def case_unknown_status_share(base: Base, inbox: Path, rng) -> Case:
    f, hdr, rows = _csv_rows(base)
    st = _col(f, "status")
    bad = sorted(rng.sample(range(len(rows)), round(len(rows) * 55 / 271)))
    for i in bad:
        rows[i][st] = rng.choice(["11", "12", "99"])
    return _csv_case(f"{len(bad)} of {len(rows)} dossiers carry a status code outside the list (55/271-like share)",
                     base, inbox, csv_text(hdr, rows),
                     Expect(1, named=f.rel, place=(rf"\b{len(bad)}\b", r"Trạng thái|status"), staged=f.n - len(bad),
                            quarantined=len(bad), rule=r"unknown_code|code_in_list",
                            lines=tuple(_line(i) for i in bad), held=True))


@case
def case_malformed_procedure_code(base: Base, inbox: Path, rng) -> Case:
    f, hdr, rows = _csv_rows(base)
    [i] = _pick(rng, rows, lambda i: True)
    rows[i][_col(f, "procedure_code")] = "Nguyễn Văn An 0912345678"
    return _csv_case("one procedure code holds a name and a phone number", base, inbox, csv_text(hdr, rows),
                     _row_damage(f, [i], r"pattern", [_line(i)]))


@case
def case_leading_zero_codes(base: Base, inbox: Path, rng) -> Case:
    f, hdr, rows = _csv_rows(base)
    for r in rows:
        for k in ("status", "channel"):
            r[_col(f, k)] = r[_col(f, k)].zfill(2)
    return _csv_case("status and channel codes zero-padded ('02', '04', '01')", base, inbox, csv_text(hdr, rows),
                     _read_exact(f))


@case
def case_negative_fee(base: Base, inbox: Path, rng) -> Case:
    f, hdr, rows = _csv_rows(base)
    fee = _col(f, "fee_vnd")
    [i] = _pick(rng, rows, lambda i: rows[i][fee] not in ("", "0"))
    rows[i][fee] = "-" + rows[i][fee]
    return _csv_case("one negative fee", base, inbox, csv_text(hdr, rows),
                     _row_damage(f, [i], r"out_of_range|min", [_line(i)]))


@case
def case_thousands_separators(base: Base, inbox: Path, rng) -> Case:
    f, hdr, rows = _csv_rows(base)
    fee = _col(f, "fee_vnd")
    assert any(int(r[fee] or 0) >= 1000 for r in rows)
    for r in rows:
        r[fee] = f"{int(r[fee]):,}" if r[fee] else r[fee]
    return _csv_case("fees written with thousands separators ('50,000')", base, inbox, csv_text(hdr, rows),
                     _read_exact(f))


@case
def case_duplicate_versions_same_updated_at(base: Base, inbox: Path, rng) -> Case:
    f, hdr, rows = _csv_rows(base)
    st = _col(f, "status")
    picks = _pick(rng, rows, lambda i: rows[i][st] in ("9", "10"), k=3)
    out, originals, winners = [], [], {}
    for i, r in enumerate(rows):
        out.append(r)
        if i in picks:
            originals.append(len(out) - 1)
            copy = list(r)
            copy[st] = "9" if r[st] == "10" else "10"
            out.append(copy)
            winners[r[_col(f, "dossier_id")]] = int(copy[st])

    def later_row_wins(c, wh, batch):
        staged = _stg_rows(wh, batch, ["dossier_id", "status"])
        got = {d: s for d, s in staged if d in winners}
        assert got == winners, f"the later row of the file must win: staged {got}, expected {winners}"

    c = _csv_case("3 dossiers repeated with the same Ngày cập nhật and a different status (later row follows)",
                  base, inbox, csv_text(hdr, out),
                  Expect(0, named=f.rel, place=(r"\b3\b",), staged=f.n, quarantined=3, rule=r"duplicate_version",
                         lines=tuple(_line(i) for i in originals)))
    c.checks.append(later_row_wins)
    return c


@case
def case_extra_unknown_columns(base: Base, inbox: Path, rng) -> Case:
    f, hdr, rows = _csv_rows(base)
    text = csv_text(hdr + ["Ghi chú nội bộ", "Người xử lý"],
                    [r + [rng.choice(["", "Ưu tiên", "Đã gọi điện"]), rng.choice(["Lê Văn Tám", "Trần Thị Ba"])]
                     for r in rows])
    return _csv_case("two unknown columns added ('Ghi chú nội bộ', 'Người xử lý')", base, inbox, text,
                     replace(_read_exact(f), named=f.rel, place=("Ghi chú nội bộ", "Người xử lý")))


@case
def case_duplicate_column_name(base: Base, inbox: Path, rng) -> Case:
    f, hdr, rows = _csv_rows(base)
    sub = _col(f, "submitted_at")
    text = csv_text(hdr + [_header(f, "updated_at")], [r + [r[sub]] for r in rows])
    # or a deterministic choice the messages document: the column named as repeated, not as unknown
    twice = r"twice|duplicate|repeated|more than once|hai lần|trùng|lặp"
    chosen = Expect(0, named=f.rel, place=("Ngày cập nhật", twice), staged=f.n, quarantined=0, marts_exact=True)
    return _csv_case("the header names 'Ngày cập nhật' twice, with different values", base, inbox, text,
                     Expect(1, named=f.rel, place=("Ngày cập nhật",), staged=0, quarantined=None, held=None,
                            otherwise=(chosen,)))


@case
def case_formula_values_as_field_names(base: Base, inbox: Path, rng) -> Case:
    f, hdr, rows = _csv_rows(base)
    fn = _col(f, "field_name")
    bad = _pick(rng, rows, lambda i: bool(rows[i][fn]), k=3)
    formulas = ['=HYPERLINK("http://evil.example/x","Hộ tịch")', "+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|'/C calc'!A0"]
    for i, v in zip(bad, formulas, strict=True):
        rows[i][fn] = v
    return _csv_case("formula-like values (=HYPERLINK, +cmd, @SUM) in Tên lĩnh vực", base, inbox, csv_text(hdr, rows),
                     Expect(0, staged=None, quarantined=None, export_safe=True))


# ------------------------------------------------------------------------------------------------ characters
@case
def case_nfd_text(base: Base, inbox: Path, rng) -> Case:
    f, hdr, rows = _csv_rows(base)
    return _csv_case("the whole CSV in Unicode NFD (decomposed Vietnamese marks)", base, inbox,
                     unicodedata.normalize("NFD", csv_text(hdr, rows)), _read_exact(f))


@case
def case_control_chars_in_field_name_csv(base: Base, inbox: Path, rng) -> Case:
    f, hdr, rows = _csv_rows(base)
    fn = _col(f, "field_name")
    bad = _pick(rng, rows, lambda i: len(rows[i][fn]) > 4, k=3)
    for i, ch in zip(bad, ["\x00", "\x1b", "\x07"], strict=True):
        rows[i][fn] = rows[i][fn][:3] + ch + rows[i][fn][3:]
    return _csv_case("NUL, ESC and BEL inside Tên lĩnh vực of 3 rows", base, inbox, csv_text(hdr, rows),
                     _row_damage(f, bad, r"control_character", [_line(i) for i in bad]))


@case
def case_control_chars_in_field_name_json(base: Base, inbox: Path, rng) -> Case:
    f = base.files[JSON_2025]
    recs = [dict(r) for r in f.records]
    bad = _pick(rng, recs, lambda i: len(recs[i]["TenLinhVuc"] or "") > 4, k=2)
    for i, ch in zip(bad, ["\x1b[31m", "\x00"], strict=True):
        recs[i]["TenLinhVuc"] = recs[i]["TenLinhVuc"][:2] + ch + recs[i]["TenLinhVuc"][2:]
    write_json_records(inbox / f.rel, recs, "json")
    return Case("", "JSON: ESC and NUL inside TenLinhVuc of 2 records", f.rel, f.rel,
                _row_damage(f, bad, r"control_character", [i + 1 for i in bad]))


@case
def case_nbsp_around_codes(base: Base, inbox: Path, rng) -> Case:
    f, hdr, rows = _csv_rows(base)
    for r in rows:
        for k in ("agency_code", "procedure_code"):
            r[_col(f, k)] = "\u00a0" + r[_col(f, k)] + "\u00a0"
    return _csv_case("agency and procedure codes wrapped in no-break spaces (copied from a web page)", base, inbox,
                     csv_text(hdr, rows), _read_exact(f))


# ------------------------------------------------------------------------------------------------ encodings
@case
def case_utf16_le_bom(base: Base, inbox: Path, rng) -> Case:
    f, hdr, rows = _csv_rows(base)
    return _csv_case("UTF-16 LE with BOM", base, inbox, b"\xff\xfe" + csv_text(hdr, rows).encode("utf-16-le"),
                     _read_exact(f))


@case
def case_utf16_le_no_bom(base: Base, inbox: Path, rng) -> Case:
    f, hdr, rows = _csv_rows(base)
    return _csv_case("UTF-16 LE without BOM", base, inbox, csv_text(hdr, rows).encode("utf-16-le"), _read_exact(f))


@case
def case_utf16_le_bom_tab(base: Base, inbox: Path, rng) -> Case:
    f, hdr, rows = _csv_rows(base)
    return _csv_case("UTF-16 LE with BOM, tab-delimited (Excel's 'Unicode text' saved as .csv)", base, inbox,
                     b"\xff\xfe" + csv_text(hdr, rows, delimiter="\t").encode("utf-16-le"), _read_exact(f))


@case
def case_bom_plus_cp1258(base: Base, inbox: Path, rng) -> Case:
    f, hdr, rows = _csv_rows(base)
    said = Expect(1, named=f.rel, place=(r"\b(line|dòng) 1\b",), staged=0, quarantined=None, held=None)
    return _csv_case("a UTF-8 BOM followed by Windows-1258 text", base, inbox,
                     b"\xef\xbb\xbf" + encode_cp1258(csv_text(hdr, rows)), replace(_read_exact(f), otherwise=(said,)))


@case
def case_damaged_bytes_lines_701_720(base: Base, inbox: Path, rng) -> Case:
    f = base.files[ECERTS]
    lines = csv_text(f.headers, f.cells()).encode("utf-8").split(b"\r\n")
    assert len(lines) > 721
    for ln in range(701, 721):  # 1-based physical lines
        parts = lines[ln - 1].split(b",")
        parts[0] = parts[0][:5] + b"\x81\x8d\x8f\x90\x9d" + parts[0][5:]
        lines[ln - 1] = b",".join(parts)
    _write(inbox, f.rel, b"\r\n".join(lines))
    return Case("", "bytes no encoding explains inside lines 701-720", f.rel, f.rel,
                Expect(1, named=f.rel, place=(r"\b701\b",), staged=0, quarantined=None, held=None))


# ------------------------------------------------------------------------------------------------ CSV layout
@case
def case_tab_delimited(base: Base, inbox: Path, rng) -> Case:
    f, hdr, rows = _csv_rows(base)
    return _csv_case("tab-delimited", base, inbox, csv_text(hdr, rows, delimiter="\t"), _read_exact(f))


@case
def case_semicolon_delimited(base: Base, inbox: Path, rng) -> Case:
    f, hdr, rows = _csv_rows(base)
    return _csv_case("semicolon-delimited", base, inbox, csv_text(hdr, rows, delimiter=";"), _read_exact(f))


@case
def case_title_block_above_header(base: Base, inbox: Path, rng) -> Case:
    f, hdr, rows = _csv_rows(base)
    title = ("ỦY BAN NHÂN DÂN TỈNH LÂM XUYÊN\r\nBÁO CÁO CHI TIẾT HỒ SƠ THỦ TỤC HÀNH CHÍNH\r\n"
             "Từ ngày 01/01/2024 đến ngày 31/12/2024\r\n")
    return _csv_case("a 3-line title block above the header", base, inbox, title + csv_text(hdr, rows),
                     _read_exact(f))


@case
def case_excel_sep_hint_line(base: Base, inbox: Path, rng) -> Case:
    f, hdr, rows = _csv_rows(base)
    return _csv_case("Excel's 'sep=;' line above a semicolon CSV", base, inbox,
                     "sep=;\r\n" + csv_text(hdr, rows, delimiter=";"), _read_exact(f))


@case
def case_mixed_crlf_lf(base: Base, inbox: Path, rng) -> Case:
    f, hdr, rows = _csv_rows(base)
    lines = csv_text(hdr, rows).split("\r\n")
    text = "".join(ln + ("\n" if i % 2 else "\r\n") for i, ln in enumerate(lines[:-1]))
    return _csv_case("line endings CRLF and LF mixed", base, inbox, text, _read_exact(f))


@case
def case_quoted_newline_in_field(base: Base, inbox: Path, rng) -> Case:
    f, hdr, rows = _csv_rows(base)
    addr = _col(f, "applicant_address")
    for i in _pick(rng, rows, lambda i: ", " in rows[i][addr], k=2):
        rows[i][addr] = rows[i][addr].replace(", ", ",\r\n", 1)
    return _csv_case("two addresses hold a line break inside their quotes", base, inbox, csv_text(hdr, rows),
                     _read_exact(f))


@case
def case_header_repeated_mid_file(base: Base, inbox: Path, rng) -> Case:
    f, hdr, rows = _csv_rows(base)
    k = len(rows) // 2
    text = csv_text(hdr, rows[:k] + [hdr] + rows[k:])
    skipped = Expect(0, named=f.rel, place=(rf"\b{k + 2}\b",), staged=f.n, quarantined=0, marts_exact=True)
    return _csv_case(f"the header line repeated on line {k + 2} (two exports pasted together)", base, inbox, text,
                     Expect(0, named=f.rel, place=(r"\b1\b",), staged=f.n, quarantined=1, lines=(k + 2,),
                            marts_exact=True, otherwise=(skipped,)))


@case
def case_footer_total_row(base: Base, inbox: Path, rng) -> Case:
    f, hdr, rows = _csv_rows(base)
    blank = [""] * len(hdr)
    foot = [[f"Tổng cộng: {len(rows)} hồ sơ"] + [""] * (len(hdr) - 1), blank,
            ["NGƯỜI LẬP BIỂU"] + [""] * (len(hdr) - 2) + ["THỦ TRƯỞNG ĐƠN VỊ"]]
    return _csv_case("a 'Tổng cộng' footer row and a signature line after the data", base, inbox,
                     csv_text(hdr, rows + foot),
                     Expect(0, named=f.rel, place=(r"footer|tổng cộng|chân trang",), staged=f.n, quarantined=None,
                            marts_exact=True))


@case
def case_header_only(base: Base, inbox: Path, rng) -> Case:
    f, hdr, _rows = _csv_rows(base)
    return _csv_case("the header line only, no data row", base, inbox, csv_text(hdr, []),
                     Expect(0, named=f.rel, place=(r"\b0 (rows|dòng)|no (data )?rows?|không có dòng|empty|rỗng",),
                            staged=0))


@case
def case_empty_file(base: Base, inbox: Path, rng) -> Case:
    f = base.files[CSV_2024]
    return _csv_case("an empty file (0 bytes)", base, inbox, b"",
                     Expect(1, named=f.rel, place=(r"empty|0 bytes?|rỗng|trống",), staged=0, quarantined=None,
                            held=None))


# ------------------------------------------------------------------------------------------------ XLSX
@case
def case_xlsx_blank_row_inside_table(base: Base, inbox: Path, rng) -> Case:
    f = base.files[XLSX_2023]
    k = len(f.rows) // 2
    write_xlsx_rows(inbox / f.rel, f, f.rows[:k] + [I.Row({}, None, "")] + f.rows[k:])
    return Case("", f"XLSX: one blank row after data row {k} (sheet row {k + 1}), {len(f.rows) - k} rows below it",
                f.rel, f.rel, _read_exact(f))


@case
def case_xlsx_dates_as_serial_numbers(base: Base, inbox: Path, rng) -> Case:
    from openpyxl import Workbook

    f = base.files[XLSX_2023]
    epoch = datetime(1899, 12, 30)
    wb = Workbook()
    ws = wb.active
    ws.append(f.headers)
    for r in f.rows:
        cells = []
        for k, _h in f.cols:
            v = r.values.get(k)
            if isinstance(v, datetime):
                cells.append(round((v - epoch).total_seconds() / 86400, 8))  # a number, no date format
            else:
                t = I._xlsx_cell_value(k, r, f.style)
                cells.append(t)
        ws.append(cells)
    wb.properties.created = wb.properties.modified = datetime(2026, 1, 1)
    wb.save(inbox / f.rel)
    I._normalise_zip(inbox / f.rel)  # fixed zip entry times: the same bytes every time
    return Case("", "XLSX: dates as bare Excel serial numbers (the date format lost)", f.rel, f.rel,
                _read_exact(f))


@case
def case_xlsx_really_csv(base: Base, inbox: Path, rng) -> Case:
    f = base.files[CSV_2024]
    rel = CSV_2024.removesuffix(".csv") + ".xlsx"
    (inbox / CSV_2024).rename(inbox / rel)
    said = Expect(1, named=rel, place=(r"\bCSV\b",), staged=0, quarantined=None, held=None)
    return Case("", "a CSV saved under an .xlsx name", CSV_2024, rel,
                Expect(0, staged=f.n, quarantined=0, marts_exact=True, otherwise=(said,)))


@case
def case_xlsx_really_html(base: Base, inbox: Path, rng) -> Case:
    f = base.files[XLSX_2023]
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in I._row_texts(f.cols, r, I.Style())) + "</tr>"
                   for r in f.rows)
    html = (f"<html><head><meta charset='utf-8'></head><body><table><tr>"
            f"{''.join(f'<th>{h}</th>' for h in f.headers)}</tr>{body}</table></body></html>")
    _write(inbox, f.rel, html)
    return Case("", "an HTML table saved under an .xlsx name (web portals' 'Excel' export)", f.rel, f.rel,
                Expect(1, named=f.rel, place=(r"html",), staged=0, quarantined=None, held=None))


@case
def case_truncated_xlsx(base: Base, inbox: Path, rng) -> Case:
    f = base.files[XLSX_2023]
    data = (base.path(f.rel)).read_bytes()
    _write(inbox, f.rel, data[: len(data) * 6 // 10])
    return Case("", "an XLSX cut at 60 % of its bytes (broken zip)", f.rel, f.rel,
                Expect(1, named=f.rel, place=(r"xlsx|excel|zip|truncat|damag|incomplete|hỏng",), staged=0,
                       quarantined=None, held=None))


@case
def case_csv_really_gzip(base: Base, inbox: Path, rng) -> Case:
    f = base.files[CSV_2024]
    _write(inbox, f.rel, gzip.compress(base.path(f.rel).read_bytes(), mtime=0))
    return Case("", "a gzip-compressed CSV under a .csv name", f.rel, f.rel,
                Expect(1, named=f.rel, place=(r"gzip|compress|nén",), staged=0, quarantined=None, held=None,
                       otherwise=(_read_exact(f),)))


# ------------------------------------------------------------------------------------------------ JSON
@case
def case_json_cut_midway(base: Base, inbox: Path, rng) -> Case:
    f = base.files[JSON_2025]
    text = base.path(f.rel).read_text(encoding="utf-8")
    _write(inbox, f.rel, text[: len(text) * 6 // 10])
    return Case("", "a JSON file cut at 60 % (the download stopped)", f.rel, f.rel,
                Expect(1, named=f.rel, place=(r"(line|dòng)\s*\d+",), staged=0, quarantined=None, held=None))


@case
def case_json_wrong_shape(base: Base, inbox: Path, rng) -> Case:
    f = base.files[JSON_2025]
    _write(inbox, f.rel, json.dumps({r["MaHoSo"]: r for r in f.records}, ensure_ascii=False))
    return Case("", "JSON whose top level is an object keyed by dossier id (not a list, not {\"data\": [...]})",
                f.rel, f.rel,
                Expect(1, named=f.rel, place=(r"expected|list|array|mảng|danh sách",), staged=0, quarantined=None,
                       held=None))


@case
def case_jsonl_one_bad_line(base: Base, inbox: Path, rng) -> Case:
    f = base.files[JSONL_2025]
    lines = base.path(f.rel).read_text(encoding="utf-8").splitlines()
    k = len(lines) // 3
    lines[k] = lines[k][: len(lines[k]) // 2]
    _write(inbox, f.rel, "\n".join(lines) + "\n")
    return Case("", f"JSONL: line {k + 1} cut in half", f.rel, f.rel,
                Expect(0, named=f.rel, place=(rf"\b{k + 1}\b",), staged=f.n - 1, quarantined=1,
                       rule=r"json|pars|malformed|syntax", lines=(k + 1,)))


@case
def case_same_day_due_date_only_jsonl(base: Base, inbox: Path, rng) -> Case:
    f = base.files[JSONL_2025]
    recs = [{**r, "NgayHenTra": (r["NgayHenTra"] or "")[:8]} for r in f.records]
    write_json_records(inbox / f.rel, recs, "jsonl")
    return Case("", "JSONL: NgayHenTra compact without a time ('yyyymmdd')", f.rel, f.rel, _read_exact(f))


# ------------------------------------------------------------------------------------------------ files in the inbox
@case
def case_hidden_file(base: Base, inbox: Path, rng) -> Case:
    f, hdr, rows = _csv_rows(base)
    st = _col(f, "status")
    for r in rows:
        r[st] = "4"
    rel = "one_stop/dossiers/.x.csv"
    _write(inbox, rel, csv_text(hdr, rows))
    return Case("", "a hidden file '.x.csv' (different data) beside the exports", None, rel,
                Expect(0, named=rel, place=(r"hidden|ẩn",), staged=0, quarantined=None, marts_exact=True))


@case
def case_excel_lock_file(base: Base, inbox: Path, rng) -> Case:
    rel = "one_stop/dossiers/~$hoso_2023.xlsx"
    _write(inbox, rel, b"\x0bNguyen Van A" + b"\x00" * 40 + b"\x0b\x00N\x00g\x00u\x00y\x00e\x00n" + b"\x20" * 100)
    return Case("", "Excel's lock file '~$hoso_2023.xlsx' (the export is open on a desk)", None, rel,
                Expect(0, named=rel, place=(r"temporary|lock|tạm|khóa",), staged=0, quarantined=None,
                       marts_exact=True))


@case
def case_path_like_name(base: Base, inbox: Path, rng) -> Case:
    rel = "one_stop/dossiers/..\\..\\hoso_2024.csv"
    (inbox / CSV_2024).rename(inbox / rel)
    name = "..\\..\\hoso_2024.csv"
    refused = Expect(1, named=name, place=(r"backslash|gạch chéo|windows path",), staged=0, quarantined=None, held=None)
    return Case("", "the 2024 export saved under the name '..\\..\\hoso_2024.csv'", CSV_2024, rel,
                Expect(0, named=name, staged=None, quarantined=None, otherwise=(refused,)))


@case
def case_unknown_folder(base: Base, inbox: Path, rng) -> Case:
    rel = "one_stop/hoso_2024.csv"
    (inbox / CSV_2024).rename(inbox / rel)
    return Case("", "the 2024 export put in one_stop/ instead of one_stop/dossiers/", CSV_2024, rel,
                Expect(1, named=rel, place=(r"one_stop/dossiers|<source>/<entity>",), staged=0, quarantined=None,
                       held=None))


@case
def case_unsupported_extension(base: Base, inbox: Path, rng) -> Case:
    rel = "one_stop/dossiers/hoso_2024_cu.xls"
    _write(inbox, rel, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(rng.getrandbits(8) for _ in range(4000)))
    return Case("", "an old Excel 97-2003 '.xls' file", None, rel,
                Expect(1, named=rel, place=(r"\.xls\b|xls",), staged=0, quarantined=None, held=None))


@case
def case_same_content_twice(base: Base, inbox: Path, rng) -> Case:
    rel = "one_stop/dossiers/hoso_2024 (1).csv"
    shutil.copy2(inbox / CSV_2024, inbox / rel)
    return Case("", "the 2024 export a second time under another name", None, rel,
                Expect(0, named=rel, place=(r"same content|duplicate|already|trùng|đã",), staged=0,
                       quarantined=None, marts_exact=True))


@case
def case_unreadable_mode_000(base: Base, inbox: Path, rng) -> Case:
    (inbox / CSV_2024).chmod(0)
    return Case("", "the 2024 export with mode 000 (nobody may read it)", CSV_2024, CSV_2024,
                Expect(1, named=CSV_2024, place=(r"permission|cannot be read|not readable|unreadable|quyền|không đọc",),
                       staged=0, quarantined=None, held=None, unprivileged=True))


@case
def case_symlink_outside_inbox(base: Base, inbox: Path, rng) -> Case:
    outside = inbox.parent / "outside" / "hoso_2024.csv"
    outside.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(inbox / CSV_2024, outside)
    (inbox / CSV_2024).unlink()
    (inbox / CSV_2024).symlink_to(outside)
    return Case("", "the 2024 export is a symlink to a file outside the inbox", CSV_2024, CSV_2024,
                Expect(1, named=CSV_2024, place=(r"symlink|symbolic|link|liên kết",), staged=0, quarantined=None,
                       held=None), extra_paths=(outside,))


# ------------------------------------------------------------------------------------------------ agencies.csv
def _agencies(base: Base, inbox: Path, header: list[str], rows: list[list[str]], *, encoding: str = "utf-8",
              delimiter: str = ",") -> None:
    text = csv_text(header, rows, delimiter=delimiter, lineterminator="\n")
    _write(inbox, AGENCIES, encode_cp1258(text) if encoding == "cp1258" else text.encode(encoding))


def _agency_failure(*place: str, warm: bool = True, **kw) -> Expect:
    """A broken list: the run fails naming agencies.csv and the place; with a good list kept from an earlier
    night, the new file is still ingested, gated and built with it (the marts are a clean build's)."""
    return Expect(1, named=AGENCIES, place=place, staged=None, quarantined=None, held=None, fresh=not warm,
                  marts_exact=warm, **kw)


@case
def case_agencies_missing_first_night(base: Base, inbox: Path, rng) -> Case:
    (inbox / AGENCIES).unlink()
    # Decided (issue 11 note): with no list ever kept, agency codes cannot be checked, and staging every row as an
    # unknown agency would set the night's data aside for a wrong reason; nothing is ingested, the files wait in
    # the inbox (nothing lost), the run fails with a critical alert, and the next night with a list reads them.
    return Case("", "no agencies.csv on the very first night (no good list was ever kept)", AGENCIES, AGENCIES,
                Expect(1, named=AGENCIES, place=(r"not found|missing|no such|không (tìm thấy|có)|thiếu",),
                       staged=None, quarantined=None, held=None, marts_absent=True, others_staged=False,
                       ingested_all=False, fresh=True))


@case
def case_agencies_missing(base: Base, inbox: Path, rng) -> Case:
    (inbox / AGENCIES).unlink()
    return Case("", "agencies.csv missing (a good list was kept by an earlier night)", AGENCIES, AGENCIES,
                _agency_failure(r"not found|missing|no such|không (tìm thấy|có)|thiếu"))


@case
def case_agencies_missing_column(base: Base, inbox: Path, rng) -> Case:
    j = R.AGENCY_HEADER.index("parent_code")
    _agencies(base, inbox, R.AGENCY_HEADER[:j] + R.AGENCY_HEADER[j + 1:], [r[:j] + r[j + 1:] for r in R.agency_rows()])
    return Case("", "agencies.csv without its parent_code column", AGENCIES, AGENCIES,
                _agency_failure(r"parent_code"))


@case
def case_agencies_duplicate_code(base: Base, inbox: Path, rng) -> Case:
    rows = R.agency_rows()
    dup = list(rows[4])
    rows.insert(8, dup)
    _agencies(base, inbox, R.AGENCY_HEADER, rows)
    return Case("", f"agencies.csv lists {dup[0]} twice (lines 6 and 10)", AGENCIES, AGENCIES,
                _agency_failure(r"\b10\b", _esc(dup[0])))


@case
def case_agencies_date_dd_mm_yyyy(base: Base, inbox: Path, rng) -> Case:
    rows = R.agency_rows()
    i = next(i for i, r in enumerate(rows) if r[5] == "2025-06-30")
    rows[i][5] = "30/06/2025"
    _agencies(base, inbox, R.AGENCY_HEADER, rows)
    read = Expect(0, staged=None, quarantined=None, marts_exact=True, fresh=False)
    return Case("", f"agencies.csv line {i + 2}: valid_to '30/06/2025' instead of 2025-06-30", AGENCIES, AGENCIES,
                replace(_agency_failure(rf"\b{i + 2}\b", r"valid_to", r"30/06/2025"), otherwise=(read,)))


@case
def case_agencies_unknown_successor(base: Base, inbox: Path, rng) -> Case:
    rows = R.agency_rows()
    i = next(i for i, r in enumerate(rows) if r[6])
    rows[i][6] = "H31.27999"
    _agencies(base, inbox, R.AGENCY_HEADER, rows)
    return Case("", f"agencies.csv line {i + 2}: successor H31.27999 is not in the list", AGENCIES, AGENCIES,
                _agency_failure(rf"\b{i + 2}\b", r"successor_code", r"H31\.27999"))


@case
def case_agencies_cp1258(base: Base, inbox: Path, rng) -> Case:
    _agencies(base, inbox, R.AGENCY_HEADER, R.agency_rows(), encoding="cp1258")
    return Case("", "agencies.csv saved in Windows-1258", AGENCIES, AGENCIES,
                Expect(0, staged=None, quarantined=None, marts_exact=True))


@case
def case_agencies_semicolon_bom(base: Base, inbox: Path, rng) -> Case:
    text = csv_text(R.AGENCY_HEADER, R.agency_rows(), delimiter=";", lineterminator="\r\n")
    _write(inbox, AGENCIES, "\ufeff" + text)
    return Case("", "agencies.csv saved by Excel: UTF-8 BOM, semicolons, CRLF", AGENCIES, AGENCIES,
                Expect(0, staged=None, quarantined=None, marts_exact=True))


# ------------------------------------------------------------------------------------------------ reading back
def _stg_rows(wh: Path, batch: dict, columns: list[str]) -> list[tuple]:
    """Rows of a batch's staged file (published or held)."""
    import pyarrow.parquet as pq

    table = f"stg_{batch['source']}__{batch['entity']}"
    for d in (wh / table, wh / "_held" / table):
        p = d / f"{batch['batch_id']}.parquet"
        if p.exists():
            t = pq.read_table(p, columns=columns)
            return list(zip(*(t.column(c).to_pylist() for c in columns), strict=True))
    return []


def names() -> list[str]:
    return list(CASES)


__all__ = ["CASES", "Case", "Expect", "make", "names"]
