"""A request id for every HTTP request and WebSocket, on every response and log line.

`RequestIdMiddleware` is a pure ASGI middleware (no `BaseHTTPMiddleware`: that one
costs a task and a memory stream per request, and the status endpoint has a
throughput target). It should be the outermost user middleware so that the access
log, the metrics and every handler below it see the id.

The id is available three ways while a request runs:
- `current_request_id()` (a contextvar; also copied into threads that run sync endpoints),
- `request.state.request_id` (it lives in `scope["state"]`, so it outlives the
  middleware: exception handlers that run after it, like Starlette's 500 handler, can
  still read it with `request_id_from_scope`),
- the `request_id` key of every structlog line (bound into structlog's contextvars).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
_HEADER_KEY = b"x-request-id"
_HEADER_RAW = HEADER.encode("latin-1")
# Client-supplied ids end up in logs and headers: only short, plain tokens are kept, so
# nobody can inject log lines, header bytes or megabytes of text through them.
_SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")

# The messages that open a response (a WebSocket denial is an HTTP response too).
_HEADER_MESSAGES = frozenset(
    {"http.response.start", "websocket.accept", "websocket.http.response.start"}
)

_current: ContextVar[str | None] = ContextVar("hark_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being handled in this context, or None outside a request."""
    return _current.get()


def new_request_id() -> str:
    return uuid.uuid4().hex


def is_sane_request_id(value: str) -> bool:
    return _SANE_ID.fullmatch(value) is not None


def request_id_from_scope(scope: MutableMapping[str, Any]) -> str | None:
    """The id stored by the middleware, e.g. `request_id_from_scope(request.scope)`."""
    state = scope.get("state")
    if isinstance(state, dict):
        value = state.get("request_id")
        return value if isinstance(value, str) else None
    return None


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == _HEADER_KEY:
            try:
                text = value.decode("ascii")
            except UnicodeDecodeError:
                return None
            return text if is_sane_request_id(text) else None
    return None


def _with_id_header(headers: Any, request_id: bytes) -> list[tuple[bytes, bytes]]:
    # A fresh list: the response object may own (and reuse) the list it sent.
    out = list(headers or ())
    for name, _ in out:
        if name.lower() == _HEADER_KEY:  # the app set one itself; keep it
            return out
    out.append((_HEADER_RAW, request_id))
    return out


class RequestIdMiddleware:
    """Assign a request id, expose it to the app and logs, echo it in `X-Request-ID`.

    An incoming `X-Request-ID` is reused when it is at most 128 characters of
    `[A-Za-z0-9._-]`; anything else is replaced by a fresh uuid4 hex. Error responses
    produced inside the app (HTTPException, validation errors, handlers registered for
    them) carry the header too. Starlette's `ServerErrorMiddleware` (unhandled
    exceptions) sits outside all user middleware, so a handler registered for
    `Exception`/500 must add the header itself, from `request_id_from_scope`.
    WebSockets get the header on their handshake response (`websocket.accept`).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return

        request_id = _incoming_id(scope) or new_request_id()
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["request_id"] = request_id
        raw_id = request_id.encode("ascii")

        async def send_with_id(message: Message) -> None:
            if message["type"] in _HEADER_MESSAGES:
                message = {**message, "headers": _with_id_header(message.get("headers"), raw_id)}
            await send(message)

        token = _current.set(request_id)
        log_tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.reset_contextvars(**log_tokens)
            _current.reset(token)
