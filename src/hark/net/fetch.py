"""Downloading a source URL into storage, through the address-checked client of
`hark.net.transport`, within a size and a time limit.
"""

from __future__ import annotations

import re
import socket
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import httpx

from hark.errors import FetchError, UploadTooLargeError, UrlNotAllowedError
from hark.filenames import clean_filename
from hark.net.addresses import parse_address, refusal
from hark.net.transport import BlockedAddressError, Networks, safe_client

SOURCE_URL_FIELD = "source.url"
MAX_URL_LENGTH = 8192
_CHUNK = 64 * 1024
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def check_url(
    url: str | httpx.URL, *, field: str, allowed_networks: Networks | None = None
) -> httpx.URL:
    """Parse a URL Hark is asked to call; refuse anything but plain http(s) to a host.

    When `allowed_networks` is given, a host written as an IP literal (in any of the
    spellings the C resolver accepts: `2130706433`, `0x7f.1`, `[::ffff:127.0.0.1]`) is
    judged now for an early, clear error. Host names are judged at connect time.
    """
    text = str(url)
    if len(text) > MAX_URL_LENGTH:
        raise UrlNotAllowedError(f"URL is longer than {MAX_URL_LENGTH} characters", field=field)
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise UrlNotAllowedError(f"Not a valid URL: {exc}", field=field) from exc
    if parsed.scheme not in ("http", "https"):
        raise UrlNotAllowedError(
            f"Only http and https URLs are allowed, not {parsed.scheme or 'no scheme'!r}",
            field=field,
        )
    if not parsed.host:
        raise UrlNotAllowedError("URL has no host", field=field)
    if parsed.userinfo:
        raise UrlNotAllowedError("URLs with credentials (user:password@) are not allowed",
                                 field=field)
    if allowed_networks is not None:
        literal = _ip_literal(parsed.host)
        if literal is not None:
            reason = refusal(literal, allowed_networks)
            if reason is not None:
                raise UrlNotAllowedError(
                    f"Refusing to connect to {parsed.host}: {reason} addresses are not allowed",
                    field=field,
                )
    return parsed


def _ip_literal(host: str) -> str | None:
    """The address a host spelled as an IP literal stands for, else None."""
    try:
        return str(parse_address(host))
    except ValueError:
        pass
    if re.fullmatch(r"[0-9a-fA-FxX.]+", host) and re.match(r"[0-9]", host):
        try:  # inet_aton accepts the legacy forms (decimal, hex, octal, short).
            return socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            return None
    return None


class Sink(Protocol):
    def write(self, data: bytes) -> None: ...


@dataclass(frozen=True)
class FetchResult:
    final_url: str
    filename: str
    content_type: str | None
    size: int


def fetch(
    url: str,
    sink: Sink,
    *,
    max_bytes: int,
    timeout: float,
    allowed_networks: Networks,
    max_redirects: int = 5,
    field: str = SOURCE_URL_FIELD,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> FetchResult:
    """Download `url` into `sink` (never committed or aborted here: the caller owns it).

    `on_progress(received, expected)` hears of every chunk (expected is the declared
    length, when there is one); it may raise to stop the download.
    Raises UrlNotAllowedError (scheme, credentials, refused address at any hop),
    UploadTooLargeError (over `max_bytes`), FetchError (unreachable, non-2xx status,
    too many redirects, past `timeout` seconds in total).
    """
    deadline = time.monotonic() + timeout
    current = check_url(url, field=field, allowed_networks=allowed_networks)
    with safe_client(timeout=timeout, allowed_networks=allowed_networks,
                     deadline=deadline) as client:
        for _hop in range(max_redirects + 1):
            try:
                with client.stream("GET", current, headers={"Accept-Encoding": "identity"}) as r:
                    location = r.headers.get("location")
                    if r.status_code in _REDIRECT_STATUSES and location:
                        current = check_url(r.url.join(location), field=field,
                                            allowed_networks=allowed_networks)
                        continue
                    if not r.is_success:
                        raise FetchError(f"The source URL answered HTTP {r.status_code}",
                                         field=field, status=r.status_code)
                    return _receive(r, sink, max_bytes=max_bytes, deadline=deadline,
                                    timeout=timeout, field=field, on_progress=on_progress)
            except BlockedAddressError as exc:
                raise UrlNotAllowedError(exc.message, field=field, **exc.details) from exc
            except httpx.TimeoutException as exc:
                raise FetchError(f"Fetching the source URL took longer than {timeout:g} s",
                                 field=field, reason="timeout") from exc
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise FetchError(f"Could not fetch the source URL: {exc}", field=field,
                                 reason="network") from exc
    raise FetchError(f"The source URL redirected more than {max_redirects} times",
                     field=field, reason="too_many_redirects")


def _receive(
    response: httpx.Response,
    sink: Sink,
    *,
    max_bytes: int,
    deadline: float,
    timeout: float,
    field: str,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> FetchResult:
    def too_large() -> UploadTooLargeError:
        return UploadTooLargeError(f"The file at the source URL is larger than {max_bytes} bytes",
                                   field=field, limit=max_bytes)

    declared = response.headers.get("content-length")
    encoded = response.headers.get("content-encoding", "identity").lower() != "identity"
    # A declared length counts only for an unencoded body; the stored size is decoded.
    if declared is not None and declared.isdigit() and int(declared) > max_bytes and not encoded:
        raise too_large()
    size = 0
    for chunk in response.iter_bytes(_CHUNK):
        if size + len(chunk) > max_bytes:
            raise too_large()
        sink.write(chunk)
        size += len(chunk)
        if on_progress is not None:
            on_progress(size, int(declared) if declared and declared.isdigit() and
                        not encoded else None)
        if time.monotonic() > deadline:
            raise FetchError(f"Fetching the source URL took longer than {timeout:g} s",
                             field=field, reason="timeout")
    media_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return FetchResult(
        final_url=str(response.url),
        filename=response_filename(response),
        content_type=media_type or None,
        size=size,
    )


# --- file names -------------------------------------------------------------------

_DISPOSITION_PARAM = re.compile(
    r';\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)'
)


def disposition_filename(header: str) -> str | None:
    """The file name in a Content-Disposition header; `filename*` (RFC 6266) wins."""
    plain: str | None = None
    extended: str | None = None
    for name, raw in _DISPOSITION_PARAM.findall(header):
        value = raw.strip()
        if name.lower() == "filename*":
            charset, _, rest = value.partition("'")
            _lang, _, encoded = rest.partition("'")
            try:
                extended = urllib.parse.unquote(encoded, encoding=charset or "utf-8",
                                                errors="replace")
            except LookupError:  # unknown charset name
                extended = urllib.parse.unquote(encoded, errors="replace")
        elif name.lower() == "filename":
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            plain = value
    return extended or plain


def sanitize_filename(name: str) -> str | None:
    """A bare, printable file name (see `clean_filename`), or None when nothing is left."""
    return clean_filename(name, default="") or None


def response_filename(response: httpx.Response) -> str:
    """Content-Disposition's file name, else the URL's last path segment, else 'download'."""
    disposition = response.headers.get("content-disposition")
    for candidate in (
        disposition_filename(disposition) if disposition else None,
        response.url.path.rsplit("/", 1)[-1],
    ):
        cleaned = sanitize_filename(candidate) if candidate else None
        if cleaned:
            return cleaned
    return "download"
