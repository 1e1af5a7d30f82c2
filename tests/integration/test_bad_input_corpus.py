"""The bad-input corpus (issue 11): every damaged inbox of tests/corpus/damage.py run as a night through the very
path `tthc run` takes (``tthc.cli.main``, in this process, on the session's Prefect harness), then checked:

- the exit code `tthc run` gives;
- a message (run summary line, ledger, quality report, console) naming the file and the place;
- raw = staged + quarantined for every batch of the night, in the ledger and in the Parquet files;
- the damaged file's rows: staged, quarantined (how many, which rule, which lines), held or not;
- every other file of the base fully staged (all its rows in stg, none held);
- no 'Traceback' in what the operator sees (console, report, ledger);
- a clean rerun: the damaged file replaced by its clean twin, the night run again on the same warehouse, and the
  three KPI marts equal those of a clean build of the clean base (built once per session).

Every failed aspect of a case is listed in its assertion message, not only the first one.
"""

from __future__ import annotations

import contextlib
import csv
import html
import io
import json
import logging
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pytest

from corpus import damage
from corpus.base import build_base

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]  # a reader that loops fails its case, not the suite
AS_OF = "2025-12-31"
KPI_MARTS = ("mart_kpi__agency_period", "mart_766__agency_period", "mart_tt01_form06__agency_period")


# ------------------------------------------------------------------------------------------------ running a night
@dataclass
class Night:
    exit_code: int
    output: str  # what the operator's terminal shows: stdout, stderr, Prefect's console log lines
    error: BaseException | None  # an exception that escaped the command (a traceback on the terminal)


def _console_handlers() -> list[logging.Handler]:
    """The logging handlers that print to the terminal (Prefect's console handler; not pytest's own)."""
    seen, out = set(), []
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs"):
        for h in logging.getLogger(name).handlers:
            if (isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
                    and not type(h).__module__.startswith("_pytest") and id(h) not in seen):
                seen.add(id(h))
                out.append(h)
    return out


@contextlib.contextmanager
def _terminal():
    """Everything the command writes to the terminal: sys.stdout/sys.stderr and the logging console handlers."""
    buf = io.StringIO()
    saved_std = (sys.stdout, sys.stderr)
    handlers = [(h, h.stream, getattr(getattr(h, "console", None), "file", None)) for h in _console_handlers()]
    sys.stdout = sys.stderr = buf
    for h, _s, _f in handlers:
        h.stream = buf
        if getattr(h, "console", None) is not None:
            h.console.file = buf
    try:
        yield buf
    finally:
        sys.stdout, sys.stderr = saved_std
        for h, s, f in handlers:
            h.stream = s
            if f is not None:
                h.console.file = f


def run_night(inbox: Path, wh: Path) -> Night:
    """`tthc run --inbox ... --warehouse ... --as-of 2025-12-31`, in this process."""
    from tthc.cli import main

    code, err = 0, None
    with _terminal() as buf:
        try:
            main(["run", "--inbox", str(inbox), "--warehouse", str(wh), "--as-of", AS_OF])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException as exc:  # noqa: BLE001 - an exception escaping the CLI is itself a finding
            code, err = 1, exc
    return Night(code, buf.getvalue(), err)


