"""agencies.csv read like any input (transforms.agencies): encodings, delimiters, header names, office dates; every
problem one line naming file, line, column and what was expected; the warehouse's last good list; core and the
quality gate reading the same list."""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import date
from pathlib import Path

import pytest

from transforms import agencies, ingest
from transforms.agencies import AgenciesError

HEADER = "agency_code,agency_name,level,parent_code,valid_from,valid_to,successor_code,legal_basis"
GOOD = [
    "H99,Tỉnh Thử,province,,2023-01-01,,,QĐ 1",
    "H99.1,Huyện Một,district,H99,2023-01-01,2025-06-30,,QĐ 1",
    "H99.11,Xã Cũ,commune,H99.1,2023-01-01,2025-06-30,H99.20,NQ 2025",
    "H99.20,Xã Mới,commune,H99,2025-07-01,,,NQ 2025",
    "H99.S1,Sở Tư pháp,department,H99,2023-01-01,,,QĐ 1",
]
CODES = ["H99", "H99.1", "H99.11", "H99.20", "H99.S1"]


def _agencies(tmp_path, lines, header=HEADER, bom=False, name="agencies.csv"):
    p = tmp_path / name
    p.write_text(("\ufeff" if bom else "") + "\n".join([header, *lines]) + "\n", encoding="utf-8")
    return p


def _write(tmp_path, text: str, encoding: str, name="agencies.csv") -> Path:
    """``text`` saved as an office's software saves it (Windows-1258: tone marks as combining characters)."""
    from devkit.sample.encodings import encode_cp1258

    p = tmp_path / name
    p.write_bytes(encode_cp1258(text) if encoding == "cp1258" else text.encode(encoding))
    return p


def _problems(path) -> list[str]:
    with pytest.raises(AgenciesError) as e:
        agencies.read_agencies(path)
    return e.value.problems


# ---------------------------------------------------------------- reading what offices save
def test_good_file_loads_with_blanks_as_none(tmp_path):
    rows = ingest.load_agencies(_agencies(tmp_path, [GOOD[0], "  H99.1 , Huyện Một ,district,H99,2023-01-01,,,",
                                                     *GOOD[2:]], bom=True))
    assert [r["agency_code"] for r in rows] == CODES
    assert rows[0]["parent_code"] is None and rows[0]["valid_to"] is None
    assert rows[1]["agency_name"] == "Huyện Một" and rows[1]["legal_basis"] is None
    assert rows[2]["successor_code"] == "H99.20"


def test_generated_agencies_file_loads(tmp_path):
    from devkit.sample import generate_inbox

    generate_inbox(tmp_path / "in", seed=3, scale=0.02)
    path = tmp_path / "in" / "agencies.csv"
    rows = ingest.load_agencies(path)
    n_lines = len(path.read_text(encoding="utf-8").strip().splitlines()) - 1
    assert len(rows) == n_lines > 0
    assert {r["level"] for r in rows} <= ingest.AGENCY_LEVELS


@pytest.mark.parametrize("encoding,delim,eol", [
    ("utf-8", ",", "\n"), ("utf-8-sig", ";", "\r\n"), ("cp1258", ",", "\r\n"), ("cp1258", ";", "\r\n"),
    ("utf-16", "\t", "\r\n"), ("utf-16-le", ",", "\r\n"), ("utf-16-be", ";", "\n"), ("utf-8", "\t", "\n"),
])
def test_every_common_encoding_and_delimiter_reads_the_same_list(tmp_path, encoding, delim, eol):
    """Excel's 'CSV (Windows)' writes Windows-1258 (tone marks as combining characters), 'Unicode text' writes
    UTF-16 with tabs, a Vietnamese locale's list separator is ';': the same list comes out of each."""
    lines = [HEADER, *GOOD]
    if delim != ",":
        lines = [ln.replace(",", delim) for ln in lines]
    text = eol.join(lines) + eol
    rows = agencies.read_agencies(_write(tmp_path, text, encoding))
    assert [r["agency_code"] for r in rows] == CODES
    assert rows[0]["agency_name"] == "Tỉnh Thử" == unicodedata.normalize("NFC", "Tỉnh Thử")
    assert rows[4]["agency_name"] == "Sở Tư pháp"
    assert rows[2]["valid_to"] == "2025-06-30" and rows[2]["successor_code"] == "H99.20"


