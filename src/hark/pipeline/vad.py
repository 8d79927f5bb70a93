"""Voice-activity detection: where the speech is, cut into chunks engines can take.

Silero (the ONNX model inside faster-whisper's wheel) finds speech regions, reading
the recording a block at a time (see `hark.pipeline.silero`), so any `SampleSource`
will do: an array or a disk-backed store. Engines
that want long inputs (Whisper's 30 s window) get chunks made of consecutive regions
with the silence between them left out, as faster-whisper does with its own VAD: a
window then holds up to 30 s of speech, recordings with pauses need fewer windows, and
the model never sees long stretches of nothing. `SpeechMap` takes times on a chunk's
speech back to times in the recording.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from hark.pipeline.audio import SAMPLE_RATE
from hark.pipeline.samples import SampleSource
from hark.pipeline.silero import SileroSettings, speech_regions


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
class Region:
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

    @property
    def samples(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Chunk(Region):
    """What an engine decodes in one piece: the speech `parts` between `start` and
    `end`, joined with the silence between them left out. A chunk of one part is
    just that span of the recording."""

    parts: tuple[Region, ...] = ()

    def __post_init__(self) -> None:
        if not self.parts:
            object.__setattr__(self, "parts", (Region(self.start, self.end),))

    @property
    def speech_samples(self) -> int:
        return sum(p.samples for p in self.parts)

    def speech(self, audio: SampleSource) -> np.ndarray:
        """The chunk's samples: its parts, back to back."""
        if len(self.parts) == 1:
            return np.asarray(audio[self.start:self.end], dtype=np.float32)
        return np.concatenate([audio[p.start:p.end] for p in self.parts]).astype(
            np.float32, copy=False)


def detect_speech(
    audio: SampleSource, options: VadOptions, max_region_seconds: float,
    progress: Callable[[float], None] | None = None,
) -> list[Chunk]:
    """Speech regions found by Silero, none longer than `max_region_seconds`; the same
    regions faster-whisper's `get_speech_timestamps` finds. `progress` gets the
    fraction of the recording read so far."""
    silero = SileroSettings(
        threshold=options.threshold,
        min_speech_ms=options.min_speech_ms,
        min_silence_ms=options.min_silence_ms,
        speech_pad_ms=options.speech_pad_ms,
        max_speech_seconds=max_region_seconds,
    )
    return [Chunk(start, end)
            for start, end in speech_regions(audio, silero, progress=progress)]


def pack_regions(regions: Sequence[Region], max_chunk_seconds: float) -> list[Chunk]:
    """Consecutive regions gathered into chunks holding at most `max_chunk_seconds` of
    speech each (the silence between regions does not count: it is left out)."""
    limit = int(max_chunk_seconds * SAMPLE_RATE)
    groups: list[list[Region]] = []
    held = 0
    for region in regions:
        if groups and held + region.samples <= limit:
            groups[-1].append(region)
            held += region.samples
        else:
            groups.append([region])
            held = region.samples
    return [Chunk(g[0].start, g[-1].end, tuple(Region(r.start, r.end) for r in g))
            for g in groups]


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
    audio: SampleSource, options: VadOptions | None, engine_chunk_seconds: float,
    pack: bool = True, need_regions: bool = False,
    progress: Callable[[float], None] | None = None,
) -> SpeechPlan:
    """VAD speech, or the whole audio in windows when `options` is None.

    With `pack`, consecutive regions are gathered into chunks of up to the limit;
    without, each speech region is its own chunk. With VAD off, regions are still
    found when `need_regions` asks for them.
    """
    max_seconds = engine_chunk_seconds
    if options is not None and options.max_chunk_seconds is not None:
        max_seconds = min(options.max_chunk_seconds, engine_chunk_seconds)
    regions: list[Chunk] = []
    if options is not None or need_regions:
        regions = detect_speech(audio, options or VadOptions(), max_seconds, progress)
    if options is None:
        return SpeechPlan(regions, fixed_windows(audio.shape[0], max_seconds))
    return SpeechPlan(regions, pack_regions(regions, max_seconds) if pack else regions)


def speech_chunks(
    audio: SampleSource, options: VadOptions | None, engine_chunk_seconds: float,
    pack: bool = True,
) -> list[Chunk]:
    return plan_speech(audio, options, engine_chunk_seconds, pack).chunks


class SpeechMap:
    """Times on chunks' speech laid end to end, taken back to the recording's times.

    The chunks are laid out in order on a "speech timeline" (each chunk's parts back
    to back); a time on it belongs to the part it falls in and moves by the silence
    left out before that part.
    """

    def __init__(self, chunks: Sequence[Chunk]) -> None:
        self._part_ends: list[int] = []  # where each part ends on the speech timeline
        self._shift: list[int] = []  # recording sample minus speech-timeline sample
        position = 0
        for chunk in chunks:
            for part in chunk.parts:
                self._shift.append(part.start - position)
                position += part.samples
                self._part_ends.append(position)
        self.samples = position

    def read(self, audio: SampleSource, start: int, end: int) -> np.ndarray:
        """Samples [start, end) of the speech timeline, read part by part from `audio`."""
        pieces: list[np.ndarray] = []
        index = bisect.bisect_right(self._part_ends, start)
        while index < len(self._part_ends) and start < end:
            stop = min(end, self._part_ends[index])
            shift = self._shift[index]
            pieces.append(np.asarray(audio[start + shift:stop + shift], dtype=np.float32))
            start = stop
            index += 1
        if len(pieces) == 1:
            return pieces[0]
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)

    def part_of(self, seconds: float) -> int:
        sample = int(seconds * SAMPLE_RATE)
        return min(bisect.bisect(self._part_ends, sample), len(self._part_ends) - 1)

    def to_recording(self, seconds: float, part: int | None = None) -> float:
        """The recording time of a speech-timeline time (in the given part, if named)."""
        index = self.part_of(seconds) if part is None else part
        return round(seconds + self._shift[index] / SAMPLE_RATE, 3)
