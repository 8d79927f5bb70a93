"""Probe and decode any file FFmpeg can read into 16 kHz mono float32 samples.

`probe` reads container and stream headers (and, when a length is missing or
only a guess that decides a limit, counts packets without decoding them), so
length limits and the common "wrong kind of file" mistakes are rejected
before any decoding work.
`decode` turns the first audio track into one contiguous array. `load_audio`
does both.

Every failure is a `MediaError` subclass with a stable code:

    missing path, directory, not a media file      UnsupportedMediaError
    audio codec this FFmpeg build cannot decode    UnsupportedMediaError
    media without an audio track (video, image)    NoAudioStreamError
    0-byte file, audio track with no samples       EmptyMediaError
    truncated file, undecodable data               CorruptMediaError
    longer than max_seconds                        AudioTooLongError

A missing path raises UnsupportedMediaError (details["reason"] == "not_found")
rather than FileNotFoundError, so that callers handle one error family with
stable codes whatever went wrong with the input.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import av
import numpy as np
import numpy.typing as npt
from av.audio.fifo import AudioFifo
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.audio.stream import AudioStream
from av.container import InputContainer
from av.stream import Stream

from hark.errors import (
    AudioTooLongError,
    CorruptMediaError,
    EmptyMediaError,
    NoAudioStreamError,
    OptionError,
    UnsupportedMediaError,
)

__all__ = [
    "SAMPLE_RATE",
    "DurationSource",
    "MediaInfo",
    "StreamInfo",
    "decode",
    "load_audio",
    "probe",
]

SAMPLE_RATE = 16000

DurationSource = Literal["declared", "estimated", "scanned"]
"""Where `MediaInfo.duration` came from.

declared:  a header states the length independently of the file size.
estimated: the length equals file size ÷ bit rate. FFmpeg falls back to exactly
           this when a header has no length (e.g. an MP3 without a Xing/VBRI
           frame), and for VBR audio it can be off several-fold. A constant
           bit-rate file whose header length matches its size is
           indistinguishable from such a guess, so it is labelled the same.
scanned:   the sum of the audio packet durations, read without decoding.
"""

# A shortfall this large between the length a header promises and what
# decodes means data is missing. The absolute floor absorbs codec priming and
# padding and the block-granular durations of Matroska; the relative part
# absorbs imprecise headers of long files.
_TRUNCATION_MIN_SECONDS = 0.5
_TRUNCATION_FRACTION = 0.02

# Encoders pad the last frame (AAC in MP4 rounds up to 1024 samples and the
# demuxer does not cut it back); surplus up to this much beyond a declared
# length is padding, anything more means the header is wrong and is kept.
_MAX_TAIL_PADDING_SECONDS = 0.25

# A header duration within this fraction of size ÷ bit rate carries no
# information beyond the file size, so it may be an estimate.
_ESTIMATE_MATCH_FRACTION = 0.03

# A few damaged packets in a long recording are skipped, as players do; more
# than this share means the file is broken.
_MAX_BAD_PACKETS = 3
_MAX_BAD_PACKET_FRACTION = 0.01

# The output buffer is preallocated from the probed duration. Untouched pages
# cost no memory, but a wildly wrong header must not make the first
# allocation fail, so the initial size is capped and the buffer grows instead.
_MAX_INITIAL_SECONDS = 3 * 3600

# FFmpeg's tty/bintext demuxers accept any text file as "ANSI art" video.
_TEXT_ART_CODECS = frozenset({"ansi", "bintext", "xbin", "idf"})

# WAV writers that stream use these data sizes as "unknown length".
_RIFF_UNKNOWN_SIZES = frozenset({0, 0xFFFFFFFF, 0x7FFFFFFF})

_MATROSKA_DURATION = re.compile(r"^(\d+):(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")

Samples = npt.NDArray[np.float32]


@dataclass(frozen=True)
class StreamInfo:
    index: int
    kind: str
    """FFmpeg's stream type: "audio", "video", "subtitle", "data", "attachment"."""
    codec: str | None
    sample_rate: int | None
    channels: int | None
    duration: float | None


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    format_name: str
    duration: float
    """Seconds of audio in the chosen track; after `load_audio`, the decoded length."""
    size_bytes: int
    audio: StreamInfo
    """The track that `decode` reads: the first audio stream with a decoder."""
    streams: tuple[StreamInfo, ...]
    duration_source: DurationSource = "declared"