def test_utf8_damaged_by_a_cp1252_round_trip_is_repaired(tmp_path):
    from devkit.sample.encodings import cp1252_mojibake

    rows = agencies.read_agencies(_write(tmp_path, cp1252_mojibake("\n".join([HEADER, *GOOD]) + "\n"), "utf-8"))
    assert rows[0]["agency_name"] == "Tỉnh Thử"


def test_header_names_are_matched_after_nfc_and_casefold(tmp_path):
    header = " Agency_Code ;AGENCY NAME;Level;parent-code;Valid_From;VALID_TO;Successor_Code;legal_basis"
    p = _agencies(tmp_path, [g.replace(",", ";") for g in GOOD], header=header)
    assert [r["agency_code"] for r in agencies.read_agencies(p)] == CODES


def test_office_dates_and_levels_are_accepted(tmp_path):
    p = _agencies(tmp_path, ["H99,Tỉnh,Province,,01/01/2023,,,",
                             "H99.1,Huyện,DISTRICT,H99,1/1/2023,30/06/2025,,",
                             "H99.2,Huyện,district,H99,01-01-2023,30.06.2025,,",
                             "H99.3,Huyện,district,H99,2023-01-01 00:00:00,,,"])
    rows = agencies.read_agencies(p)
    assert [(r["level"], r["valid_from"], r["valid_to"]) for r in rows] == [
        ("province", "2023-01-01", None), ("district", "2023-01-01", "2025-06-30"),
        ("district", "2023-01-01", "2025-06-30"), ("district", "2023-01-01", None)]


# ---------------------------------------------------------------- one line per problem
def test_missing_file_says_where_to_put_it(tmp_path):
    (msg,) = _problems(tmp_path / "nope.csv")
    assert str(tmp_path / "nope.csv") in msg and "TTHC_AGENCIES_PATH" in msg


def test_missing_columns_are_named(tmp_path):
    header = "agency_code,agency_name,parent_code,valid_from,successor_code,legal_basis"
    p = _agencies(tmp_path, ["H99,Tỉnh,,2023-01-01,,"], header=header)
    (msg,) = _problems(p)
    assert msg.startswith(f"{p}, line 1:") and "missing column(s) level, valid_to" in msg


def test_a_delimiter_that_is_none_of_the_three_is_shown(tmp_path):
    p = _agencies(tmp_path, [g.replace(",", "|") for g in GOOD], header=HEADER.replace(",", "|"))
    (msg,) = _problems(p)
    assert msg.startswith(f"{p}, line 1: no agency column found in the header")
    assert "agency_code|agency_name" in msg  # what was read as the header


def test_optional_columns_may_be_absent(tmp_path):
    p = _agencies(tmp_path, ["H99,Tỉnh,province,,2023-01-01,"],
                  header="agency_code,agency_name,level,parent_code,valid_from,valid_to")
    assert ingest.load_agencies(p)[0]["agency_code"] == "H99"


@pytest.mark.parametrize("lines,pattern", [
    ([*GOOD, "H99.1,Huyện Một lặp,district,H99,2023-01-01,,,"],
     r"line 7, column agency_code: H99\.1 is listed twice \(first on line 3\)"),
    ([GOOD[0], ",Không mã,commune,H99,2023-01-01,,,"], r"line 3, column agency_code: empty"),
    ([GOOD[0], "H99.9,Xã,village,H99,2023-01-01,,,"],
     r"line 3, column level: 'village' is not one of commune, department, district, province"),
    ([GOOD[0], "H99.9,Xã,,H99,2023-01-01,,,"], r"line 3, column level: '' is not one of"),
    ([GOOD[0], "H99.9,Xã,commune,H99,2025-02-30,,,"],
     r"line 3, column valid_from: '2025-02-30' is not a date \(expected YYYY-MM-DD or DD/MM/YYYY\)"),
    ([GOOD[0], "H99.9,Xã,commune,H99,2023-01-01,06/31/2025,,"],
     r"line 3, column valid_to: '06/31/2025' is not a date"),
    ([GOOD[0], "H99.9,Xã,commune,H99,2025-07-01,2025-06-30,,"],
     r"line 3, column valid_to: 2025-06-30 is before valid_from 2025-07-01"),
    ([GOOD[0], "H99.9,Xã,commune,H98,2023-01-01,,,"],
     r"line 3, column parent_code: H98 is not an agency of this file"),
    ([*GOOD[:2], "H99.11,Xã Cũ,commune,H99.1,2023-01-01,2025-06-30,H99.77,NQ"],
     r"line 4, column successor_code: H99\.77 is not an agency of this file"),
    ([GOOD[0], "H99.9,Xã A, huyện B,commune,H99,2023-01-01,,,"], r"line 3: 9 fields, the header has 8"),
    ([], r"line 2: no agency listed"),
])
def test_broken_rows_stop_with_file_line_and_column(tmp_path, lines, pattern):
    p = _agencies(tmp_path, lines)
    (msg,) = _problems(p)
    assert msg.startswith(str(p))
    assert re.search(pattern, msg), msg


