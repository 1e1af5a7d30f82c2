"""The one typed settings object: TTHC_* env vars, a TOML file (TTHC_CONFIG), explicit overrides, the key file."""

from __future__ import annotations

import stat
from datetime import date
from pathlib import Path

import pytest

from tthc.settings import get_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No TTHC_* variable of the caller's shell leaks in; no ./tthc.toml is picked up."""
    import os

    for k in list(os.environ):
        if k.startswith("TTHC_"):
            monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)


def test_env_vars_set_typed_values(monkeypatch, tmp_path):
    monkeypatch.setenv("TTHC_WAREHOUSE", str(tmp_path / "wh"))
    monkeypatch.setenv("TTHC_INBOX", str(tmp_path / "in"))
    monkeypatch.setenv("TTHC_BATCH_ROWS", "1234")
    monkeypatch.setenv("TTHC_AS_OF", "2025-06-30")
    monkeypatch.setenv("TTHC_LEDGER_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("TTHC_ALERT_URLS", " json://a , ,mailto://b ")
    s = get_settings()
    assert s.warehouse == tmp_path / "wh"
    assert s.inbox == tmp_path / "in"
    assert s.batch_rows == 1234 and isinstance(s.batch_rows, int)
    assert s.as_of == date(2025, 6, 30)
    assert s.resolved_ledger_url == "postgresql+psycopg://u@h/db"
    assert s.alert_url_list == ["json://a", "mailto://b"]
    assert s.resolved_agencies_path == tmp_path / "in" / "agencies.csv"


def test_defaults_need_no_server(tmp_path):
    s = get_settings(warehouse=tmp_path / "wh")
    assert s.resolved_ledger_url == f"sqlite:///{(tmp_path / 'wh' / '_ledger.sqlite').resolve()}"
    assert s.as_of is None
    assert s.resolved_targets_path.exists()


def test_bad_env_value_is_refused(monkeypatch):
    monkeypatch.setenv("TTHC_BATCH_ROWS", "many")
    with pytest.raises(Exception, match="batch_rows"):
        get_settings()


def test_toml_file_from_tthc_config(monkeypatch, tmp_path):
    cfg = tmp_path / "conf" / "site.toml"
    cfg.parent.mkdir()
    cfg.write_text(f'warehouse = "{tmp_path / "from_toml"}"\nbatch_rows = 777\nfreshness_lag_days = 9\n'
                   'not_a_setting = "ignored"\n', encoding="utf-8")
    monkeypatch.setenv("TTHC_CONFIG", str(cfg))
    s = get_settings()
    assert s.warehouse == tmp_path / "from_toml"
    assert s.batch_rows == 777
    assert s.freshness_lag_days == 9
    assert not hasattr(s, "not_a_setting")


def test_local_tthc_toml_is_read_when_no_tthc_config(tmp_path):
    (tmp_path / "tthc.toml").write_text("pull_page_size = 42\n", encoding="utf-8")
    assert get_settings().pull_page_size == 42


def test_priority_override_then_env_then_toml(monkeypatch, tmp_path):
    cfg = tmp_path / "site.toml"
    cfg.write_text(f'batch_rows = 10\nfreshness_lag_days = 5\npull_page_size = 11\n'
                   f'warehouse = "{tmp_path / "toml_wh"}"\n', encoding="utf-8")
    monkeypatch.setenv("TTHC_CONFIG", str(cfg))
    monkeypatch.setenv("TTHC_BATCH_ROWS", "20")
    monkeypatch.setenv("TTHC_FRESHNESS_LAG_DAYS", "6")
    monkeypatch.setenv("TTHC_WAREHOUSE", str(tmp_path / "env_wh"))
    s = get_settings(batch_rows=30, warehouse=tmp_path / "cli_wh", inbox=None)
    assert s.batch_rows == 30  # explicit beats env beats TOML
    assert s.warehouse == tmp_path / "cli_wh"
    assert s.freshness_lag_days == 6  # env beats TOML
    assert s.pull_page_size == 11  # TOML beats the default
    assert s.inbox == Path("inbox").absolute()  # an explicit None means "not given": the default stays (absolute)


def test_pseudonym_key_from_env_wins_over_file(monkeypatch, tmp_path):
    keyfile = tmp_path / "k.key"
    keyfile.write_text("from-file\n")
    monkeypatch.setenv("TTHC_PSEUDONYM_KEY", "from-env")
    s = get_settings(pseudonym_key_file=keyfile)
    assert s.pseudonym_key_bytes() == b"from-env"
    assert "from-env" not in repr(s)  # a secret is never printed
    monkeypatch.delenv("TTHC_PSEUDONYM_KEY")
    assert get_settings(pseudonym_key_file=keyfile).pseudonym_key_bytes() == b"from-file"


def test_missing_key_without_create_says_what_to_set(tmp_path):
    s = get_settings(warehouse=tmp_path / "wh")
    with pytest.raises(RuntimeError, match="TTHC_PSEUDONYM_KEY"):
        s.pseudonym_key_bytes()
    assert not (tmp_path / "wh" / "_secrets").exists()


def test_created_key_file_is_owner_only_and_stable(tmp_path):
    s = get_settings(warehouse=tmp_path / "wh")
    k1 = s.pseudonym_key_bytes(create=True)
    path = tmp_path / "wh" / "_secrets" / "pseudonym.key"
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    assert len(k1) >= 32
    assert get_settings(warehouse=tmp_path / "wh").pseudonym_key_bytes(create=True) == k1  # not regenerated
    other = get_settings(warehouse=tmp_path / "wh2").pseudonym_key_bytes(create=True)
    assert other != k1  # a random key per warehouse, not a constant
