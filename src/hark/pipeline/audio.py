"""Decode any file FFmpeg can read into 16 kHz mono float32 samples.

`decode_to_store` writes the first audio track to a `SampleStore` on disk, which
is read back a span at a time, so memory does not grow with the recording's
length; the pipeline uses it. `decode` turns the track into one array, for short
recordings (voice samples, tests). `load_audio` probes (see `hark.pipeline.media`,
whose `probe`, `MediaInfo`, `StreamInfo` and `DurationSource` are re-exported here)
and then decodes into an array.

Every failure is a `MediaError` subclass with a stable code:

    missing path, directory, not a media file      UnsupportedMediaError
    audio codec this FFmpeg build cannot decode    UnsupportedMediaError
    media without an audio track (video, image)    NoAudioStreamError
    0-byte file, audio track with no samples       EmptyMediaError
    truncated file, undecodable data               CorruptMediaError
    longer than max_seconds                        AudioTooLongError
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import av
import numpy as np
from av.audio.fifo import AudioFifo
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.audio.stream import AudioStream
from av.container import InputContainer

from hark.errors import AudioTooLongError, CorruptMediaError, EmptyMediaError
from hark.pipeline.media import (
    DurationSource,
    MediaInfo,
    StreamInfo,
    _audio_stream,
    _check_limit_option,
    _probe_container,
    _raise_if_too_long,
    probe,
)
from hark.pipeline.media_files import ffmpeg_reason, open_container, truncation_tolerance
from hark.pipeline.samples import PCM16_SCALE, Samples, SampleStore

__all__ = [
    "SAMPLE_RATE",
    "DurationSource",
    "MediaInfo",
    "StreamInfo",
    "decode",
    "decode_to_store",
    "load_audio",
    "probe",
]

SAMPLE_RATE = 16000

# Encoders pad the last frame (AAC in MP4 rounds up to 1024 samples and the
# demuxer does not cut it back); surplus up to this much beyond a declared
# length is padding, anything more means the header is wrong and is kept.
_MAX_TAIL_PADDING_SECONDS = 0.25

# A few damaged packets in a long recording are skipped, as players do; more
# than this share means the file is broken.
_MAX_BAD_PACKETS = 3
_MAX_BAD_PACKET_FRACTION = 0.01

# The output array is preallocated from the probed duration. Untouched pages
# cost no memory, but a wildly wrong header must not make the first
# allocation fail, so the initial size is capped and the array grows instead.
_MAX_INITIAL_SECONDS = 3 * 3600

# Input is gathered into pieces of about a second before resampling, but never more
# values (samples times channels) than this, whatever rate a header claims.
_MAX_RESAMPLE_VALUES = 1 << 20

# Progress is reported this many times over a decode.
_PROGRESS_STEPS = 20

_PCM16_MAX = np.float32(PCM16_SCALE)

DecodeProgress = Callable[[float], None]
"""Called with the fraction of the probed length decoded so far (it may pass 1.0)."""


def decode(
    path: str | Path,
    *,
    info: MediaInfo | None = None,
    max_seconds: float | None = None,
) -> Samples:
    """Decode the first audio track to 16 kHz mono float32 in [-1.0, 1.0].

    `info` skips probing when the caller already has it. `max_seconds` is also
    enforced while decoding, in case the probed duration was an underestimate.
    """
    _check_limit_option(max_seconds)
    media_path = Path(path)
    if info is None:
        return _load(media_path, max_seconds)[1]
    if max_seconds is not None and info.duration_source != "estimated":
        _raise_if_too_long(info, max_seconds)
    with open_container(media_path) as container:
        sink = _ArraySink(_initial_capacity(info, max_seconds))
        _decode_stream(container, _audio_stream(container, info), info, max_seconds, sink)
        return sink.data


def decode_to_store(
    path: str | Path,
    info: MediaInfo,
    *,
    max_seconds: float | None = None,
    directory: str | Path | None = None,
    progress: DecodeProgress | None = None,
) -> SampleStore:
    """Decode the first audio track (as `decode` does) into a new `SampleStore`.

    The caller closes the store; if decoding fails or `progress` raises (a cancel),
    the store is closed before the error propagates.
    """
    _check_limit_option(max_seconds)
    if max_seconds is not None and info.duration_source != "estimated":
        _raise_if_too_long(info, max_seconds)
    store = SampleStore(directory)
    try:
        with open_container(Path(path)) as container:
            _decode_stream(container, _audio_stream(container, info), info, max_seconds,
                           store, progress)
    except BaseException:
        store.close()
        raise
    return store


def load_audio(path: str | Path, *, max_seconds: float | None = None) -> tuple[MediaInfo, Samples]:
    """Probe, enforce the limit, then decode; `duration` in the result is the decoded length."""
    _check_limit_option(max_seconds)
    info, samples = _load(Path(path), max_seconds)
    return replace(info, duration=samples.size / SAMPLE_RATE), samples


def _load(path: Path, max_seconds: float | None) -> tuple[MediaInfo, Samples]:
    # One open serves both steps: stream analysis on open can take a
    # noticeable fraction of a second for multichannel PCM.
    with open_container(path) as container:
        info, consumed = _probe_container(container, path, max_seconds)
        sink = _ArraySink(_initial_capacity(info, max_seconds))
        if not consumed:
            _decode_stream(container, _audio_stream(container, info), info, max_seconds, sink)
            return info, sink.data
    with open_container(path) as container:
        _decode_stream(container, _audio_stream(container, info), info, max_seconds, sink)
        return info, sink.data


def _initial_capacity(info: MediaInfo, max_seconds: float | None) -> int:
    expected = math.ceil(info.duration * SAMPLE_RATE)
    initial = min(expected + SAMPLE_RATE // 10, _MAX_INITIAL_SECONDS * SAMPLE_RATE)
    if max_seconds is not None:
        initial = min(initial, math.ceil(max_seconds * SAMPLE_RATE) + 1)
    return initial


# Decoding


class _Sink(Protocol):
    """Where decoded samples go: they arrive as integers of the 16-bit grid."""

    @property
    def size(self) -> int: ...

    def append(self, grid: Samples) -> None: ...

    def truncate(self, length: int) -> None: ...


class _ArraySink:
    """Growable float32 array, filled in place, so peak memory is the result itself
    rather than a list of frames plus their concatenation."""

    def __init__(self, capacity: int) -> None:
        self.data: Samples = np.empty(max(capacity, SAMPLE_RATE), dtype=np.float32)
        self.size = 0

    def append(self, grid: Samples) -> None:
        end = self.size + grid.shape[0]
        if end > self.data.size:
            # In-place realloc; nothing else references the array here.
            self.data.resize(max(end, self.data.size + self.data.size // 2), refcheck=False)
        np.divide(grid, _PCM16_MAX, out=self.data[self.size:end])
        self.size = end

    def truncate(self, length: int) -> None:
        self.data.resize(length, refcheck=False)
        self.size = length


def _mono_grid(frame: AudioFrame) -> Samples | None:
    """A packed float frame downmixed and put on the 16-bit grid, unscaled."""
    channels = frame.layout.nb_channels
    # Packed float has a single plane: (1, samples * channels), interleaved.
    interleaved = frame.to_ndarray().reshape(-1, channels)
    if interleaved.shape[0] == 0:
        return None
    if channels == 1:
        grid = np.array(interleaved[:, 0], dtype=np.float32)
    else:
        # An average, unlike FFmpeg's float rematrix, cannot leave [-1, 1]
        # for a source inside it: identical full-scale channels stay at 1.0.
        grid = np.mean(interleaved, axis=1, dtype=np.float32)
    # On the 16-bit grid, as FFmpeg's s16 output gives it: Whisper was trained on
    # such audio, and Hark's samples are then bit-identical to faster-whisper's own
    # decoding of the same file. Clipping also stops resampling filters' ringing
    # past full scale; models expect [-1, 1].
    np.multiply(grid, _PCM16_MAX, out=grid)
    np.rint(grid, out=grid)
    np.clip(grid, -_PCM16_MAX, _PCM16_MAX - 1, out=grid)
    return grid


class _Resampler:
    """AudioResampler to 16 kHz packed float that keeps the channel layout.

    Decoded frames are small (1152 samples for MP3) and each pass through
    PyAV costs far more than the arithmetic, so they are gathered into chunks
    of about a second first; that makes decoding several times faster.

    Packed rather than planar output: PyAV locates planes by scanning for a
    null pointer, which runs off the end of a frame with eight planes and
    crashes the process. Decoders may change format or layout mid-stream; the
    underlying filter graph cannot, so it is drained and rebuilt on change.
    """

    def __init__(self, sink: _Sink) -> None:
        self._sink = sink
        self._resampler: AudioResampler | None = None
        self._fifo: AudioFifo | None = None
        self._chunk = 0
        self._key: tuple[str, str, int] | None = None

    def push(self, frame: AudioFrame) -> None:
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key != self._key:
            self.flush()
            self._resampler = AudioResampler(format="flt", layout=frame.layout, rate=SAMPLE_RATE)
            self._fifo = AudioFifo()
            channels = max(frame.layout.nb_channels, 1)
            self._chunk = max(1, min(frame.sample_rate, _MAX_RESAMPLE_VALUES // channels))
            self._key = key
        assert self._resampler is not None and self._fifo is not None
        # The FIFO rejects timestamp gaps; the output is one contiguous signal
        # either way, so timestamps are dropped rather than checked.
        frame.pts = None
        self._fifo.write(frame)
        while self._fifo.samples >= self._chunk:
            self._emit(self._resampler.resample(self._fifo.read(self._chunk)))

    def flush(self) -> None:
        if self._resampler is not None and self._fifo is not None:
            rest = self._fifo.read()
            if rest is not None:
                self._emit(self._resampler.resample(rest))
            self._emit(self._resampler.resample(None))
        self._resampler = None
        self._fifo = None
        self._key = None

    def _emit(self, frames: list[AudioFrame]) -> None:
        for out in frames:
            # A pass-through resampler answers a flush with [None].
            grid = _mono_grid(out) if out is not None else None
            if grid is not None:
                self._sink.append(grid)


def _decode_stream(
    container: InputContainer,
    stream: AudioStream,
    info: MediaInfo,
    max_seconds: float | None,
    buffer: _Sink,
    progress: DecodeProgress | None = None,
) -> None:
    """Decode into `buffer`, then check that what decoded is complete and cut it to length."""
    name = info.path.name
    limit = math.ceil(max_seconds * SAMPLE_RATE) if max_seconds is not None else None
    expected = math.ceil(info.duration * SAMPLE_RATE)
    resampler = _Resampler(buffer)
    context = stream.codec_context
    step = max(expected // _PROGRESS_STEPS, SAMPLE_RATE)
    reported = 0

    packets = 0
    bad_packets = 0
    first_error: str | None = None

    def take(frames: list[AudioFrame]) -> None:
        for frame in frames:
            resampler.push(frame)
        if limit is not None and buffer.size > limit:
            raise AudioTooLongError(
                f"{name!r} is longer than the {max_seconds:g} s limit",
                path=str(info.path),
                duration=max(info.duration, buffer.size / SAMPLE_RATE),
                max_seconds=max_seconds,
            )
        nonlocal reported
        if progress is not None and buffer.size - reported >= step:
            reported = buffer.size
            progress(reported / max(expected, 1))

    demuxer = container.demux(stream)
    try:
        while True:
            try:
                packet = next(demuxer)
            except StopIteration:
                break
            except av.FFmpegError as exc:
                # Reading stops at damage; the length check below decides
                # whether what decoded is complete enough.
                first_error = first_error or ffmpeg_reason(exc)
                break
            if packet.size == 0:
                continue
            packets += 1
            try:
                frames = context.decode(packet)
            except av.FFmpegError as exc:
                bad_packets += 1
                first_error = first_error or ffmpeg_reason(exc)
                continue
            take(frames)
        try:
            take(context.decode(None))
        except av.FFmpegError as exc:
            bad_packets += 1
            first_error = first_error or ffmpeg_reason(exc)
        resampler.flush()
        take([])
    except av.FFmpegError as exc:
        raise CorruptMediaError(
            f"{name!r} could not be converted to 16 kHz audio: {ffmpeg_reason(exc)}",
            path=str(info.path),
        ) from exc

    decoded = buffer.size
    if bad_packets > max(_MAX_BAD_PACKETS, _MAX_BAD_PACKET_FRACTION * packets):
        raise CorruptMediaError(
            f"{name!r} is corrupt: {bad_packets} of {packets} audio packets failed to decode "
            f"({first_error})",
            path=str(info.path),
            bad_packets=bad_packets,
            packets=packets,
        )

    # An estimated duration can be far off for VBR audio, so only a length
    # stated by a header or counted from packets can reveal missing data.
    trusted = info.duration_source != "estimated"
    shortfall = info.duration - decoded / SAMPLE_RATE
    if trusted and shortfall > truncation_tolerance(info.duration):
        raise CorruptMediaError(
            f"{name!r} is truncated or corrupt: {decoded / SAMPLE_RATE:.2f} s of "
            f"{info.duration:.2f} s decoded" + (f" ({first_error})" if first_error else ""),
            path=str(info.path),
            expected_seconds=info.duration,
            decoded_seconds=decoded / SAMPLE_RATE,
        )
    if decoded == 0:
        if first_error is not None:
            raise CorruptMediaError(
                f"{name!r} is corrupt: no audio could be decoded ({first_error})",
                path=str(info.path),
            )
        raise EmptyMediaError(f"{name!r} contains no audio samples", path=str(info.path))

    length = decoded
    if trusted and 0 < decoded - expected <= _MAX_TAIL_PADDING_SECONDS * SAMPLE_RATE:
        length = expected
    buffer.truncate(length)