def test_every_problem_is_one_line_and_all_are_reported(tmp_path):
    p = _agencies(tmp_path, [GOOD[0], "H99.9,Xã,village,H99,2023-01-01,,,", GOOD[0],
                             "H99.8,Xã,commune,H99,31/02/2025,,,"])
    probs = _problems(p)
    assert len(probs) == 3 and all("\n" not in x and x.startswith(f"{p}, line ") for x in probs)
    assert [x.split(",")[1].strip() for x in probs] == ["line 3", "line 4", "line 5"]


def test_line_numbers_count_blank_lines_and_line_breaks_in_quoted_values(tmp_path):
    p = _agencies(tmp_path, [GOOD[0], "", 'H99.1,"Huyện\nMột",district,H99,2023-01-01,,,',
                             "H99.2,Xã,village,H99,2023-01-01,,,"])
    (msg,) = _problems(p)
    assert re.search(r"line 6, column level: 'village'", msg), msg


def test_undecodable_text_names_the_file_and_line(tmp_path):
    """cp1258 leaves a few bytes undefined: a file holding one is neither UTF-8 nor Windows-1258; the message names
    the file (it used to be only 'UnicodeDecodeError ... position 95')."""
    p = tmp_path / "agencies.csv"
    p.write_bytes("\n".join([HEADER, *GOOD[:2]]).encode("cp1258", errors="ignore") + b"\nH99.2,X\xec\x8a,district,,,,,\n")
    (msg,) = _problems(p)
    assert msg.startswith(f"{p}, line 4: the text encoding could not be determined")
    assert "neither UTF-8 nor Windows-1258" in msg
    assert "save the list as UTF-8" in msg


def test_control_characters_are_a_problem_with_their_line(tmp_path):
    p = _agencies(tmp_path, [GOOD[0], "H99.1,Huyện\x1bMột,district,H99,2023-01-01,,,"])
    (msg,) = _problems(p)
    assert msg.startswith(f"{p}, line 3: control character U+001B")
    p = _agencies(tmp_path, [GOOD[0], "H99.1,Huy\ufffdn,district,H99,2023-01-01,,,"])
    (msg,) = _problems(p)
    assert msg.startswith(f"{p}, line 3: U+FFFD")


def test_a_delimiter_after_every_line_is_tolerated(tmp_path):
    p = _agencies(tmp_path, [g + "," for g in GOOD])
    assert [r["agency_code"] for r in agencies.read_agencies(p)] == CODES


def test_parent_may_be_listed_after_its_children(tmp_path):
    rows = ingest.load_agencies(_agencies(tmp_path, [GOOD[1], GOOD[0]]))
    assert [r["agency_code"] for r in rows] == ["H99.1", "H99"]


