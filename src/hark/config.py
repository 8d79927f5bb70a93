"""Settings from `HARK_*` environment variables and `.env`.

Every field here is listed, with its default, in the README's configuration table.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "hark"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HARK_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    model_dir: Path | None = None
    default_model: str = "auto"
    # Whisper models installed as Python packages (hark[whisper-base], ...) count as
    # installed; off, only HARK_MODEL_DIR and downloads do.
    model_packages: bool = True
    allow_downloads: bool = False
    hf_endpoint: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compute_type: str = "auto"
    cpu_threads: int = 0
    batch_size: int = Field(default=8, ge=0)
    asr_processes: int = Field(default=0, ge=0)
    model_cache_size: int = Field(default=2, ge=1)
    model_idle_seconds: float = Field(default=900.0, gt=0)
    max_audio_seconds: float = Field(default=4 * 3600.0, gt=0)
    diarizer: Literal["resemblyzer", "pyannote"] = "resemblyzer"
    pyannote_model: Path | None = None
    # The lowest cosine with no false name on the development set's tune half; on the
    # held half it names no one falsely (python -m benchmarks.identification).
    speaker_match_threshold: float = Field(default=0.835, gt=0, le=1)
    database_url: str | None = None
    log_level: str = "INFO"
    # auto: human-readable lines on a terminal, JSON lines otherwise.
    log_format: Literal["auto", "json", "console"] = "auto"
    # The service (`hark serve`).
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=0, ge=0)
    storage_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    broker_url: str | None = None
    broker_visibility_seconds: float = Field(default=3600.0, gt=0)
    worker_metrics_port: int = Field(default=9100, ge=0, le=65535)
    reconcile_seconds: float = Field(default=15.0, gt=0)
    resend_after_seconds: float = Field(default=60.0, gt=0)
    events_url: str | None = None
    max_upload_bytes: int = Field(default=2 * 1024**3, gt=0)
    max_queued_jobs: int = Field(default=10_000, gt=0)
    allow_anonymous: bool = False
    allowed_origins: list[str] = Field(default_factory=list)
    # Host names the server answers to besides loopback names, its bind address and
    # HARK_PUBLIC_URL's host: "name", "*.example.com" (subdomains), or "*" (any).
    allowed_hosts: list[str] = Field(default_factory=list)
    # Tenants whose keys may read operations detail (/health/detailed, /api/v1/metrics).
    operator_tenants: list[str] = Field(default_factory=lambda: ["local"])
    # Signs the player's media links; unset: generated once into the data directory.
    media_secret: str | None = None
    media_url_seconds: int = Field(default=3600, gt=0)
    public_url: str | None = None
    job_max_attempts: int = Field(default=3, ge=1)
    job_lease_seconds: float = Field(default=30.0, gt=0)
    upload_url_seconds: int = Field(default=3600, gt=0)
    fetch_timeout_seconds: float = Field(default=300.0, gt=0)
    fetch_allowed_networks: list[str] = Field(default_factory=list)
    webhook_secret: str | None = None
    webhook_max_attempts: int = Field(default=6, ge=1)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    # Sign-in: the secret that signs access tokens (unset: made once in the data
    # directory; API replicas that do not share one need the setting), their life, the
    # life of a refresh token, and attempts allowed per account and per address.
    auth_secret: str | None = None
    access_token_seconds: int = Field(default=900, gt=0)
    refresh_token_days: float = Field(default=14.0, gt=0)
    login_rate_limit: str = "5/minute;30/hour"
    login_address_rate_limit: str = "30/minute"
    # Single sign-on (OpenID Connect): the provider, this server's client there, and
    # where people who sign in the first time land, with which role.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    oidc_scopes: str = "openid email profile"
    oidc_organisation: str = "local"
    oidc_default_role: str = "member"
    # Requests one API key may make, in `limits`' notation ("600/minute",
    # "10/second;1000/hour"); "" turns limiting off. A key's own rate overrides it.
    rate_limit: str = "600/minute"
    # Where request counts live: memory:// (this process) or a Redis URL shared by
    # every API replica; unset: the events' Redis (scaled mode), else memory.
    rate_limit_storage_url: str | None = None
    # How often each API process applies the organisations' retention policies.
    retention_sweep_seconds: float = Field(default=3600.0, gt=0)
    # Live transcription (WS /api/v1/live): streams at once in this process and per
    # tenant, silence from the client that ends a stream, and the longest stream.
    live_max_streams: int = Field(default=4, ge=0)
    live_max_streams_per_tenant: int = Field(default=2, ge=0)
    live_idle_seconds: float = Field(default=30.0, gt=0)
    live_max_seconds: float = Field(default=4 * 3600.0, gt=0)
    live_max_frame_bytes: int = Field(default=1 << 20, gt=0)

    @property
    def models_path(self) -> Path:
        return self.model_dir if self.model_dir is not None else self.data_dir / "models"

    @property
    def storage_path(self) -> Path:
        """The local folder that holds uploads and results in embedded mode."""
        url = self.storage_url
        if url and url.startswith("file://"):
            return Path(url.removeprefix("file://"))
        if url and "://" not in url:
            return Path(url)
        return self.data_dir / "storage"

    @property
    def events_redis_url(self) -> str | None:
        """Where live events travel between processes: HARK_EVENTS_URL, else a Redis
        broker's URL; None keeps them in-process (embedded mode)."""
        if self.events_url:
            return self.events_url
        if self.broker_url and self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        return None

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1

    @property
    def database(self) -> str:
        """The SQLAlchemy URL: HARK_DATABASE_URL, else a SQLite file in the data directory."""
        return self.database_url or f"sqlite:///{self.data_dir / 'hark.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
