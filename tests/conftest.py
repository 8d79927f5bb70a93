from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hark.config import Settings, get_settings
from tests.support.tiny_whisper import build_tiny_whisper


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The shared speech corpus: $HARK_CORPUS_DIR, else ../shared/corpus beside the repo.

    Missing corpus skips the test, unless HARK_REQUIRE_CORPUS=1 (CI), where it fails.
    """
    configured = os.environ.get("HARK_CORPUS_DIR")
    path = Path(configured) if configured else Path(__file__).parents[2] / "shared" / "corpus"
    if not path.is_dir():
        reason = f"speech corpus not found at {path} (set HARK_CORPUS_DIR to its location)"
        if os.environ.get("HARK_REQUIRE_CORPUS") == "1":
            pytest.fail(f"{reason}; HARK_REQUIRE_CORPUS=1 requires it")
        pytest.skip(reason)
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings isolated from the environment, with an empty data and model directory
    and the installed model packages ignored (`auto` means pocketsphinx here; tests of
    the Whisper default say so with `model_packages=True`)."""
    return Settings(_env_file=None, data_dir=tmp_path / "data", asr_processes=2,
                    model_packages=False)


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Whisper model in CTranslate2 format, built offline."""
    return build_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper") / "tiny")


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Point the `hark` command's settings at a fresh data directory."""
    for name in list(os.environ):
        if name.startswith("HARK_") and name != "HARK_CORPUS_DIR":
            monkeypatch.delenv(name)
    data = tmp_path / "hark-data"
    monkeypatch.setenv("HARK_DATA_DIR", str(data))
    monkeypatch.setenv("HARK_ASR_PROCESSES", "2")
    monkeypatch.setenv("HARK_MODEL_PACKAGES", "false")
    get_settings.cache_clear()
    yield data
    get_settings.cache_clear()