# ---------------------------------------------------------------- the last good list
def test_a_clean_list_is_kept_canonical_and_a_broken_one_falls_back_to_it(tmp_path):
    wh = tmp_path / "wh"
    office = ";".join(HEADER.split(",")) + "\r\n" + "\r\n".join(
        g.replace(",", ";").replace("2025-06-30", "30/06/2025") for g in GOOD) + "\r\n"
    src = _write(tmp_path, office, "cp1258")
    night = agencies.for_night(src, wh)
    assert night.problem is None and night.alert() is None and night.codes == CODES
    kept = wh / "_config" / "agencies.last_good.csv"
    assert night.path == kept
    text = kept.read_text(encoding="utf-8")
    assert text.splitlines()[0] == HEADER and "30/06/2025" not in text and "2025-06-30" in text
    assert "Tỉnh Thử" in text
    meta = json.loads((wh / "_config" / "agencies.last_good.json").read_text())
    assert meta["rows"] == 5 and meta["source"] == str(src) and len(meta["sha256"]) == 64
    assert not list((wh / "_config").glob(".*tmp"))  # written aside and renamed

    _agencies(tmp_path, [*GOOD, "H99.1,lặp,district,H99,2023-01-01,,,"])  # today's list: a duplicate
    broken = agencies.for_night(src, wh)
    assert broken.codes == CODES and broken.path == kept and broken.kept_on == meta["kept_on"]
    alert = broken.alert()
    assert f"{src}, line 7, column agency_code: H99.1 is listed twice" in alert
    assert f"last good list (read cleanly on {meta['kept_on']})" in alert and "was used" in alert
    assert kept.read_text(encoding="utf-8") == text  # the kept copy is not touched by a broken list


def test_no_list_ever_kept_gives_no_list_and_a_critical_message(tmp_path):
    night = agencies.for_night(tmp_path / "absent.csv", tmp_path / "wh")
    assert night.rows is None and night.path is None and night.codes == []
    assert night.alert().startswith("CRITICAL") and "no good list was ever kept" in night.alert()
    assert "core and marts were left as they were" in night.alert()


def test_a_kept_copy_replaced_after_its_record_is_still_used(tmp_path):
    """A run that stopped between writing the copy and its record: the copy (written whole, then renamed) still
    reads cleanly and is used; its date is then the file's."""
    wh = tmp_path / "wh"
    agencies.for_night(_agencies(tmp_path, GOOD), wh)
    kept = wh / "_config" / "agencies.last_good.csv"
    kept.write_text(kept.read_text(encoding="utf-8") + "H99.30,Xã Thêm,commune,H99,2025-07-01,,,\n",
                    encoding="utf-8")
    got = agencies.last_good(wh)
    assert got is not None and got.rows[-1]["agency_code"] == "H99.30" and re.fullmatch(r"\d{4}-\d\d-\d\d",
                                                                                        got.kept_on)
    kept.write_text("garbage\n", encoding="utf-8")
    assert agencies.last_good(wh) is None  # a copy that does not read is no good list


def test_core_reads_the_kept_copy_of_an_office_list(tmp_path):
    """Core (DuckDB's CSV reader) gets the canonical copy: the cp1258, semicolon, DD/MM/YYYY list arrives typed."""
    import duckdb

    from transforms import core

    office = "\r\n".join(";".join(x.split(",")) for x in [HEADER, *GOOD]).replace("2025-06-30", "30/06/2025")
    src = _write(tmp_path, office + "\r\n", "cp1258")
    night = agencies.for_night(src, tmp_path / "wh")
    con = duckdb.connect()
    try:
        core.load_agencies(con, night.path)
        got = con.execute("SELECT agency_code, agency_name, valid_to, successor_code FROM agencies "
                          "ORDER BY agency_code").fetchall()
    finally:
        con.close()
    assert got[2] == ("H99.11", "Xã Cũ", date(2025, 6, 30), "H99.20")
    assert [g[0] for g in got] == sorted(CODES)


def test_the_gate_reads_validity_with_the_same_loader(tmp_path):
    from transforms.quality.gate import _validity
    from tthc.settings import Settings

    inbox, wh = tmp_path / "in", tmp_path / "wh"
    inbox.mkdir()
    text = "\t".join(HEADER.split(",")) + "\r\n" + "\r\n".join(
        g.replace(",", "\t").replace("2025-06-30", "30/06/2025") for g in GOOD) + "\r\n"
    _write(inbox, text, "utf-16")
    s = Settings(inbox=inbox, warehouse=wh)
    v = _validity(s)
    assert v["H99.1"] == (date(2023, 1, 1), date(2025, 6, 30)) and v["H99"] == (date(2023, 1, 1), None)
    agencies.for_night(s.resolved_agencies_path, wh)  # kept
    (inbox / "agencies.csv").write_text(HEADER + "\nH99,,village,,,,,\n", encoding="utf-8")  # broken today
    assert _validity(s) == v  # the last good list's
    assert _validity(Settings(inbox=tmp_path / "none", warehouse=tmp_path / "wh2")) is None
