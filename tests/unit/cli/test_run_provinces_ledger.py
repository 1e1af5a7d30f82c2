"""`tthc run-provinces` and the provinces' ledger URL, by the real command: what is refused before any cluster starts
is one sentence (exit 2), never a traceback, and never shows a password."""

from __future__ import annotations

from tests.cluster import free_port
from tests.unit.cli.test_faults import tthc


def _root(tmp_path, *names: str):
    root = tmp_path / "inboxes"
    for n in names:
        (root / n).mkdir(parents=True)
        (root / n / "agencies.csv").write_text("agency_code,agency_name\n", encoding="utf-8")
    return root


def _refused(r, *expected: str) -> str:
    text = r.stdout + r.stderr
    assert r.returncode == 2, text
    assert "Traceback" not in text and "s3cret" not in text
    flat = " ".join(text.replace("│", " ").split())  # typer's box wraps long messages
    for e in expected:
        assert e in flat, flat
    return flat


def test_one_ledger_url_for_every_province_is_refused(tmp_path):
    root = _root(tmp_path, "lam_xuyen", "song_bac")
    r = tthc("run-provinces", "--inbox-root", str(root), "--warehouse-root", str(tmp_path / "wh"),
             "--as-of", "2025-12-31", env={"TTHC_LEDGER_URL": "postgresql+psycopg://etl:s3cret@db:5432/tthc",
                                          "TTHC_LOG_DIR": str(tmp_path)})
    _refused(r, "would mix every province's batches in one database", "add {province}", "etl:***@db")
    assert not (tmp_path / "wh").exists()


def test_folders_that_would_share_a_ledger_are_refused(tmp_path):
    root = _root(tmp_path, "Ha Noi", "ha-noi")
    r = tthc("run-provinces", "--inbox-root", str(root), "--warehouse-root", str(tmp_path / "wh"),
             "--ledger-url", "postgresql+psycopg://etl:s3cret@db:5432/tthc_{province}", "--as-of", "2025-12-31",
             env={"TTHC_LOG_DIR": str(tmp_path)})
    _refused(r, "'Ha Noi' and 'ha-noi' would share the ledger", "tthc_ha_noi")


def test_an_unreachable_ledger_server_is_one_sentence(tmp_path):
    root = _root(tmp_path, "lam_xuyen")
    port = free_port()  # nothing listens there
    r = tthc("run-provinces", "--inbox-root", str(root), "--warehouse-root", str(tmp_path / "wh"),
             "--ledger-url", f"postgresql+psycopg://etl:s3cret@127.0.0.1:{port}/tthc_{{province}}",
             "--as-of", "2025-12-31", env={"TTHC_LOG_DIR": str(tmp_path)})
    _refused(r, f"Cannot reach the ledger database server of postgresql+psycopg://etl:***@127.0.0.1:{port}"
                "/tthc_lam_xuyen", "Check the ledger URL (host, port, user)")
