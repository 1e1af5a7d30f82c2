"""Inbox discovery: every entry under the inbox gets a verdict, read or listed with its reason (README, "the
inbox"); and agencies.csv at the inbox root, read like any input."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from transforms import agencies as agency_list
from transforms.contracts import ENTITY_SOURCE

KINDS = {".csv": "csv", ".xlsx": "xlsx", ".json": "json", ".jsonl": "jsonl"}
AGENCY_COLUMNS = agency_list.COLUMNS
AGENCY_LEVELS = agency_list.LEVELS


@dataclass
class InboxFile:
    path: Path
    rel: str  # the path under the inbox as shown to people (control characters and non-UTF-8 bytes escaped)
    source: str | None
    entity: str | None
    kind: str | None
    problem: str | None = None  # why it is not ingested as data (the reason it is listed with)
    # None: the file is opened (read, or hashed and rejected for its ``problem``). Else it is listed without its
    # bytes being touched, with this ledger status: ``skipped`` (hidden, temporary, not data: only listed),
    # ``rejected`` (a link leading outside the inbox, not a regular file: the run fails), ``failed`` (a folder
    # that cannot be listed: the run fails)
    listed: str | None = None


# inbox discovery: what is only listed, what is refused (see README, "the inbox")
ROOT_FILES = ("agencies.csv", "manifest.json", "README.md")  # configuration and documentation at the inbox root
TEMP_SUFFIXES = {".tmp", ".temp", ".swp", ".swo", ".part", ".partial", ".crdownload", ".download", ".filepart",
                 ".bak", ".old"}
SYSTEM_FILES = {"thumbs.db", "ehthumbs.db", "desktop.ini", "icon\r"}
NOT_DATA_SUFFIXES = {".pdf", ".doc", ".docx", ".odt", ".rtf", ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif",
                     ".tiff", ".heic", ".webp", ".msg", ".eml", ".url", ".ini"}
LAYOUT = ("not under <source>/<entity>/ (expected e.g. one_stop/dossiers/ or dvc_portal/payments/); move it to "
          "its folder")


def shown(name: str) -> str:
    """A file or folder name as it can be printed and stored: control characters and bytes that are not UTF-8
    (kept by the OS as lone surrogates) as ``\\xNN``."""
    out = []
    for ch in name:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:
            out.append(f"\\x{o - 0xDC00:02x}")
        elif o < 0x20 or 0x7F <= o <= 0x9F:
            out.append(f"\\x{o:02x}")
        else:
            out.append(ch)
    return "".join(out)


def _name_problem(parts: tuple[str, ...]) -> str | None:
    name = parts[-1]
    if name.casefold() in SYSTEM_FILES:
        return None
    for p in parts:
        if any(0xDC80 <= ord(ch) <= 0xDCFF for ch in p):
            return "its name is not valid UTF-8 text; rename it (letters, digits, '-', '_')"
        if any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in p):
            return "its name holds control characters (shown as \\xNN); rename it (letters, digits, '-', '_')"
        if "\\" in p:
            return ("its name holds backslashes, a Windows path kept as a name (a zip made on Windows?): where it "
                    "belongs is unclear; rename it and put it in its <source>/<entity>/ folder")
    return None


def _only_listed(name: str) -> str | None:
    """Why a file is only listed, not read (hidden, temporary, system or not a data file); None: look further."""
    low = name.casefold()
    suffix = Path(low).suffix
    if low.startswith(".~lock.") and low.endswith("#"):
        return "LibreOffice lock file (the file is open in LibreOffice): not read"
    if low.startswith("._"):
        return "macOS resource copy ('._' file written on a USB drive or network share): not read"
    if low == ".ds_store":
        return "macOS folder settings file: not read"
    if low.startswith("."):
        return "hidden file (name starts with '.'): not read; if it holds data, remove the leading '.'"
    if low.startswith("~$"):
        return "Office lock or temporary file ('~$', the workbook is open in Excel): not read"
    if low.endswith("~") or suffix in TEMP_SUFFIXES:
        return ("temporary, backup or partly downloaded file: not read; the finished export is read once it is "
                "saved under its own name")
    if low in SYSTEM_FILES:
        return "Windows or macOS system file: not read"
    if suffix in NOT_DATA_SUFFIXES:
        return "not a data file (documents and images are not read)"
    return None


def _kind_of(mode: int) -> str:
    return ("named pipe (FIFO)" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode)
            else "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special file")


def _count_files(path: Path) -> int:
    n = 0
    for _dir, _dirs, names in os.walk(path):
        n += len(names)
    return n


class _Walk:
    """One walk of the inbox: the entries found, in the order met (``discover`` sorts them)."""

    def __init__(self, inbox: Path):
        self.root = Path(os.path.realpath(inbox))
        self.found: list[InboxFile] = []

    def listed(self, path: Path, parts: tuple[str, ...], status: str, why: str, *, folder: bool = False) -> None:
        """An entry only listed (not opened), with its ledger status and reason."""
        rel = ("/".join(shown(p) for p in parts) or ".") + ("/" if folder else "")
        src, ent = ((parts[0], parts[1]) if len(parts) >= 2 and ENTITY_SOURCE.get(parts[1]) == parts[0]
                    else (None, None))
        self.found.append(InboxFile(path, rel, src, ent, None, problem=why, listed=status))

    def visit(self, folder: Path, parts: tuple[str, ...]) -> None:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            why = ("cannot list this folder: permission denied; ask the operator to fix its permissions"
                   if isinstance(exc, PermissionError) else f"cannot list this folder: {exc.strerror or exc}")
            self.listed(folder, parts, "failed", why, folder=True)
            return
        for e in entries:
            self.entry(e, Path(e.path), (*parts, e.name))

    def entry(self, e: os.DirEntry, p: Path, ps: tuple[str, ...]) -> None:
        try:
            is_dir = e.is_dir(follow_symlinks=False)
        except OSError:
            is_dir = False
        if is_dir:
            if e.name.startswith("."):
                self.listed(p, ps, "skipped", f"hidden folder (name starts with '.'): its {_count_files(p)} "
                                              f"file(s) are not read", folder=True)
            else:
                self.visit(p, ps)
            return
        why = _only_listed(e.name)
        if why is not None and _name_problem(ps) is None:
            self.listed(p, ps, "skipped", why)
            return
        if e.is_symlink() and not self.link_followed(p, ps):
            return
        try:
            st = p.stat()
        except OSError as exc:
            self.listed(p, ps, "failed", f"cannot read its details: {exc.strerror or exc}")
            return
        if not stat.S_ISREG(st.st_mode):
            self.listed(p, ps, "rejected", f"not a regular file but a {_kind_of(st.st_mode)}: not opened")
            return
        if len(ps) == 1 and e.name in ROOT_FILES:
            return  # configuration and documentation at the inbox root
        self.found.append(_file_verdict(p, ps))

    def link_followed(self, p: Path, ps: tuple[str, ...]) -> bool:
        """Whether a link to a file inside the inbox is read as that file; else it is listed with its reason."""
        target = os.path.realpath(p)
        inside = target == str(self.root) or target.startswith(str(self.root) + os.sep)
        if not os.path.exists(target):
            self.listed(p, ps, "rejected", f"broken link (leads to {shown(os.readlink(p))}, which does not "
                                           f"exist); replace it with the file itself")
        elif not inside:
            self.listed(p, ps, "rejected", f"link leading outside the inbox (to {shown(target)}): not followed; "
                                           f"copy the file itself into the inbox")
        elif os.path.isdir(target):
            self.listed(p, ps, "skipped", f"link to the inbox folder {shown(os.path.relpath(target, self.root))}: "
                                          f"its files are read there", folder=True)
        else:
            return True
        return False


def _file_verdict(p: Path, ps: tuple[str, ...]) -> InboxFile:
    """A regular file: read, or rejected for its name, place or type (hashed, then rejected)."""
    name = ps[-1]
    rel = "/".join(shown(x) for x in ps)
    kind = KINDS.get(Path(name).suffix.lower())
    bad_name = _name_problem(ps)
    if bad_name:
        return InboxFile(p, rel, None, None, kind, problem=bad_name)
    if len(ps) != 3 or ENTITY_SOURCE.get(ps[1]) != ps[0]:
        return InboxFile(p, rel, None, None, kind, problem=LAYOUT)
    if Path(name).suffix.lower() == ".lnk":
        return InboxFile(p, rel, ps[0], ps[1], None, problem=(
            "a Windows shortcut: shortcuts are not followed; copy the file itself into this folder"))
    if kind is None:
        return InboxFile(p, rel, ps[0], ps[1], None, problem=(
            f"unsupported file type '{Path(name).suffix}' (expected .xlsx, .csv, .json, .jsonl); save the export "
            f"in one of these"))
    return InboxFile(p, rel, ps[0], ps[1], kind)


def discover(inbox: Path) -> list[InboxFile]:
    """Every entry under the inbox, each either to be read or listed with its reason (never silently left out):
    files under ``<inbox>/<source>/<entity>/`` are read; hidden, temporary, system and document files are only
    listed; files elsewhere, of an unsupported type or with a broken name are rejected (the run fails); links
    leading outside the inbox are not followed, and special files (pipes, sockets) and folders that cannot be
    listed are refused without being opened. Only agencies.csv, manifest.json and README.md at the inbox root
    are left out: they are configuration and documentation."""
    inbox = Path(inbox)
    if not inbox.is_dir():
        return []
    walk = _Walk(inbox)
    walk.visit(inbox, ())
    walk.found.sort(key=lambda f: f.rel)
    return walk.found


def load_agencies(path: Path) -> list[dict]:
    """agencies.csv (sources.md section 4) read like any input and checked (``transforms.agencies``); raises
    ``agency_list.AgenciesError`` with one line per problem (file, line, column, what was expected)."""
    return agency_list.read_agencies(path)
