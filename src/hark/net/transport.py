"""An HTTP client that only talks to public addresses.

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

import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

from hark import __version__
from hark.errors import UrlNotAllowedError
from hark.net.addresses import IPNetwork, allowed_networks, refusal

USER_AGENT = f"Hark/{__version__} (+https://github.com/hark)"

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


class SafeTransport(httpx.BaseTransport):
    """An httpx transport on httpcore's connection pool, built on `VettingBackend`.

    Written on httpcore's and httpx's public interfaces: a request is handed to the
    pool as an httpcore request, and httpcore's errors become httpx's, so callers
    see the same exceptions as from httpx's own transport.
    """

    def __init__(
        self,
        networks: Networks = (),
        *,
        deadline: float | None = None,
        verify: bool = True,
        limits: httpx.Limits = httpx.Limits(max_connections=10, max_keepalive_connections=5),
    ) -> None:
        # No proxies from the environment: a proxy would bypass the address check.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=VettingBackend(networks, deadline=deadline),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host,
                             port=request.url.port, target=request.url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = self._pool.handle_request(core_request)
        assert isinstance(response.stream, Iterable)
        return httpx.Response(status_code=response.status, headers=response.headers,
                              stream=_ResponseStream(response.stream),
                              extensions=response.extensions)

    def close(self) -> None:
        self._pool.close()


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _httpx_errors():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


# httpcore's errors and the httpx errors that stand for them, most specific first.
_ERRORS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
)


@contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core, mapped in _ERRORS:
            if isinstance(exc, core):
                raise mapped(str(exc)) from exc
        raise


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


