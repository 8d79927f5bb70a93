"""Authentication: `Authorization: Bearer <key>` or `X-API-Key: <key>`."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from fastapi import Depends, Request, WebSocket
from fastapi.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from hark.accounts import policy, tokens
from hark.api.rate_limit import RequestRates
from hark.api.revocation import key_watch
from hark.api.state import Principal, ServiceState
from hark.db.base import DEFAULT_TENANT_ID
from hark.errors import AuthenticationError, OperatorOnlyError
from hark.keys.service import KEY_PREFIX, authenticate, hash_key, key_principal

# Anonymous use is the person at this machine (loopback only): every priority is theirs.
ANONYMOUS = Principal(tenant_id=DEFAULT_TENANT_ID, api_key_id=None, max_priority=100)


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def presented_key(connection: HTTPConnection) -> str | None:
    header = connection.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = connection.headers.get("x-api-key")
    return key.strip() if key else None


async def resolve_principal(connection: HTTPConnection, raw: str | None) -> Principal:
    """The caller, held to its role's policy and counted against its request rate."""
    principal = await _principal(connection, raw)
    method = "WEBSOCKET" if connection.scope["type"] == "websocket" else \
        connection.scope["method"]
    policy.check(principal, method, connection.url.path)
    rates: RequestRates | None = getattr(connection.app.state, "request_rates", None)
    decision = rates.hit(principal) if rates is not None else None
    if decision is not None:
        connection.state.rate_limit = decision  # for the response's headers
        if not decision.allowed:
            raise decision.refusal()
    return principal


async def _principal(connection: HTTPConnection, raw: str | None) -> Principal:
    """Async so that the common case, a recently seen key, costs no thread hop."""
    state: ServiceState = connection.app.state.hark
    if raw is None:
        if state.anonymous:
            return ANONYMOUS
        raise AuthenticationError("an API key is required: send 'Authorization: Bearer <key>' "
                                  "or 'X-API-Key: <key>'")
    digest = hash_key(raw)
    principal = state.keys.get(digest)
    # A key or sign-in an open stream found revoked is not taken from the cache any more.
    if principal is not None and not key_watch(connection).is_revoked(principal):
        return principal
    if raw.startswith(KEY_PREFIX):
        return await run_in_threadpool(_lookup, state, raw, digest)
    return await run_in_threadpool(_signed_in, state, raw, digest)


def _signed_in(state: ServiceState, raw: str, digest: str) -> Principal:
    """A user's access token: valid, and its sign-in neither ended nor its user disabled."""
    claims = tokens.decode_access(state.settings, raw)
    with state.db.session() as session:
        if not tokens.session_is_live(session, claims):
            raise AuthenticationError("this sign-in was ended; sign in again")
    principal = Principal(tenant_id=claims.organisation, api_key_id=None,
                          max_priority=100 if claims.role in ("owner", "admin") else 0,
                          user_id=claims.user_id, role=claims.role,
                          session_id=claims.session_id)
    state.keys[digest] = principal
    return principal


def _lookup(state: ServiceState, raw: str, digest: str) -> Principal:
    with state.db.session() as session:
        key = authenticate(session, raw)
        if key is None:
            raise AuthenticationError("the API key is not valid or was revoked")
        principal = key_principal(session, key)
    state.keys[digest] = principal
    return principal


async def require_principal(request: Request) -> Principal:
    return await resolve_principal(request, presented_key(request))


async def websocket_principal(websocket: WebSocket) -> Principal:
    """Browsers cannot set headers on a WebSocket: a `?api_key=` parameter also works."""
    raw = presented_key(websocket) or websocket.query_params.get("api_key")
    return await resolve_principal(websocket, raw)


async def require_operator(request: Request) -> Principal:
    """A caller of an operator tenant (HARK_OPERATOR_TENANTS): operations detail shows
    processes, paths and every tenant's counts. An anonymous local caller is tenant
    `local`, an operator unless the setting says otherwise."""
    principal = await require_principal(request)
    state: ServiceState = request.app.state.hark
    if principal.tenant_id not in state.settings.operator_tenants:
        raise OperatorOnlyError("this needs a key of an operator tenant "
                                "(HARK_OPERATOR_TENANTS)", tenant=principal.tenant_id)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(require_principal)]