@contextlib.contextmanager
def _unprivileged(*dirs: Path):
    """Run as 'nobody' when this process is root (root reads mode-000 files): the process's effective user is
    switched for every thread (glibc applies setuid calls process-wide) and switched back afterwards."""
    if os.geteuid() != 0:
        yield
        return
    import pwd

    nobody = pwd.getpwnam("nobody")
    for d in dirs:
        for p in [d, *d.rglob("*")]:
            os.lchown(p, nobody.pw_uid, nobody.pw_gid)
    os.setegid(nobody.pw_gid)
    os.seteuid(nobody.pw_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


# ------------------------------------------------------------------------------------------------ reading a warehouse
def _ledger(wh: Path) -> sqlite3.Connection:
    con = sqlite3.connect(f"file:{wh / '_ledger.sqlite'}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    return con


def last_run(wh: Path) -> dict:
    with contextlib.closing(_ledger(wh)) as con:
        r = con.execute("SELECT * FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()
        return dict(r) if r else {}


def batches(wh: Path, run_id: str | None = None) -> list[dict]:
    with contextlib.closing(_ledger(wh)) as con:
        q, args = ("SELECT * FROM batches WHERE run_id = ?", (run_id,)) if run_id else ("SELECT * FROM batches", ())
        return [dict(r) for r in con.execute(q + " ORDER BY started_at", args)]


def dq_messages(wh: Path, run_id: str) -> list[str]:
    out = []
    with contextlib.closing(_ledger(wh)) as con:
        for r in con.execute("SELECT * FROM dq_results WHERE run_id = ? AND success = 0", (run_id,)):
            obs = json.loads(r["observed_json"] or "{}")
            out.append(f"{obs.get('source_file', '')}: {obs.get('message', '')} {r['check_name']} "
                       f"{r['examples_json'] or ''}")
    return out


def _strings(x) -> list[str]:
    """Every sentence-like leaf of a JSON value; a dict of scalars becomes one line."""
    if isinstance(x, str):
        return [x]
    if isinstance(x, list):
        return [s for v in x for s in _strings(v)]
    if isinstance(x, dict):
        flat = " ".join(f"{k}: {v}" for k, v in x.items() if not isinstance(v, dict | list))
        return [flat] + [s for v in x.values() if isinstance(v, dict | list) for s in _strings(v)]
    return []


def report_lines(wh: Path, run_id: str) -> list[str]:
    p = wh / "_reports" / f"dq_{run_id}.html"
    if not p.exists():
        return []
    text = p.read_text(encoding="utf-8")
    parts = re.split(r"</tr>|</li>|</p>|<br>|</h\d>", text)
    return [html.unescape(re.sub(r"<[^>]+>", " ", s)) for s in parts]


def messages(wh: Path, night: Night) -> list[str]:
    """What the operator can read about the night, one message per entry."""
    run = last_run(wh)
    out: list[str] = []
    term = " ".join(night.output.split())  # the last line, 'Run failed: a; b; c', unwrapped
    last = max(term.rfind("Run failed:"), term.rfind("Run completed:"))
    out += term[last:].split("; ") if last >= 0 else []
    out += [ln for ln in night.output.splitlines() if ln.strip()]
    if run:
        out += _strings(json.loads(run.get("summary_json") or "{}"))
        for b in batches(wh, run["run_id"]):
            out.append(" ".join(str(b.get(k) or "") for k in ("path", "status", "error", "unknown_columns")))
        out += dq_messages(wh, run["run_id"])
        out += report_lines(wh, run["run_id"])
    return [unicodedata.normalize("NFC", " ".join(m.split())) for m in out if m and m.strip()]


def _parquet_rows(p: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(p).metadata.num_rows if p.exists() else 0


def batch_files(wh: Path, b: dict) -> dict[str, Path]:
    t = f"{b['source']}__{b['entity']}"
    name = f"{b['batch_id']}.parquet"
    return {"raw": wh / f"raw_{t}" / name, "stg": wh / f"stg_{t}" / name, "held": wh / "_held" / f"stg_{t}" / name,
            "quarantine": wh / f"quarantine_{t}" / name}


def quarantine(wh: Path, b: dict) -> list[dict]:
    import pyarrow.parquet as pq

    p = batch_files(wh, b)["quarantine"]
    if not p.exists():
        return []
    t = pq.read_table(p)
    cols = [c for c in ("_rule", "_column", "_source_line", "_source_row") if c in t.column_names]
    return t.select(cols).to_pylist()


def marts(wh: Path) -> dict[str, list]:
    """The published KPI marts, read as an analyst reads them (warehouse.views), rows sorted."""
    from warehouse.views import connect

    out = {}
    con = connect(wh)
    try:
        have = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        for t in KPI_MARTS:
            rows = con.execute(f'SELECT * FROM "{t}"').fetchall() if t in have else []
            out[t] = sorted(rows, key=repr)
    finally:
        con.close()
    return out


def _mart_diff(got: dict, want: dict) -> str:
    bad = []
    for t in KPI_MARTS:
        if got.get(t) != want[t]:
            g, w = set(got.get(t) or []), set(want[t])
            bad.append(f"{t}: {len(g - w)} rows not in the clean build, {len(w - g)} missing (of {len(w)})")
    return "; ".join(bad)


# ------------------------------------------------------------------------------------------------ session fixtures
@pytest.fixture(scope="session")
def corpus_env(tmp_path_factory):
    """The settings of every corpus night: no pulls, no alerts, the GX sample off (exact counts come from
    DuckDB), a log folder of its own."""
    logs = tmp_path_factory.mktemp("corpus_logs")
    logs.chmod(0o777)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TTHC_PSEUDONYM_KEY", "corpus-test-key")
        mp.setenv("TTHC_DQ_GX_SAMPLE_ROWS", "0")
        mp.setenv("TTHC_ALERT_URLS", "")
        mp.setenv("TTHC_LOG_DIR", str(logs))
        for k in ("TTHC_DVC_PORTAL_URL", "TTHC_ONE_STOP_URL", "TTHC_ONE_STOP_DB_URL", "TTHC_LEDGER_URL",
                  "TTHC_AGENCIES_PATH", "TTHC_TARGETS_PATH", "TTHC_EXTRA_DAYS_OFF_PATH", "TTHC_CONFIG",
                  "TTHC_INBOX", "TTHC_WAREHOUSE", "TTHC_AS_OF", "TTHC_DEBUG"):
            mp.delenv(k, raising=False)
        yield logs


@pytest.fixture(scope="session")
def corpus_base(tmp_path_factory):
    return build_base(tmp_path_factory.mktemp("corpus") / "base")


def _fully_staged(wh: Path, base, rels) -> list[str]:
    """Every file of ``rels``: its latest batch passed with all its rows in staging, none quarantined or held."""
    problems = []
    every = batches(wh)
    for rel in rels:
        f = base.files[rel]
        mine = [b for b in every if b["path"] == rel and b["rows_raw"] is not None]
        if not mine:
            problems.append(f"{rel}: never staged")
            continue
        b = mine[-1]
        files = batch_files(wh, b)
        got = (b["status"], b["rows_raw"], b["rows_staged"], b["rows_quarantined"], _parquet_rows(files["stg"]))
        if got != ("passed", f.n, f.n, 0, f.n):
            problems.append(f"{rel}: not fully staged (status, raw, staged, quarantined, stg rows) = {got}, "
                            f"expected {('passed', f.n, f.n, 0, f.n)}")
    return problems


@dataclass
class CleanBuild:
    warehouse: Path
    marts: dict[str, list]


@pytest.fixture(scope="session")
def clean_build(prefect_harness, corpus_env, corpus_base, tmp_path_factory) -> CleanBuild:
    """The clean base built once: its KPI marts are what every clean rerun must give."""
    wh = tmp_path_factory.mktemp("corpus_clean") / "wh"
    night = run_night(corpus_base.root, wh)
    assert night.exit_code == 0, night.output[-3000:]
    assert not _fully_staged(wh, corpus_base, corpus_base.files), _fully_staged(wh, corpus_base, corpus_base.files)
    m = marts(wh)
    assert all(m[t] for t in KPI_MARTS), {t: len(v) for t, v in m.items()}
    return CleanBuild(wh, m)


@pytest.fixture(scope="session")
def warm(clean_build, corpus_base, tmp_path_factory):
    """warm(rel): a warehouse holding a clean night of the base without ``rel`` (None: the clean build's), built
    once per file; a case's night starts from a copy, so only its damaged file is new."""
    cache: dict[str | None, Path] = {None: clean_build.warehouse}

    def get(without: str | None) -> Path:
        if without not in cache:
            root = tmp_path_factory.mktemp("corpus_warm")
            shutil.copytree(corpus_base.root, root / "inbox")
            (root / "inbox" / without).unlink()
            night = run_night(root / "inbox", root / "wh")
            assert night.exit_code == 0, night.output[-3000:]
            cache[without] = root / "wh"
        return cache[without]

    return get


# ------------------------------------------------------------------------------------------------ the corpus
@pytest.mark.parametrize("name", damage.names())
def test_bad_input_night(name, prefect_harness, corpus_env, corpus_base, clean_build, request, tmp_path):
    work = tmp_path
    if damage.CASES[name].__name__ == "case_unreadable_mode_000" and os.geteuid() == 0:
        work = Path(tempfile.mkdtemp(prefix="tthc-corpus-"))  # reachable by 'nobody' (pytest's tmp is root-only)
        work.chmod(0o755)
        request.addfinalizer(lambda: shutil.rmtree(work, ignore_errors=True))
    inbox, wh = work / "inbox", work / "wh"
    case = damage.make(name, corpus_base, inbox)
    if not case.fresh:
        shutil.copytree(request.getfixturevalue("warm")(case.warm_without(corpus_base)), wh, symlinks=True)

    # the damaged night, as `tthc run`
    if case.expect.unprivileged:
        wh.mkdir(parents=True, exist_ok=True)
        with _unprivileged(wh, Path(os.environ["TTHC_LOG_DIR"])):
            night = run_night(inbox, wh)
    else:
        night = run_night(inbox, wh)
    outcomes = [case.expect, *case.expect.otherwise]
    found = [night_problems(e, case, night, wh, corpus_base, clean_build, work) for e in outcomes]
    problems = min(found, key=len) if any(not f for f in found) else found[0]
    if os.environ.get("TTHC_CORPUS_VERBOSE"):
        print(f"\n[{name}] exit {night.exit_code}; outcome met: {[i for i, f in enumerate(found) if not f]}")
    if len(outcomes) > 1 and problems:
        problems = problems + [f"(nor the other accepted outcome: {'; '.join(f)})" for f in found[1:]]

    # the clean rerun on the same warehouse
    case.restore(corpus_base, inbox)
    again = run_night(inbox, wh)
    if again.exit_code != 0 or again.error is not None:
        problems.append(f"clean rerun: exit {again.exit_code} ({' '.join(again.output.split())[-300:]})")
    if "Traceback" in again.output:
        problems.append("clean rerun: the operator sees a Traceback")
    if d := _mart_diff(marts(wh), clean_build.marts):
        problems.append(f"clean rerun: marts differ from a clean build: {d}")

    assert not problems, f"{name} ({case.what}):\n- " + "\n- ".join(problems)


def night_problems(e: damage.Expect, case: damage.Case, night: Night, wh: Path, base, clean: CleanBuild,
                   work: Path) -> list[str]:
    """Everything in which the damaged night differs from the outcome ``e``."""
    problems: list[str] = []
    run = last_run(wh) if (wh / "_ledger.sqlite").exists() else {}
    if night.error is not None:
        problems.append(f"the command raised {type(night.error).__name__}: {night.error}")
    if night.exit_code != e.exit_code:
        tail = " ".join(night.output.split())[-400:]
        problems.append(f"exit code {night.exit_code}, expected {e.exit_code} ({tail})")
    msgs = messages(wh, night) if run else [" ".join(night.output.split())]
    if "Traceback" in night.output + "\n".join(msgs):
        problems.append("the operator sees a Traceback")

    # a message naming the file and the place
    if e.named:
        name_of = e.named.rsplit("/", 1)[-1]
        naming = [m for m in msgs if name_of in m]
        hit = next((m for m in naming if all(re.search(p, m, re.I) for p in e.place)), None)
        if hit is None:
            problems.append(f"no message names {name_of} with {list(e.place)}; messages naming it: "
                            f"{[m[:200] for m in naming][:4]}")
        elif os.environ.get("TTHC_CORPUS_VERBOSE"):
            print(f"\n[{case.name}] {hit[:300]}")

    # raw = staged + quarantined, for every batch of the night (ledger and Parquet)
    night_batches = batches(wh, run["run_id"]) if run else []
    for b in night_batches:
        if b["rows_raw"] is not None and b["rows_raw"] != (b["rows_staged"] or 0) + (b["rows_quarantined"] or 0):
            problems.append(f"{b['path']}: ledger raw {b['rows_raw']} != staged {b['rows_staged']} + "
                            f"quarantined {b['rows_quarantined']}")
        files = batch_files(wh, b)
        if files["raw"].exists():
            raw, stg = _parquet_rows(files["raw"]), _parquet_rows(files["stg"]) + _parquet_rows(files["held"])
            q = _parquet_rows(files["quarantine"])
            if raw != stg + q:
                problems.append(f"{b['path']}: Parquet raw {raw} != staged {stg} + quarantined {q}")
            if b["rows_raw"] is not None and (b["rows_staged"], b["rows_quarantined"]) != (stg, q):
                problems.append(f"{b['path']}: ledger counts ({b['rows_staged']}, {b['rows_quarantined']}) are not "
                                f"the Parquet files' ({stg}, {q})")
        elif b["status"] in ("rejected", "failed") and (files["stg"].exists() or files["held"].exists()):
            problems.append(f"{b['path']}: {b['status']} but its rows are staged")

    # the damaged file's rows
    mine = [b for b in night_batches if b["path"] == case.damaged]
    staged = sum(_parquet_rows(batch_files(wh, b)["stg"]) + _parquet_rows(batch_files(wh, b)["held"]) for b in mine)
    qrows = [r for b in mine for r in quarantine(wh, b)]
    if e.staged is not None and staged != e.staged:
        problems.append(f"{case.damaged}: {staged} rows staged, expected {e.staged}")
    if e.quarantined is not None and len(qrows) != e.quarantined:
        rules = sorted({r.get("_rule") for r in qrows})
        problems.append(f"{case.damaged}: {len(qrows)} rows quarantined {rules}, expected {e.quarantined}"
                        + (f" ({e.rule})" if e.rule else ""))
    if e.rule and qrows and not all(re.search(e.rule, str(r.get("_rule")), re.I) for r in qrows):
        problems.append(f"{case.damaged}: quarantined with {sorted({r.get('_rule') for r in qrows})}, "
                        f"expected {e.rule}")
    if e.lines is not None and len(qrows) == len(e.lines):
        got = sorted(r.get("_source_line") for r in qrows)
        if got != sorted(e.lines):
            problems.append(f"{case.damaged}: quarantined lines {got}, expected {sorted(e.lines)}")
    if e.held is not None:
        held = any(batch_files(wh, b)["held"].exists() for b in mine)
        if held != e.held:
            problems.append(f"{case.damaged}: {'held' if held else 'not held'}, expected "
                            f"{'held' if e.held else 'not held'}")

    # every other file fully staged; every file ingested and gated
    if e.others_staged:
        problems += _fully_staged(wh, base, [rel for rel in base.files if rel != case.replaces])
    if e.ingested_all:
        for rel in base.files:
            if not any(b["path"] == rel and b["status"] in ("passed", "gate_failed") for b in night_batches):
                problems.append(f"{rel}: not ingested and gated in the night "
                                f"({[b['status'] for b in night_batches if b['path'] == rel]})")

    # the night's marts, what an export of them writes, the case's own checks
    got = marts(wh)
    if e.marts_exact and (d := _mart_diff(got, clean.marts)):
        problems.append(f"the night's marts are not a clean build's: {d}")
    if e.marts_absent and any(got[t] for t in KPI_MARTS):
        problems.append("marts were published although no agency list was ever usable")
    if e.export_safe:
        problems += _export_problems(wh, work / "export.csv")
    for check in case.checks:
        staged_batch = next((b for b in mine if b["rows_raw"]), None)
        if staged_batch is None:
            problems.append(f"{case.damaged}: no staged batch to check")
            continue
        try:
            check(case, wh, staged_batch)
        except AssertionError as exc:
            problems.append(str(exc))
    return problems


def _export_problems(wh: Path, out: Path) -> list[str]:
    """`tthc query ... --out x.csv` of the field names: no cell a spreadsheet would run as a formula."""
    from tthc.cli import main

    sql = ("SELECT field_name FROM stg_one_stop__dossiers UNION ALL "
           "SELECT field_name FROM mart_tt01_form06__agency_period")
    with _terminal() as buf:
        try:
            main(["query", sql, "--warehouse", str(wh), "--out", str(out)])
        except SystemExit as exc:
            if exc.code not in (0, None):
                return [f"tthc query --out failed: {' '.join(buf.getvalue().split())[-300:]}"]
    cells = [c for row in csv.reader(io.StringIO(out.read_text(encoding="utf-8-sig"))) for c in row]
    risky = [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    return [f"tthc query --out wrote formula-like cells: {risky[:3]}"] if risky else []
