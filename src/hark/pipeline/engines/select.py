"""From a model name to a loaded engine, shared through the process-wide cache.

Names: `auto` (the configured default), `pocketsphinx`, a Whisper size such as
`small` or `large-v3` (optionally written `faster-whisper/small`), or the path of a
local CTranslate2 Whisper directory.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hark.config import Settings
from hark.errors import UnknownModelError
from hark.pipeline import model_store
from hark.pipeline.engines.base import Engine
from hark.pipeline.engines.cache import ModelCache
from hark.pipeline.engines.sizes import LARGE, size_class

POCKETSPHINX = "pocketsphinx"
_WHISPER_PREFIX = "faster-whisper/"

_cache: ModelCache[Engine] | None = None
_cache_lock = threading.Lock()


def engine_cache(settings: Settings) -> ModelCache[Engine]:
    global _cache
    with _cache_lock:
        if _cache is None:
            _cache = ModelCache(settings.model_cache_size, settings.model_idle_seconds,
                                exclusive=lambda key: size_class(key) == LARGE)
        return _cache


def resolve_model(requested: str | None, settings: Settings,
                  language: str | None = None) -> str:
    """The concrete model a request runs on; `auto` picks the best installed Whisper
    model for the language (see `model_store.best_installed`), else pocketsphinx."""
    name = (requested or settings.default_model).strip()
    if name != "auto":
        return name
    best = model_store.best_installed(settings.models_path, packages=settings.model_packages,
                                      language=language)
    return best.name if best is not None else POCKETSPHINX


def model_key(name: str) -> str:
    if name.startswith(_WHISPER_PREFIX):
        name = name[len(_WHISPER_PREFIX):]
    if name in (POCKETSPHINX, f"{POCKETSPHINX}/en-us"):
        return POCKETSPHINX
    return name


def load_engine(name: str, settings: Settings) -> Engine:
    key = model_key(name)
    if key == POCKETSPHINX:
        from hark.pipeline.engines.pocketsphinx import PocketsphinxEngine

        return PocketsphinxEngine(processes=settings.asr_processes)
    from hark.pipeline.engines.whisper import WhisperConfig, WhisperEngine

    path = model_store.resolve_whisper_model(
        key, settings.models_path, allow_downloads=settings.allow_downloads,
        endpoint=settings.hf_endpoint, packages=settings.model_packages,
    )
    label = key if key in model_store.WHISPER_REPOS else Path(key).name
    return WhisperEngine(WhisperConfig(
        path=path, label=label, device=settings.device, compute_type=settings.compute_type,
        cpu_threads=settings.cpu_threads, default_batch_size=settings.batch_size,
    ))


def check_model_name(name: str, settings: Settings) -> None:
    """Fail fast on a name no engine knows, without loading anything."""
    key = model_key(name)
    if key == POCKETSPHINX or key in model_store.WHISPER_REPOS or Path(key).is_dir():
        return
    if any(m.name == key for m in model_store.installed_models(
            settings.models_path, packages=settings.model_packages)):
        return
    known = ", ".join([POCKETSPHINX, *model_store.WHISPER_REPOS])
    raise UnknownModelError(f"Unknown model {name!r}; known models: {known}", field="model")


def model_available(name: str, settings: Settings) -> bool:
    """Whether `name` (already checked) can be loaded without downloading anything."""
    key = model_key(name)
    if key == POCKETSPHINX:
        return True
    return model_store.loads_offline(key, settings.models_path,
                                     packages=settings.model_packages)


@contextmanager
def borrow_engine(name: str, settings: Settings) -> Iterator[Engine]:
    check_model_name(name, settings)
    key = model_key(name)
    if Path(key).is_dir():
        key = str(Path(key).resolve())
    with engine_cache(settings).use(key, lambda: load_engine(key, settings)) as engine:
        yield engine