def probe(path: str | Path, *, max_seconds: float | None = None) -> MediaInfo:
    """Describe a media file from its headers; raise if it cannot or must not be decoded."""
    _check_limit_option(max_seconds)
    media_path = Path(path)
    with _open(media_path) as container:
        info, _ = _probe_container(container, media_path, max_seconds)
    return info


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
    with _open(media_path) as container:
        return _decode_stream(container, _audio_stream(container, info), info, max_seconds)


def load_audio(path: str | Path, *, max_seconds: float | None = None) -> tuple[MediaInfo, Samples]:
    """Probe, enforce the limit, then decode; `duration` in the result is the decoded length."""
    _check_limit_option(max_seconds)
    info, samples = _load(Path(path), max_seconds)
    return replace(info, duration=samples.size / SAMPLE_RATE), samples


def _load(path: Path, max_seconds: float | None) -> tuple[MediaInfo, Samples]:
    # One open serves both steps: stream analysis on open can take a
    # noticeable fraction of a second for multichannel PCM.
    with _open(path) as container:
        info, consumed = _probe_container(container, path, max_seconds)
        if not consumed:
            return info, _decode_stream(
                container, _audio_stream(container, info), info, max_seconds
            )
    with _open(path) as container:
        return info, _decode_stream(container, _audio_stream(container, info), info, max_seconds)


def _probe_container(
    container: InputContainer, path: Path, max_seconds: float | None
) -> tuple[MediaInfo, bool]:
    """The file's description, and whether packets were read past the headers."""
    info = _describe(container, path)
    consumed = info.duration_source == "scanned"
    if max_seconds is not None and info.duration > max_seconds:
        if info.duration_source == "estimated":
            # Only a guess stands between the file and rejection; a packet
            # scan is cheap next to decoding and settles it.
            stream = _audio_stream(container, info)
            info = replace(
                info,
                duration=_scan_packet_seconds(container, stream),
                duration_source="scanned",
            )
            consumed = True
        _raise_if_too_long(info, max_seconds)
    return info, consumed


# Opening and classifying files


