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
    speaker_match_threshold: float = Field(default=0.80, gt=0, le=1)
    database_url: str | None = None
    log_level: str = "INFO"

    @property
    def models_path(self) -> Path:
        return self.model_dir if self.model_dir is not None else self.data_dir / "models"

    @property
    def database(self) -> str:
        """The SQLAlchemy URL: HARK_DATABASE_URL, else a SQLite file in the data directory."""
        return self.database_url or f"sqlite:///{self.data_dir / 'hark.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
