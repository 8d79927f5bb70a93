"""The pipeline end to end: probe → engine → decode → VAD → recognition → transcript.

The CLI, the job workers and the HTTP API all call `transcribe_file`; they differ
only in the hooks they pass to watch progress, receive segments, or cancel.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hark.config import Settings
from hark.errors import CanceledError
from hark.pipeline.audio import SAMPLE_RATE, decode, probe
from hark.pipeline.engines.base import Engine
from hark.pipeline.engines.select import borrow_engine, resolve_model
from hark.pipeline.options import TranscribeOptions
from hark.pipeline.transcript import Segment, Transcript
from hark.pipeline.vad import speech_chunks

# Share of overall progress at the end of each stage; recognition takes the rest.
_STAGE_END = {"loading": 0.02, "decoding": 0.06, "detecting speech": 0.10}


@dataclass
class Hooks:
    """Optional callbacks. `on_progress(stage, fraction)` gets overall progress 0..1."""

    on_progress: Callable[[str, float], None] | None = None
    on_segment: Callable[[Segment], None] | None = None
    is_canceled: Callable[[], bool] | None = None

    def progress(self, stage: str, fraction: float) -> None:
        if self.is_canceled is not None and self.is_canceled():
            raise CanceledError("transcription canceled")
        if self.on_progress is not None:
            self.on_progress(stage, min(1.0, max(0.0, fraction)))


def transcribe_file(
    path: str | Path, options: TranscribeOptions, settings: Settings, hooks: Hooks | None = None
) -> Transcript:
    hooks = hooks or Hooks()
    timings: dict[str, float] = {}
    info = probe(path, max_seconds=settings.max_audio_seconds)
    model = resolve_model(options.model, settings)
    hooks.progress("loading", 0.0)
    with borrow_engine(model, settings) as engine:
        engine.check(options)
        hooks.progress("decoding", _STAGE_END["loading"])
        started = time.perf_counter()
        audio = decode(path, info=info, max_seconds=settings.max_audio_seconds)
        timings["decode"] = time.perf_counter() - started
        return _recognize(engine, audio, options, hooks, timings)


def transcribe_audio(
    audio: np.ndarray, options: TranscribeOptions, settings: Settings, hooks: Hooks | None = None
) -> Transcript:
    """The same pipeline on samples already decoded to 16 kHz mono float32."""
    with borrow_engine(resolve_model(options.model, settings), settings) as engine:
        engine.check(options)
        return _recognize(engine, audio, options, hooks or Hooks(), {})


def _recognize(
    engine: Engine, audio: np.ndarray, options: TranscribeOptions, hooks: Hooks,
    timings: dict[str, float],
) -> Transcript:
    duration = audio.shape[0] / SAMPLE_RATE
    hooks.progress("detecting speech", _STAGE_END["decoding"])
    started = time.perf_counter()
    chunks = speech_chunks(audio, options.vad, engine.chunk_seconds, engine.pack_chunks)
    timings["vad"] = time.perf_counter() - started

    segments: list[Segment] = []
    language = options.language
    language_probability: float | None = None
    started = time.perf_counter()
    if chunks:
        base = _STAGE_END["detecting speech"]
        hooks.progress("transcribing", base)
        recognition = engine.recognize(audio, chunks, options)
        language = recognition.language
        language_probability = recognition.language_probability
        try:
            for segment in recognition.segments:
                segment.id = len(segments)
                segments.append(segment)
                if hooks.on_segment is not None:
                    hooks.on_segment(segment)
                done = segment.end / duration if duration else 1.0
                hooks.progress("transcribing", base + (1.0 - base) * done)
        finally:
            close = getattr(recognition.segments, "close", None)
            if close is not None:
                close()
    timings["transcribe"] = time.perf_counter() - started
    hooks.progress("done", 1.0)
    return Transcript(
        text=" ".join(s.text for s in segments if s.text),
        language=language,
        language_probability=language_probability,
        duration=round(duration, 3),
        model=engine.name,
        segments=segments,
        timings={k: round(v, 4) for k, v in timings.items()},
    )
