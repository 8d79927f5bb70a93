"""An HTTP client that only talks to public addresses, and `fetch` for source URLs.

Checking a URL's host before the request is not enough: the name can resolve to
something else a moment later (DNS rebinding), and a redirect can point anywhere. So the
check lives in the network layer. `VettingBackend` is an httpcore network backend whose
`connect_tcp` resolves the host itself, refuses the connection if any address is not
allowed (see `hark.net.addresses`), and then connects to the vetted IP literal, so no
second lookup can swap the address. TLS is unaffected: httpcore gives `start_tls` the
URL's host name for SNI and certificate checks, not the address we connected to.

Every socket read, write and connect is also clamped to an optional wall-clock
deadline, so a server that trickles bytes cannot stretch a transfer past its limit.
"""

from __future__ import annotations

import re
import socket
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpcore
import httpx

from hark import __version__
from hark.errors import FetchError, UploadTooLargeError, UrlNotAllowedError
from hark.filenames import clean_filename
from hark.net.addresses import IPNetwork, allowed_networks, parse_address, refusal

SOURCE_URL_FIELD = "source.url"
USER_AGENT = f"Hark/{__version__} (+https://github.com/hark)"
MAX_URL_LENGTH = 8192
_CHUNK = 64 * 1024
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

Networks = Sequence[str] | Sequence[IPNetwork]


class BlockedAddressError(UrlNotAllowedError):
    """Raised from inside the transport when a host resolves to a refused address.

    It is not an httpcore exception on purpose: httpx re-raises unknown exceptions
    unchanged, so callers can tell "refused" apart from "unreachable".
    """

    def __init__(self, host: str, address: str, reason: str) -> None:
        shown = host if host == address else f"{host} ({address})"
        super().__init__(
            f"Refusing to connect to {shown}: {reason} addresses are not allowed",
            host=host,
            address=address,
            reason=reason,
        )


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


class _DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every operation ends by the transfer's deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner = inner
        self._deadline = deadline

    def _budget(self, timeout: float | None, error: type[Exception]) -> float:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise error("the transfer ran past its time limit")
        return remaining if timeout is None else min(timeout, remaining)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._budget(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._budget(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        budget = self._budget(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._inner.start_tls(ssl_context, server_hostname, budget), self._deadline
        )

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class VettingBackend(httpcore.SyncBackend):
    """Resolves, vets and connects by IP; refuses with `BlockedAddressError`."""

    def __init__(self, networks: Networks = (), *, deadline: float | None = None) -> None:
        self._networks = allowed_networks(networks)
        self._deadline = deadline

    def resolve(self, host: str, port: int) -> list[str]:
        """Every address `host` resolves to, all of them allowed, else refuse."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve host {host!r}: {exc}") from exc
        addresses: list[str] = []
        for _family, _type, _proto, _canon, sockaddr in infos:
            address = str(sockaddr[0])
            # One bad record refuses the host: an attacker controls the order.
            reason = refusal(address, self._networks)
            if reason is not None:
                raise BlockedAddressError(host, address, reason)
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise httpcore.ConnectError(f"host {host!r} has no addresses")
        return addresses

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        if self._deadline is not None and self._deadline - time.monotonic() <= 0:
            raise httpcore.ConnectTimeout("the transfer ran past its time limit")
        last_error: Exception | None = None
        for address in self.resolve(host, port):
            budget = timeout
            if self._deadline is not None:
                remaining = max(self._deadline - time.monotonic(), 0.001)
                budget = remaining if timeout is None else min(timeout, remaining)
            try:
                # An IP literal: create_connection does no DNS lookup for it.
                stream = super().connect_tcp(
                    address, port, budget, local_address, list(socket_options or [])
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
                continue
            if self._deadline is not None:
                return _DeadlineStream(stream, self._deadline)
            return stream
        assert last_error is not None
        raise last_error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise BlockedAddressError(path, path, "unix socket")


class SafeTransport(httpx.HTTPTransport):
    """httpx's transport with the connection pool built on `VettingBackend`."""

    def __init__(
        self,
        networks: Networks = (),
        *,
        deadline: float | None = None,
        verify: bool = True,
        limits: httpx.Limits = httpx.Limits(max_connections=10, max_keepalive_connections=5),
    ) -> None:
        # trust_env=False: a proxy from the environment would bypass the address check.
        super().__init__(verify=verify, trust_env=False, limits=limits)
        self._pool.close()
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=VettingBackend(networks, deadline=deadline),
        )


def safe_client(
    *, timeout: float, allowed_networks: Networks, deadline: float | None = None
) -> httpx.Client:
    """An httpx client that refuses non-public addresses and never follows redirects.

    `timeout` bounds each connect/read/write; `deadline` (a `time.monotonic()` value)
    bounds everything the client does from now on.
    """
    return httpx.Client(
        transport=SafeTransport(allowed_networks, deadline=deadline),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": USER_AGENT},
    )


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
) -> FetchResult:
    """Download `url` into `sink` (never committed or aborted here: the caller owns it).

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
                                    timeout=timeout, field=field)
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
