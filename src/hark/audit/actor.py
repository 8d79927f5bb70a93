"""Who acts, as an audit event names them: an API key, a signed-in user, an anonymous
local caller, a signed media link, or the `hark` command.

Over HTTP the actor also carries where the request came from and its request id.
Both are the request's, not the caller's, so they are read from the context of the
request being handled (`ClientAddressMiddleware` below, and the request-id middleware)
rather than passed down through every service that records an event.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from hark.api.request_id import current_request_id
from hark.audit.models import ActorKind
from hark.principal import Principal

_client_address: ContextVar[str | None] = ContextVar("hark_client_address", default=None)


@dataclass(frozen=True)
class Actor:
    kind: ActorKind
    api_key_id: str | None = None
    user_id: str | None = None
    client_address: str | None = None
    request_id: str | None = None


# The person at the server's shell, through the `hark` command.
COMMAND_LINE = Actor(kind="cli")


def current_client_address() -> str | None:
    """The peer address of the request being handled, or None outside a request."""
    return _client_address.get()


def request_actor(principal: Principal) -> Actor:
    """The caller of the request being handled, as `principal` authenticated them."""
    kind: ActorKind = "key" if principal.api_key_id is not None else \
        "user" if principal.user_id is not None else "anonymous"
    return Actor(kind=kind, api_key_id=principal.api_key_id, user_id=principal.user_id,
                 client_address=current_client_address(), request_id=current_request_id())


def user_actor(user_id: str) -> Actor:
    """A user acting over HTTP before they hold a token (signing in)."""
    return Actor(kind="user", user_id=user_id, client_address=current_client_address(),
                 request_id=current_request_id())


def link_actor(api_key_id: str | None) -> Actor:
    """Whoever followed a signed media link; the link was made with `api_key_id`."""
    return Actor(kind="link", api_key_id=api_key_id, client_address=current_client_address(),
                 request_id=current_request_id())


class ClientAddressMiddleware:
    """Makes the peer address of each HTTP request and WebSocket available to the code
    that handles it (`current_client_address()`); threads that run sync endpoints get a
    copy of the context, and with it the address.

    The address is the ASGI scope's `client`: uvicorn sets it from `X-Forwarded-For`
    only for the proxies it is told to trust.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        token = _client_address.set(str(client[0])[:64] if client else None)
        try:
            await self.app(scope, receive, send)
        finally:
            _client_address.reset(token)
