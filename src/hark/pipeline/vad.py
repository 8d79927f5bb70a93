"""Voice-activity detection: where the speech is, cut into chunks engines can take.

Silero (the ONNX model inside faster-whisper's wheel) finds speech regions; regions
are then packed into chunks no longer than an engine wants. A chunk spans from the
start of its first region to the end of its last, so times inside a chunk are the
recording's times shifted by the chunk start, and no timestamp remapping is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hark.pipeline.audio import SAMPLE_RATE


@dataclass(frozen=True)
class VadOptions:
    """Silero parameters plus the longest chunk handed to an engine.

    `max_chunk_seconds=None` means "the engine's preferred length".
    """

    threshold: float = 0.5
    min_silence_ms: int = 500
    speech_pad_ms: int = 200
    min_speech_ms: int = 0
    max_chunk_seconds: float | None = None


@dataclass(frozen=True)
class Chunk:
    """A span of the recording, in samples at 16 kHz."""

    start: int
    end: int

    @property
    def start_s(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def end_s(self) -> float:
        return self.end / SAMPLE_RATE

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE


def detect_speech(audio: np.ndarray, options: VadOptions, max_region_seconds: float) -> list[Chunk]:
    """Speech regions found by Silero, none longer than `max_region_seconds`."""
    from faster_whisper.vad import VadOptions as SileroOptions
    from faster_whisper.vad import get_speech_timestamps

    if audio.size == 0:
        return []
    silero = SileroOptions(
        threshold=options.threshold,
        min_speech_duration_ms=options.min_speech_ms,
        min_silence_duration_ms=options.min_silence_ms,
        speech_pad_ms=options.speech_pad_ms,
        max_speech_duration_s=max_region_seconds,
    )
    regions = get_speech_timestamps(audio, silero, sampling_rate=SAMPLE_RATE)
    return [Chunk(int(r["start"]), int(r["end"])) for r in regions]


def pack_regions(regions: list[Chunk], max_chunk_seconds: float) -> list[Chunk]:
    """Merge neighbouring regions while the merged span stays within the limit."""
    limit = int(max_chunk_seconds * SAMPLE_RATE)
    packed: list[Chunk] = []
    for region in regions:
        if packed and region.end - packed[-1].start <= limit:
            packed[-1] = Chunk(packed[-1].start, region.end)
        else:
            packed.append(region)
    return packed


def fixed_windows(num_samples: int, window_seconds: float) -> list[Chunk]:
    """Back-to-back windows over the whole recording, for when VAD is off."""
    step = int(window_seconds * SAMPLE_RATE)
    return [Chunk(s, min(s + step, num_samples)) for s in range(0, num_samples, step)]


@dataclass(frozen=True)
class SpeechPlan:
    """Speech regions (for diarization) and the chunks an engine transcribes."""

    regions: list[Chunk]
    chunks: list[Chunk]


def plan_speech(
    audio: np.ndarray, options: VadOptions | None, engine_chunk_seconds: float,
    pack: bool = True, need_regions: bool = False,
) -> SpeechPlan:
    """VAD speech, or the whole audio in windows when `options` is None.

    With `pack`, neighbouring regions are merged (silence between them included) into
    chunks of up to the limit; without, each speech region is its own chunk. With VAD
    off, regions are still found when `need_regions` asks for them.
    """
    max_seconds = engine_chunk_seconds
    if options is not None and options.max_chunk_seconds is not None:
        max_seconds = min(options.max_chunk_seconds, engine_chunk_seconds)
    regions: list[Chunk] = []
    if options is not None or need_regions:
        regions = detect_speech(audio, options or VadOptions(), max_seconds)
    if options is None:
        return SpeechPlan(regions, fixed_windows(audio.shape[0], max_seconds))
    return SpeechPlan(regions, pack_regions(regions, max_seconds) if pack else regions)


def speech_chunks(
    audio: np.ndarray, options: VadOptions | None, engine_chunk_seconds: float,
    pack: bool = True,
) -> list[Chunk]:
    return plan_speech(audio, options, engine_chunk_seconds, pack).chunks
