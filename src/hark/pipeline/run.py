"""The pipeline end to end: probe → engine → decode → VAD → recognition → diarization →
speaker identification → transcript.

The CLI, the job workers and the HTTP API all call `transcribe_file`; they differ
only in the hooks they pass to watch progress, receive segments, or cancel, and in
the voice profiles they offer for identification.

A file is decoded to a disk-backed `SampleStore` rather than into memory; every later
stage reads the spans it works on, so memory does not grow with the recording's
length. The store is removed when the run ends, whether it completes, fails or is
canceled.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from hark.config import Settings
from hark.errors import CanceledError
from hark.pipeline.audio import SAMPLE_RATE, decode_to_store, probe
from hark.pipeline.diarization.assign import assign_speakers, speaker_list
from hark.pipeline.diarization.base import Diarization, DiarizationOptions
from hark.pipeline.diarization.identify import VoiceProfile, match_speakers
from hark.pipeline.diarization.select import borrow_diarizer
from hark.pipeline.engines.base import Engine, Recognition
from hark.pipeline.engines.select import borrow_engine, resolve_model
from hark.pipeline.options import TranscribeOptions
from hark.pipeline.phrases import split_segment
from hark.pipeline.samples import SampleSource
from hark.pipeline.transcript import Segment, Speaker, Transcript, join_segments
from hark.pipeline.vad import Chunk, VadOptions, detect_speech, plan_speech

# Overall progress at the start of each stage; recognition runs up to "diarizing"
# (or to the end when there is no diarization).
_STAGE_START = {"loading": 0.0, "decoding": 0.02, "detecting speech": 0.06,
                "transcribing": 0.10, "diarizing": 0.85}
_DIARIZATION_REGION_SECONDS = 15.0


@dataclass
class Hooks:
    """Optional callbacks. `on_progress(stage, fraction)` gets overall progress 0..1."""

    on_progress: Callable[[str, float], None] | None = None
    on_segment: Callable[[Segment], None] | None = None
    is_canceled: Callable[[], bool] | None = None

    def progress(self, stage: str, fraction: float | None = None) -> None:
        if self.is_canceled is not None and self.is_canceled():
            raise CanceledError("transcription canceled")
        if self.on_progress is not None:
            value = _STAGE_START.get(stage, 1.0) if fraction is None else fraction
            self.on_progress(stage, min(1.0, max(0.0, value)))

    def within(self, stage: str, end: str) -> Callable[[float], None]:
        """A callback taking how far `stage` has got (0..1) to overall progress between
        the start of `stage` and the start of `end`; it also checks for a cancel."""
        start, stop = _STAGE_START[stage], _STAGE_START[end]
        return lambda done: self.progress(stage, start + (stop - start) * min(done, 1.0))


def transcribe_file(
    path: str | Path, options: TranscribeOptions, settings: Settings,
    hooks: Hooks | None = None, profiles: Sequence[VoiceProfile] = (),
) -> Transcript:
    hooks = hooks or Hooks()
    info = probe(path, max_seconds=settings.max_audio_seconds)
    model = resolve_model(options.model, settings, options.language)
    hooks.progress("loading")
    with borrow_engine(model, settings) as engine:
        engine.check(options)
        hooks.progress("decoding")
        started = time.perf_counter()
        with decode_to_store(path, info, max_seconds=settings.max_audio_seconds,
                             progress=hooks.within("decoding", "detecting speech")) as audio:
            timings = {"decode": time.perf_counter() - started}
            return _run(engine, audio, options, settings, hooks, timings, profiles)


def transcribe_audio(
    audio: SampleSource, options: TranscribeOptions, settings: Settings,
    hooks: Hooks | None = None, profiles: Sequence[VoiceProfile] = (),
) -> Transcript:
    """The same pipeline on samples already decoded to 16 kHz mono float32 (an array,
    or a `SampleStore`)."""
    with borrow_engine(resolve_model(options.model, settings, options.language),
                       settings) as engine:
        engine.check(options)
        return _run(engine, audio, options, settings, hooks or Hooks(), {}, profiles)


def diarize_file(
    path: str | Path, options: DiarizationOptions, settings: Settings,
    vad: VadOptions | None = None,
) -> Diarization:
    """Who spoke when, without transcribing."""
    info = probe(path, max_seconds=settings.max_audio_seconds)
    with decode_to_store(path, info, max_seconds=settings.max_audio_seconds) as audio:
        regions = detect_speech(audio, vad or VadOptions(), _DIARIZATION_REGION_SECONDS)
        with borrow_diarizer(settings) as diarizer:
            return diarizer.diarize(_as_diarizer_input(audio), regions, options)


def _as_diarizer_input(audio: SampleSource) -> np.ndarray:
    # Diarizers read the recording only by slicing spans, which a SampleStore answers
    # as an array does; their protocol is typed for arrays.
    return cast(np.ndarray, audio)


def _run(
    engine: Engine, audio: SampleSource, options: TranscribeOptions, settings: Settings,
    hooks: Hooks, timings: dict[str, float], profiles: Sequence[VoiceProfile],
) -> Transcript:
    duration = audio.shape[0] / SAMPLE_RATE
    hooks.progress("detecting speech")
    started = time.perf_counter()
    plan = plan_speech(audio, options.vad, engine.chunk_seconds, engine.pack_chunks,
                       need_regions=options.diarize,
                       progress=hooks.within("detecting speech", "transcribing"))
    regions, chunks = plan.regions, plan.chunks
    timings["vad"] = time.perf_counter() - started

    started = time.perf_counter()
    end = _STAGE_START["diarizing"] if options.diarize else 1.0
    segments, recognition = _recognize(engine, audio, chunks, options, hooks, end)
    language = recognition.language
    timings["transcribe"] = time.perf_counter() - started

    speakers: list[Speaker] = []
    if options.diarize:
        hooks.progress("diarizing")
        started = time.perf_counter()
        segments, speakers = _diarize(audio, regions, segments, options, settings, language,
                                      profiles)
        timings["diarize"] = time.perf_counter() - started
    if not options.word_timestamps:
        for segment in segments:  # engines that always time words: drop what was not asked
            segment.words = []
    hooks.progress("done", 1.0)
    return Transcript(
        text=join_segments(segments, language),
        language=language,
        language_probability=recognition.language_probability,
        duration=round(duration, 3),
        model=engine.name,
        segments=segments,
        speakers=speakers,
        timings={k: round(v, 4) for k, v in timings.items()},
        warnings=recognition.warnings,
    )


def _recognize(
    engine: Engine, audio: SampleSource, chunks: list[Chunk], options: TranscribeOptions,
    hooks: Hooks, end: float,
) -> tuple[list[Segment], Recognition]:
    segments: list[Segment] = []
    if not chunks:
        return segments, Recognition(options.language, None, iter(()))
    base = _STAGE_START["transcribing"]
    hooks.progress("transcribing", base)
    duration = audio.shape[0] / SAMPLE_RATE
    recognition = engine.recognize(audio, chunks, options)
    try:
        for decoded in recognition.segments:
            for segment in split_segment(decoded):
                segment.id = len(segments)
                segments.append(segment)
                if hooks.on_segment is not None:
                    hooks.on_segment(segment)
            hooks.progress("transcribing", base + (end - base) * decoded.end / duration)
    finally:
        close = getattr(recognition.segments, "close", None)
        if close is not None:
            close()
    return segments, recognition


def _diarize(
    audio: SampleSource, regions: list[Chunk], segments: list[Segment],
    options: TranscribeOptions, settings: Settings, language: str | None,
    profiles: Sequence[VoiceProfile],
) -> tuple[list[Segment], list[Speaker]]:
    if not regions:
        return segments, []
    with borrow_diarizer(settings) as diarizer:
        diarization = diarizer.diarize(_as_diarizer_input(audio), regions, options.speakers)
    segments = assign_speakers(segments, diarization)
    speakers = speaker_list(diarization)
    if options.identify_speakers and profiles:
        matches = match_speakers(diarization.embeddings, profiles,
                                 settings.speaker_match_threshold)
        for speaker in speakers:
            match = matches.get(speaker.id)
            if match is not None:
                speaker.name = match.name
                speaker.profile_id = match.profile_id
                speaker.similarity = match.similarity
    return segments, speakers
