"""A job's stored recording over HTTP, with byte ranges so that players can seek.

Browsers fetch `<audio>`/`<video>` sources with `Range: bytes=N-` requests and only
allow seeking when the server answers them with 206 Partial Content. One range per
request is served (what players send); a request for several gets the whole file
(200), which HTTP allows. The body streams from `Storage.read_range`: only the
requested bytes are read, from the stored file or as a ranged GET of the S3 object, so
seeking in a long recording costs what it plays.

Nothing a user uploads is ever served as a page. The upload's name is theirs to
choose (`x.html` holding a valid WAV passes the probe), so the type is never taken
from it: it comes from the stored file's first bytes, matched against the audio and
video containers Hark accepts, and anything else is `application/octet-stream`.
Every answer also says `nosniff`, is an attachment (opened directly, it downloads),
and carries a sandboxing Content-Security-Policy.
"""

from __future__ import annotations

import re
import threading
from pathlib import PurePosixPath
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from hark.api.errors import envelope
from hark.api.security import API_CONTENT_SECURITY_POLICY
from hark.storage.base import Storage, StorageObjectMissing

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
OCTET_STREAM = "application/octet-stream"
SNIFF_BYTES = 64
# The extension a saved copy gets, by served type (never the uploader's own).
EXTENSIONS = {
    "audio/wav": "wav", "audio/flac": "flac", "audio/mpeg": "mp3", "audio/aac": "aac",
    "audio/ogg": "ogg", "audio/mp4": "m4a", "audio/aiff": "aiff", "audio/x-caf": "caf",
    "audio/amr": "amr", "audio/x-ape": "ape", "audio/x-wavpack": "wv",
    "video/mp4": "mp4", "video/quicktime": "mov", "video/3gpp": "3gp", "video/webm": "webm",
    "video/x-matroska": "mkv", "video/x-msvideo": "avi", "video/x-ms-asf": "asf",
    OCTET_STREAM: "bin",
}
_ASF_HEADER = bytes.fromhex("3026b2758e66cf11")
_MP4_AUDIO_BRANDS = (b"M4A ", b"M4B ", b"M4P ")
_MAX_REMEMBERED = 4096


def sniff_media_type(head: bytes) -> str:
    """The type of a recording from its first bytes: one of `EXTENSIONS`."""
    simple = ((b"fLaC", "audio/flac"), (b"ID3", "audio/mpeg"), (b"OggS", "audio/ogg"),
              (b"caff", "audio/x-caf"), (b"#!AMR", "audio/amr"), (b"MAC ", "audio/x-ape"),
              (b"wvpk", "audio/x-wavpack"), (_ASF_HEADER, "video/x-ms-asf"))
    for magic, media_type in simple:
        if head.startswith(magic):
            return media_type
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video/x-msvideo"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "audio/aiff"
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: the doctype follows shortly
        return "video/webm" if b"webm" in head else "video/x-matroska"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _MP4_AUDIO_BRANDS:
            return "audio/mp4"
        if brand == b"qt  ":
            return "video/quicktime"
        return "video/3gpp" if brand.startswith(b"3g") else "video/mp4"
    if len(head) >= 2 and head[0] == 0xFF:  # MPEG audio frame sync, no tag before it
        if head[1] & 0xF6 == 0xF0:  # layer bits 00: an ADTS (AAC) header
            return "audio/aac"
        if head[1] & 0xE0 == 0xE0 and head[1] & 0x06:
            return "audio/mpeg"
    return OCTET_STREAM


class _TypeMemo:
    """Stored recordings never change under their key: each is sniffed once."""

    def __init__(self) -> None:
        self._types: dict[str, str] = {}
        self._lock = threading.Lock()

    def type_of(self, storage: Storage, key: str, size: int) -> str:
        with self._lock:
            known = self._types.get(key)
        if known is not None:
            return known
        head = b"".join(storage.read_range(key, 0, min(SNIFF_BYTES, size) - 1)) if size else b""
        media_type = sniff_media_type(head)
        with self._lock:
            if len(self._types) >= _MAX_REMEMBERED:
                self._types.clear()
            self._types[key] = media_type
        return media_type


_memo = _TypeMemo()


def saved_name(filename: str, media_type: str) -> str:
    """The uploader's name with the extension of the type served."""
    stem = PurePosixPath(filename.replace("\\", "/")).stem or "recording"
    return f"{stem}.{EXTENSIONS.get(media_type, 'bin')}"


def parse_range(header: str | None, size: int) -> tuple[int, int] | bool | None:
    """(first, last) byte of a single satisfiable range; None: serve it all;
    False: not satisfiable (416)."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None  # several ranges, or another unit: the whole file
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None
    if not first:  # the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            return False
        return max(size - length, 0), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        return False
    return start, end


def media_response(request: Request, storage: Storage, key: str, filename: str) -> Response:
    size = storage.size(key)
    if size is None:
        raise StorageObjectMissing("the job's recording is no longer stored")
    wanted = parse_range(request.headers.get("range"), size)
    if wanted is False:
        return envelope(request, 416, f"the range is outside the file's {size} bytes",
                        "RANGE_NOT_SATISFIABLE", {"size": size},
                        headers={"Content-Range": f"bytes */{size}"})
    media_type = _memo.type_of(storage, key, size)
    first, last = wanted if isinstance(wanted, tuple) else (0, size - 1)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(max(last - first + 1, 0)),
        "Content-Disposition": "attachment; filename*=UTF-8''"
                               + quote(saved_name(filename, media_type), safe=""),
        "Content-Security-Policy": API_CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, max-age=3600",
    }
    status = 200
    if isinstance(wanted, tuple):
        status = 206
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    return StreamingResponse(storage.read_range(key, first, last), status_code=status,
                             headers=headers, media_type=media_type)
