"""A job's stored recording over HTTP, with byte ranges so that players can seek.

Browsers fetch `<audio>`/`<video>` sources with `Range: bytes=N-` requests and only
allow seeking when the server answers them with 206 Partial Content. One range per
request is served (what players send); a request for several gets the whole file
(200), which HTTP allows. The body streams from `Storage.read_range`: only the
requested bytes are read, from the stored file or as a ranged GET of the S3 object, so
seeking in a long recording costs what it plays.
"""

from __future__ import annotations

import mimetypes
import re
from pathlib import PurePosixPath
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from hark.api.errors import envelope
from hark.storage.base import Storage, StorageObjectMissing

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
# The usual recording formats, whatever the host's mime.types says.
_TYPES = {
    ".flac": "audio/flac", ".mp3": "audio/mpeg", ".wav": "audio/wav", ".ogg": "audio/ogg",
    ".oga": "audio/ogg", ".opus": "audio/ogg", ".m4a": "audio/mp4", ".aac": "audio/aac",
    ".weba": "audio/webm", ".webm": "video/webm", ".mp4": "video/mp4", ".m4v": "video/mp4",
    ".mov": "video/quicktime", ".mkv": "video/x-matroska", ".wma": "audio/x-ms-wma",
}


def content_type(filename: str) -> str:
    suffix = PurePosixPath(filename).suffix.lower()
    return _TYPES.get(suffix) or mimetypes.guess_type(filename)[0] or \
        "application/octet-stream"


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
    first, last = wanted if isinstance(wanted, tuple) else (0, size - 1)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(max(last - first + 1, 0)),
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(filename)}",
        "Cache-Control": "private, max-age=3600",
    }
    status = 200
    if isinstance(wanted, tuple):
        status = 206
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    return StreamingResponse(storage.read_range(key, first, last), status_code=status,
                             headers=headers, media_type=content_type(filename))