@contextmanager
def _open(path: Path) -> Iterator[InputContainer]:
    name = path.name or str(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise UnsupportedMediaError(
            f"{name!r}: file not found", path=str(path), reason="not_found"
        ) from None
    except OSError as exc:
        raise UnsupportedMediaError(
            f"{name!r} cannot be read: {exc.strerror or exc}", path=str(path), reason="unreadable"
        ) from exc
    if not path.is_file():
        raise UnsupportedMediaError(
            f"{name!r} is not a regular file", path=str(path), reason="not_a_file"
        )
    if stat.st_size == 0:
        raise EmptyMediaError(f"{name!r} is empty (0 bytes)", path=str(path), size_bytes=0)

    try:
        # An explicit file URL stops a name such as "concat:x.wav" from being
        # taken as a protocol, and the whitelist stops playlists and similar
        # formats from opening network or other nested resources.
        container = av.open(
            f"file:{path.absolute()}",
            options={"protocol_whitelist": "file"},
            metadata_errors="replace",
        )
    except av.FFmpegError as exc:
        reason = _ffmpeg_reason(exc)
        if isinstance(exc, OSError):
            raise UnsupportedMediaError(
                f"{name!r} cannot be read: {reason}", path=str(path), reason="unreadable"
            ) from exc
        if _has_media_signature(path):
            raise CorruptMediaError(
                f"{name!r} looks like a media file but FFmpeg cannot read it "
                f"(probably truncated or corrupt): {reason}",
                path=str(path),
            ) from exc
        raise UnsupportedMediaError(
            f"{name!r} is not an audio or video file FFmpeg can read: {reason}",
            path=str(path),
            reason="not_media",
        ) from exc
    try:
        yield container
    finally:
        container.close()


def _ffmpeg_reason(exc: av.FFmpegError) -> str:
    text = exc.strerror if isinstance(exc.strerror, str) and exc.strerror else str(exc)
    return " ".join(text.split())


def _has_media_signature(path: Path) -> bool:
    """True when the first bytes name a container format that FFmpeg reads.

    FFmpeg reports the same error for "not media at all" and for a known
    container whose index is missing, e.g. an MP4 cut off before its `moov`
    box. The magic bytes tell the two apart.
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError:
        return False
    if head.startswith((b"fLaC", b"ID3", b"OggS", b"\x1a\x45\xdf\xa3", b"#!AMR", b"caff")):
        return True
    if head.startswith((b"MAC ", b"wvpk", b"0&\xb2u\x8ef\xcf\x11")):
        return True
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] in (b"WAVE", b"AVI "):
        return True
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return True
    return head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")


def _describe(container: InputContainer, path: Path) -> MediaInfo:
    name = path.name
    size = path.stat().st_size
    streams = tuple(_stream_info(stream) for stream in container.streams)
    audio_streams = [s for s in container.streams if isinstance(s, AudioStream)]
    if not audio_streams:
        visual = [
            s for s in streams if s.kind == "video" and (s.codec or "") not in _TEXT_ART_CODECS
        ]
        if visual:
            raise NoAudioStreamError(
                f"{name!r} has no audio track",
                path=str(path),
                streams=[s.kind for s in streams],
            )
        raise UnsupportedMediaError(
            f"{name!r} is not an audio or video file",
            path=str(path),
            reason="not_media",
            format=container.format.name,
        )

    decodable = [s for s in audio_streams if _has_decoder(s)]
    if not decodable:
        codecs = sorted({_codec_name(s) or "unknown" for s in audio_streams})
        raise UnsupportedMediaError(
            f"{name!r} uses an audio codec FFmpeg cannot decode here: {', '.join(codecs)}",
            path=str(path),
            reason="no_decoder",
            codecs=codecs,
        )
    stream = decodable[0]

    if container.format.name == "wav":
        _check_riff_length(path, size)
    duration, source = _duration(container, stream, size)
    return MediaInfo(
        path=path,
        format_name=container.format.name,
        duration=duration,
        size_bytes=size,
        audio=streams[stream.index],
        streams=streams,
        duration_source=source,
    )


def _has_decoder(stream: Stream) -> bool:
    try:
        return stream.codec_context is not None
    except av.FFmpegError:
        return False


def _codec_name(stream: Stream) -> str | None:
    try:
        context = stream.codec_context
        if context is not None:
            return context.name
        return stream.codec.name
    except (av.FFmpegError, AttributeError):
        return None


def _stream_info(stream: Stream) -> StreamInfo:
    sample_rate: int | None = None
    channels: int | None = None
    if isinstance(stream, AudioStream) and _has_decoder(stream):
        sample_rate = stream.codec_context.sample_rate or None
        channels = stream.codec_context.channels or None
    return StreamInfo(
        index=stream.index,
        kind=stream.type,
        codec=_codec_name(stream),
        sample_rate=sample_rate,
        channels=channels,
        duration=_stream_seconds(stream),
    )


def _stream_seconds(stream: Stream) -> float | None:
    if stream.duration is not None and stream.duration > 0 and stream.time_base:
        return float(stream.duration * stream.time_base)
    # Matroska has no per-track length field; mkvmerge and FFmpeg store one as a tag.
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    if tag:
        match = _MATROSKA_DURATION.match(tag.strip())
        if match:
            hours, minutes, seconds = match.groups()
            total = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
            return total if total > 0 else None
    return None


def _duration(
    container: InputContainer, stream: AudioStream, size: int
) -> tuple[float, DurationSource]:
    seconds = _stream_seconds(stream)
    if seconds is None and container.duration is not None and container.duration > 0:
        seconds = container.duration / av.time_base
        # The container spans all tracks; audio that starts late is shorter.
        if stream.start_time is not None and stream.time_base and container.start_time:
            offset = (
                float(stream.start_time * stream.time_base) - container.start_time / av.time_base
            )
            if 0 < offset < seconds:
                seconds -= offset
    stream_bit_rate = sum(
        s.codec_context.bit_rate or 0 for s in container.streams if _has_decoder(s)
    )
    if seconds is not None:
        if stream_bit_rate > 0:
            guess = size * 8 / stream_bit_rate
            if abs(seconds - guess) <= _ESTIMATE_MATCH_FRACTION * guess:
                return seconds, "estimated"
        return seconds, "declared"
    bit_rate = container.bit_rate or stream_bit_rate
    if bit_rate > 0:
        return size * 8 / bit_rate, "estimated"
    return _scan_packet_seconds(container, stream), "scanned"


def _scan_packet_seconds(container: InputContainer, stream: AudioStream) -> float:
    """Length of the track from packet timestamps, reading the file without decoding."""
    total = 0.0
    first: float | None = None
    end = 0.0
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            time_base = packet.time_base
            length = float(packet.duration * time_base) if packet.duration else 0.0
            total += length
            if packet.pts is not None:
                start = float(packet.pts * time_base)
                first = start if first is None else min(first, start)
                end = max(end, start + length)
    except av.FFmpegError:
        # A damaged tail ends the scan; decoding reports the damage properly.
        pass
    span = end - first if first is not None else 0.0
    return max(total, span)


def _check_riff_length(path: Path, size: int) -> None:
    """Reject a WAV whose data chunk is shorter than its header says.

    FFmpeg clamps the declared data size to the bytes present, so a WAV cut in
    half would otherwise decode cleanly to half its length.
    """
    declared = _riff_data_extent(path)
    if declared is None:
        return
    data_offset, data_size, byte_rate = declared
    missing = data_offset + data_size - size
    if missing <= 0 or byte_rate <= 0:
        return
    declared_seconds = data_size / byte_rate
    present_seconds = max(0.0, (size - data_offset) / byte_rate)
    if declared_seconds - present_seconds > _truncation_tolerance(declared_seconds):
        raise CorruptMediaError(
            f"{path.name!r} is truncated: its header declares {declared_seconds:.2f} s "
            f"of audio but the file holds {present_seconds:.2f} s",
            path=str(path),
            expected_seconds=declared_seconds,
            decoded_seconds=present_seconds,
        )


def _riff_data_extent(path: Path) -> tuple[int, int, int] | None:
    """(offset, declared size, byte rate) of a RIFF/WAVE data chunk, when stated."""
    try:
        with path.open("rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            byte_rate = 0
            for _ in range(64):
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return None
                chunk_id, chunk_size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if chunk_id == b"data":
                    if chunk_size in _RIFF_UNKNOWN_SIZES:
                        return None
                    return fh.tell(), chunk_size, byte_rate
                if chunk_id == b"fmt ":
                    fmt = fh.read(min(chunk_size, 16))
                    if len(fmt) >= 12:
                        byte_rate = struct.unpack("<I", fmt[8:12])[0]
                    fh.seek(chunk_size - len(fmt), 1)
                else:
                    fh.seek(chunk_size, 1)
                if chunk_size % 2:
                    fh.seek(1, 1)
    except OSError:
        return None
    return None


# Decoding


def _audio_stream(container: InputContainer, info: MediaInfo) -> AudioStream:
    index = info.audio.index
    if index < len(container.streams):
        stream = container.streams[index]
        if isinstance(stream, AudioStream):
            return stream
    raise CorruptMediaError(
        f"{info.path.name!r} changed since it was probed: stream {index} is not audio",
        path=str(info.path),
    )


class _MonoBuffer:
    """Growable float32 buffer that downmixes frames as they arrive.

    One array is filled in place, so peak memory is the result itself rather
    than a list of frames plus their concatenation.
    """

    def __init__(self, capacity: int) -> None:
        self.data: Samples = np.empty(max(capacity, SAMPLE_RATE), dtype=np.float32)
        self.size = 0

    def append(self, frame: AudioFrame) -> None:
        channels = frame.layout.nb_channels
        # Packed float has a single plane: (1, samples * channels), interleaved.
        interleaved = frame.to_ndarray().reshape(-1, channels)
        count = interleaved.shape[0]
        if count == 0:
            return
        end = self.size + count
        if end > self.data.size:
            # In-place realloc; nothing else references the array here.
            self.data.resize(max(end, self.data.size + self.data.size // 2), refcheck=False)
        target = self.data[self.size : end]
        if channels == 1:
            target[:] = interleaved[:, 0]
        else:
            # An average, unlike FFmpeg's float rematrix, cannot leave [-1, 1]
            # for a source inside it: identical full-scale channels stay at 1.0.
            np.mean(interleaved, axis=1, dtype=np.float32, out=target)
        # Resampling filters ring slightly past full scale; models expect [-1, 1].
        np.clip(target, -1.0, 1.0, out=target)
        self.size = end

    def finish(self, length: int) -> Samples:
        self.data.resize(length, refcheck=False)
        return self.data


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

    def __init__(self, sink: _MonoBuffer) -> None:
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
            self._chunk = max(frame.sample_rate, 1)
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
            if out is not None:
                self._sink.append(out)


def _decode_stream(
    container: InputContainer,
    stream: AudioStream,
    info: MediaInfo,
    max_seconds: float | None,
) -> Samples:
    name = info.path.name
    limit = math.ceil(max_seconds * SAMPLE_RATE) if max_seconds is not None else None
    expected = math.ceil(info.duration * SAMPLE_RATE)
    initial = min(expected + SAMPLE_RATE // 10, _MAX_INITIAL_SECONDS * SAMPLE_RATE)
    if limit is not None:
        initial = min(initial, limit + 1)
    buffer = _MonoBuffer(initial)
    resampler = _Resampler(buffer)
    context = stream.codec_context

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
                first_error = first_error or _ffmpeg_reason(exc)
                break
            if packet.size == 0:
                continue
            packets += 1
            try:
                frames = context.decode(packet)
            except av.FFmpegError as exc:
                bad_packets += 1
                first_error = first_error or _ffmpeg_reason(exc)
                continue
            take(frames)
        try:
            take(context.decode(None))
        except av.FFmpegError as exc:
            bad_packets += 1
            first_error = first_error or _ffmpeg_reason(exc)
        resampler.flush()
        take([])
    except av.FFmpegError as exc:
        raise CorruptMediaError(
            f"{name!r} could not be converted to 16 kHz audio: {_ffmpeg_reason(exc)}",
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
    if trusted and shortfall > _truncation_tolerance(info.duration):
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
    return buffer.finish(length)


# Limits


def _check_limit_option(max_seconds: float | None) -> None:
    if max_seconds is not None and not (max_seconds > 0 and math.isfinite(max_seconds)):
        raise OptionError(
            f"max_seconds must be a positive number of seconds, not {max_seconds!r}",
            field="max_seconds",
        )


def _raise_if_too_long(info: MediaInfo, max_seconds: float) -> None:
    if info.duration > max_seconds:
        raise AudioTooLongError(
            f"{info.path.name!r} is {info.duration:.1f} s long, over the {max_seconds:g} s limit",
            path=str(info.path),
            duration=info.duration,
            max_seconds=max_seconds,
        )


def _truncation_tolerance(expected_seconds: float) -> float:
    return max(_TRUNCATION_MIN_SECONDS, _TRUNCATION_FRACTION * expected_seconds)
