"""Probe media files: what they contain, how long the audio is, and whether it may be decoded.

`probe` reads container and stream headers (and, when a length is missing or
only a guess that decides a limit, counts packets without decoding them), so
length limits and the common "wrong kind of file" mistakes are rejected
before any decoding work. Decoding lives in `hark.pipeline.audio`, which
re-exports `probe` and the types defined here.

A missing path raises UnsupportedMediaError (details["reason"] == "not_found")
rather than FileNotFoundError, so that callers handle one error family with
stable codes whatever went wrong with the input.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import av
from av.audio.stream import AudioStream
from av.container import InputContainer
from av.stream import Stream

from hark.errors import (
    AudioTooLongError,
    CorruptMediaError,
    NoAudioStreamError,
    OptionError,
    UnsupportedMediaError,
)
from hark.pipeline.media_files import check_riff_length, leading_tag_bytes, open_container

__all__ = [
    "DurationSource",
    "MediaInfo",
    "StreamInfo",
    "probe",
]

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

# A header duration within this fraction of size ÷ bit rate carries no
# information beyond the file size, so it may be an estimate.
_ESTIMATE_MATCH_FRACTION = 0.03

# Below this rate a file holds no intelligible speech (narrowband telephone audio is
# 8 kHz); resampling such a file to 16 kHz would multiply its samples thousands-fold.
MIN_SAMPLE_RATE = 4000

# FFmpeg's tty/bintext demuxers accept any text file as "ANSI art" video.
_TEXT_ART_CODECS = frozenset({"ansi", "bintext", "xbin", "idf"})

_MATROSKA_DURATION = re.compile(r"^(\d+):(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")


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
    with open_container(media_path) as container:
        info, _ = _probe_container(container, media_path, max_seconds)
    return info


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


# Classifying files


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
    rate = stream.codec_context.sample_rate
    if 0 < rate < MIN_SAMPLE_RATE:
        raise UnsupportedMediaError(
            f"{name!r} is sampled at {rate} Hz; speech needs at least {MIN_SAMPLE_RATE} Hz "
            "(telephone audio has 8000)",
            path=str(path),
            reason="sample_rate",
            sample_rate=rate,
        )

    if container.format.name == "wav":
        check_riff_length(path, size)
    # Leading tags are not audio: FFmpeg's own size-based estimate leaves them out.
    duration, source = _duration(container, stream, size - leading_tag_bytes(path))
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

