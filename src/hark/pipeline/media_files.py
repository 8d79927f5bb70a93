"""Opening media files for FFmpeg safely, and checks made on their raw bytes.

`open_container` turns every way a path can fail to open into a `MediaError`, stops
FFmpeg from following a file to other resources, and opens the audio past leading
ID3v2 tags too large to be anything but a way to make FFmpeg read them into memory.
The byte-level checks here (ID3v2 tag sizes, a WAV's declared data length, magic
numbers) read a few bytes at known offsets, never the file.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av
from av.container import InputContainer

from hark.errors import (
    CorruptMediaError,
    EmptyMediaError,
    MediaNotFoundError,
    UnsupportedMediaError,
)

# A shortfall this large between the length a header promises and what
# decodes means data is missing. The absolute floor absorbs codec priming and
# padding and the block-granular durations of Matroska; the relative part
# absorbs imprecise headers of long files.
_TRUNCATION_MIN_SECONDS = 0.5
_TRUNCATION_FRACTION = 0.02

# FFmpeg reads a leading ID3v2 tag whole into memory, and text frames several times
# over (a 250 MB tag costs it 800 MB). Cover art is rarely above a few megabytes;
# tags larger than this in all are skipped, and the audio after them is opened.
MAX_READ_TAG_BYTES = 16 << 20
_ID3_HEADER_BYTES = 10
_ID3_FOOTER_FLAG = 0x10
# Tags stacked back to back are skipped together; past this many it is not a tag.
_MAX_STACKED_TAGS = 64

# WAV writers that stream use these data sizes as "unknown length".
_RIFF_UNKNOWN_SIZES = frozenset({0, 0xFFFFFFFF, 0x7FFFFFFF})


@contextmanager
def open_container(path: Path) -> Iterator[InputContainer]:
    name = path.name or str(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise MediaNotFoundError(
            f"{name!r}: no such file", path=str(path), reason="not_found"
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

    # The whitelist stops playlists and similar formats from opening network or
    # other nested resources.
    options = {"protocol_whitelist": "file"}
    tags = leading_tag_bytes(path)
    if tags > MAX_READ_TAG_BYTES:
        options["skip_initial_bytes"] = str(tags)
    try:
        # An explicit file URL stops a name such as "concat:x.wav" from being
        # taken as a protocol.
        container = av.open(f"file:{path.absolute()}", options=options,
                            metadata_errors="replace")
    except av.FFmpegError as exc:
        reason = ffmpeg_reason(exc)
        if isinstance(exc, OSError):
            raise UnsupportedMediaError(
                f"{name!r} cannot be read: {reason}", path=str(path), reason="unreadable"
            ) from exc
        if has_media_signature(path):
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


def ffmpeg_reason(exc: av.FFmpegError) -> str:
    text = exc.strerror if isinstance(exc.strerror, str) and exc.strerror else str(exc)
    return " ".join(text.split())


def leading_tag_bytes(path: Path) -> int:
    """Bytes taken by the ID3v2 tags at the start of the file (0 when there are none).

    A tag is "ID3", a major version of 2 to 4, a revision, flags, and a size in four
    7-bit bytes; version 4 may add a 10-byte footer.
    """
    total = 0
    try:
        with path.open("rb") as fh:
            for _ in range(_MAX_STACKED_TAGS):
                fh.seek(total)
                header = fh.read(_ID3_HEADER_BYTES)
                if (len(header) < _ID3_HEADER_BYTES or header[:3] != b"ID3"
                        or header[3] not in (2, 3, 4) or any(b & 0x80 for b in header[6:])):
                    break
                size = 0
                for byte in header[6:]:
                    size = (size << 7) | byte
                footer = _ID3_HEADER_BYTES if header[3] == 4 and header[5] & _ID3_FOOTER_FLAG \
                    else 0
                total += _ID3_HEADER_BYTES + size + footer
    except OSError:
        return 0
    return total


def has_media_signature(path: Path) -> bool:
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


def truncation_tolerance(expected_seconds: float) -> float:
    return max(_TRUNCATION_MIN_SECONDS, _TRUNCATION_FRACTION * expected_seconds)


def check_riff_length(path: Path, size: int) -> None:
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
    if declared_seconds - present_seconds > truncation_tolerance(declared_seconds):
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
