"""What every response carries, and two checks made before any route runs.

- Headers: `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`,
  `Referrer-Policy: no-referrer` and a Content-Security-Policy on every response. The
  page and the API reference set their own policies (scripts from this origin only);
  everything else is data, never a page, so its policy lets nothing load, run or frame
  it, and sandboxes it should a browser render it anyway.
- Host: a browser sends the name it looked up, so a page on an attacker's name that
  resolves to this server (DNS rebinding) arrives with that name. Only loopback names,
  the bind address, HARK_PUBLIC_URL's host and HARK_ALLOWED_HOSTS are answered.
  `/health`, `/health/live`, `/health/ready` and `/metrics` are exempt: orchestrators'
  probes and Prometheus address a replica by its IP, and those endpoints are open anyway.
- Cross-site: without a key (anonymous local use), a request that changes something
  or opens a WebSocket is refused when a browser says it comes from another site
  (`Sec-Fetch-Site`, else `Origin`), unless that origin is in HARK_ALLOWED_ORIGINS.
  A request with a key cannot be forged by another site (browsers do not attach keys
  on their own), and programs send neither header, so both pass.

Refusals use the error envelope (OpenAI's shape under `/v1`), with codes
HOST_NOT_ALLOWED and CROSS_SITE_REQUEST; a refused WebSocket gets it as its
handshake's HTTP answer where the server supports that.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hark.api.auth import is_loopback, presented_key
from hark.api.errors import error_response
from hark.config import Settings
from hark.errors import CrossSiteRequestError, HarkError, HostNotAllowedError
from hark.openai_api import errors as openai_errors

API_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
    "sandbox"
)
SECURITY_HEADERS = (
    ("content-security-policy", API_CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
)
HOST_EXEMPT_PATHS = frozenset({"/health", "/health/live", "/health/ready", "/metrics"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# What a browser says of a request made by a page of this very origin, or by the
# person (typing the address, a bookmark).
_OWN_FETCH_SITES = frozenset({"same-origin", "none"})
_WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::", "[::]"})
_START_MESSAGES = frozenset({"http.response.start", "websocket.http.response.start"})


def host_name(header: str) -> str | None:
    """The lower-case name of a `Host` header (port and IPv6 brackets removed), or None
    when it is not a plain host[:port]."""
    if not header or any(c in header for c in "/?#@\\ \t"):
        return None
    try:
        parts = urlsplit("//" + header)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return None
    return (parts.hostname or "").rstrip(".") or None


class HostAllowList:
    """Loopback names, plus the configured names: exact, `*.suffix`, or `*` for any."""

    def __init__(self, settings: Settings) -> None:
        names = [name.strip().lower().rstrip(".") for name in settings.allowed_hosts]
        if settings.host.strip() not in _WILDCARD_BINDS:
            names.append((host_name(settings.host) or settings.host).lower())
        if settings.public_url:
            names.append((urlsplit(settings.public_url).hostname or "").lower())
        self.any = "*" in names
        self.exact = frozenset(n for n in names if n and not n.startswith(("*.", ".")))
        self.suffixes = tuple("." + n.lstrip("*.") for n in names
                              if n.startswith(("*.", ".")) and n.lstrip("*."))

    def allows(self, header: str | None) -> bool:
        name = host_name(header or "")
        if name is None:
            return False
        return self.any or is_loopback(name) or name in self.exact \
            or name.endswith(self.suffixes)


class SecurityMiddleware:
    """Pure ASGI: checks Host and cross-site requests, adds the security headers."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.hosts = HostAllowList(settings)
        trusted = {origin.rstrip("/").lower() for origin in settings.allowed_origins}
        if settings.public_url:
            public = urlsplit(settings.public_url)
            trusted.add(f"{public.scheme}://{public.netloc}".lower())
        self.trusted_origins = frozenset(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] in _START_MESSAGES:
                headers = MutableHeaders(raw=list(message.get("headers", ())))
                for name, value in SECURITY_HEADERS:
                    if name not in headers:
                        headers[name] = value
                message = {**message, "headers": headers.raw}
            await send(message)

        refusal = self._refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send_with_headers)
        else:
            await _refuse(scope, receive, send_with_headers, refusal)

    def _refusal(self, scope: Scope) -> HarkError | None:
        connection = HTTPConnection(scope)
        headers = connection.headers
        if scope["path"] not in HOST_EXEMPT_PATHS and not self.hosts.allows(headers.get("host")):
            return HostNotAllowedError(
                "this server does not answer to that host name; add it to "
                "HARK_ALLOWED_HOSTS if it is yours", host=headers.get("host", ""))
        changes = scope["type"] == "websocket" or scope["method"] not in SAFE_METHODS
        if changes and not _has_key(connection) and self._cross_site(headers):
            return CrossSiteRequestError(
                "a request from another site that changes something needs an API key",
                origin=headers.get("origin", ""))
        return None

    def _cross_site(self, headers: Headers) -> bool:
        origin = headers.get("origin")
        if origin is not None and (origin.rstrip("/").lower() in self.trusted_origins
                                   or "*" in self.trusted_origins):
            return False
        fetch_site = headers.get("sec-fetch-site")
        if fetch_site is not None:
            return fetch_site.lower() not in _OWN_FETCH_SITES
        if origin is None:
            return False  # not sent by a browser page
        return urlsplit(origin).netloc.lower() != headers.get("host", "").lower()


def _has_key(connection: HTTPConnection) -> bool:
    if presented_key(connection) is not None:
        return True
    # Browsers cannot set headers on a WebSocket: its key may ride in the URL.
    return connection.scope["type"] == "websocket" and "api_key" in connection.query_params


async def _refuse(scope: Scope, receive: Receive, send: Send, error: HarkError) -> None:
    # The envelope reads the request id from the scope; a Request needs an HTTP scope,
    # and the copy shares the original's state.
    request = Request({**scope, "type": "http"} if scope["type"] == "websocket" else scope)
    if openai_errors.is_openai_path(request):
        response = openai_errors.hark_error_response(error)
    else:
        response = error_response(request, error)
    if scope["type"] == "websocket" and \
            "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008, "reason": error.message[:120]})
        return
    await response(scope, receive, send)
