"""The configured diarizer, loaded once per process and shared through a cache."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from hark.config import Settings
from hark.pipeline.diarization.base import Diarizer
from hark.pipeline.engines.cache import ModelCache

_cache: ModelCache[Diarizer] | None = None
_lock = threading.Lock()


def diarizer_cache(settings: Settings) -> ModelCache[Diarizer]:
    global _cache
    with _lock:
        if _cache is None:
            _cache = ModelCache(max_entries=1, idle_seconds=settings.model_idle_seconds)
        return _cache


def load_diarizer(settings: Settings) -> Diarizer:
    if settings.diarizer == "pyannote":
        from hark.pipeline.diarization.pyannote import PyannoteDiarizer

        return PyannoteDiarizer(settings.pyannote_model)
    from hark.pipeline.diarization.resemblyzer import ResemblyzerDiarizer

    return ResemblyzerDiarizer()


@contextmanager
def borrow_diarizer(settings: Settings) -> Iterator[Diarizer]:
    with diarizer_cache(settings).use(settings.diarizer, lambda: load_diarizer(settings)) as d:
        yield d
