"""One typed settings object for the whole project.

Values come, highest priority first, from: explicit keyword arguments (the CLI passes its options this way),
``TTHC_*`` environment variables, a TOML config file (``TTHC_CONFIG`` or ``./tthc.toml``), then the defaults
below, which are the embedded local set-up: folders on disk, a SQLite ledger, DuckDB; no server needed.
Secrets (tokens, the pseudonym key) come only from the environment, a key file outside git, or Prefect Secret
blocks; never from the TOML file in the repository.
"""

from __future__ import annotations

import os
import re
import secrets
import tomllib
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


def _config_file() -> Path | None:
    explicit = os.environ.get("TTHC_CONFIG")
    if explicit:
        return Path(explicit)
    local = Path("tthc.toml")
    return local if local.exists() else None


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the optional TOML config file: top-level keys are the setting names without the prefix."""

    def get_field_value(self, field, field_name):  # pragma: no cover - unused, __call__ does the work
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = _config_file()
        if path is None:
            return {}
        with path.open("rb") as fh:
            data = tomllib.load(fh)
        return {k: v for k, v in data.items() if k in self.settings_cls.model_fields}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TTHC_", extra="ignore")

    # where things are
    inbox: Path = Path("inbox")
    warehouse: Path = Path("warehouse_data")
    ledger_url: str | None = None  # default: sqlite file inside the warehouse
    agencies_path: Path | None = None  # default: <inbox>/agencies.csv
    targets_path: Path | None = None  # default: the shipped config/targets.csv
    extra_days_off_path: Path | None = None  # default: the shipped config/extra_days_off.csv (empty)

    # personal data: HMAC-SHA256 key for pseudonyms (hex or text); or a key file (created by the demo)
    pseudonym_key: SecretStr | None = None
    pseudonym_key_file: Path | None = None  # default: <warehouse>/_secrets/pseudonym.key (owner-only)

    # the run
    as_of: date | None = None  # default: yesterday (Asia/Ho_Chi_Minh)
    batch_rows: int = 500_000  # rows per streamed chunk while staging

    # quality gate and alerts
    alert_urls: str = ""  # apprise URLs, comma-separated
    freshness_lag_days: int = 3
    report_url_base: str | None = None  # where _reports/ is served, for links in alerts
    # the period reports each night (latest closed month and quarter) and the alerts made from the marts
    kpi_reports: bool = True  # TTHC_KPI_REPORTS=false: no KPI reports at night (tthc report still makes them)
    report_pdf: bool = True  # with each KPI report its PDF (headless Chromium, where installed)
    kpi_alerts: str = ""  # apprise URLs told once when a KPI misses its target in a newly closed period
    due_alerts: str = ""  # apprise URLs for the due lists: CODE=URL sends that agency its list; a bare URL gets all
    due_days: int = 5  # working days ahead a due list looks
    portal_scores_path: Path | None = None  # the portal's 766 export: reconciled in every KPI report
    dq_gx_sample_rows: int = 5_000  # rows of a batch the GX checkpoint sees (exact counts come from DuckDB)
    dq_memory_limit: str = "1GB"
    volume_history_batches: int = 30  # trailing batches a volume baseline is taken from
    volume_min_history: int = 3
    volume_min_expected_rows: int = 10
    volume_low_factor: float = 0.2  # warn below 0.2x or above 5x the agency's usual rows a day
    volume_high_factor: float = 5.0
    null_jump: float = 0.30  # warn when a column's share of empty values rises by 30 points

    # pulls
    dvc_portal_url: str | None = None
    dvc_portal_token: SecretStr | None = None
    one_stop_url: str | None = None
    one_stop_token: SecretStr | None = None
    one_stop_db_url: str | None = None
    one_stop_db_table: str | None = None  # default: the reference schema's HoSos (transforms/mappings/onestop_sql.yaml)
    one_stop_db_schema: str | None = None
    one_stop_db_columns: dict[str, str] = {}  # canonical -> column, e.g. {"updated_at": "LastModified"} (JSON in env)
    one_stop_db_chunk_rows: int = 5000
    pull_overlap_minutes: int = 60
    pull_page_size: int = 500

    @field_validator("warehouse", "inbox", mode="after")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser().absolute()  # reports and Data Docs need absolute paths; cwd may change

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return (init_settings, env_settings, _TomlSource(settings_cls), file_secret_settings)

    # derived values -------------------------------------------------------------------------------------
    @property
    def resolved_ledger_url(self) -> str:
        if self.ledger_url:
            return self.ledger_url
        return f"sqlite:///{(self.warehouse / '_ledger.sqlite').resolve()}"

    @property
    def resolved_agencies_path(self) -> Path:
        return self.agencies_path or (self.inbox / "agencies.csv")

    @property
    def resolved_targets_path(self) -> Path:
        return self.targets_path or (PROJECT_CONFIG / "targets.csv")

    @property
    def resolved_extra_days_off_path(self) -> Path:
        return self.extra_days_off_path or (PROJECT_CONFIG / "extra_days_off.csv")

    @property
    def alert_url_list(self) -> list[str]:
        return _url_list(self.alert_urls)

    @property
    def kpi_alert_url_list(self) -> list[str]:
        return _url_list(self.kpi_alerts)

    @property
    def due_alert_routes(self) -> dict[str | None, list[str]]:
        """``TTHC_DUE_ALERTS`` as agency code -> URLs; the key None holds the URLs that receive every agency's
        list. ``H31.27190=mailto://...`` routes one agency; a plain ``json://...`` receives all."""
        routes: dict[str | None, list[str]] = {}
        for u in _url_list(self.due_alerts):
            m = _ROUTED.match(u)
            code, url = (m.group(1), m.group(2)) if m else (None, u)
            routes.setdefault(code, []).append(url)
        return routes

    def pseudonym_key_bytes(self, create: bool = False) -> bytes:
        """The HMAC key. With ``create``, a missing key file is generated (owner-only) for local demos."""
        if self.pseudonym_key is not None:
            return self.pseudonym_key.get_secret_value().encode("utf-8")
        path = self.pseudonym_key_file or (self.warehouse / "_secrets" / "pseudonym.key")
        if path.exists():
            return path.read_text().strip().encode("utf-8")
        if not create:
            raise RuntimeError(
                f"No pseudonym key: set TTHC_PSEUDONYM_KEY or TTHC_PSEUDONYM_KEY_FILE (looked for {path})."
            )
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        return path.read_text().strip().encode("utf-8")


PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROJECT_CONFIG = Path(__file__).resolve().parent / "config"


def get_settings(**overrides: Any) -> Settings:
    clean = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**clean)


def quiet_analytics() -> None:
    """Prefect must not phone home (no network here, and a province's data stays put). GX's switch is set where GX is
    imported (transforms/quality/gx_runner.py), so it holds whoever runs the gate."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_UI_ENABLED", "false")


_ROUTED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)=([A-Za-z][A-Za-z0-9+.-]*://.*)$")


def _url_list(value: str) -> list[str]:
    return [u.strip() for u in value.split(",") if u.strip()]
