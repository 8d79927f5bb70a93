"""Signing in and out (`/api/v1/auth/*`).

The page keeps the access token in memory only and the refresh token in an HttpOnly,
SameSite=Strict cookie scoped to `/api/v1/auth`: script on the page never sees the
long-lived token, and a request from another site neither carries the cookie nor passes
the server's cross-site check (Sec-Fetch-Site / Origin) on its POST. Programs get both
tokens in the body instead.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse

from hark.accounts import oidc, passwords, service, tokens
from hark.accounts.models import User
from hark.accounts.schemas import (
    LoginIn,
    MembershipOut,
    MeOut,
    PasswordIn,
    RefreshIn,
    ResetIn,
    SessionOut,
    SetupIn,
    TokensOut,
    UserOut,
)
from hark.api.auth import CurrentPrincipal, is_loopback
from hark.api.openapi import ERRORS
from hark.api.rate_limit import RequestRates
from hark.api.state import ServiceState, State
from hark.audit import service as audit_log
from hark.audit.actor import request_actor, user_actor
from hark.audit.models import SIGNED_IN
from hark.db.base import DEFAULT_TENANT_ID
from hark.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
)
from hark.principal import Principal

router = APIRouter(prefix="/api/v1", tags=["accounts"], responses=ERRORS)
COOKIE = "hark_refresh"
COOKIE_PATH = "/api/v1/auth"
BAD_LOGIN = "wrong e-mail address or password"


def _tokens(issued: tokens.Issued, user: User, response: Response, request: Request,
            state: ServiceState, cookie: bool) -> TokensOut:
    if cookie:
        _keep_refresh(response, issued.refresh_token, request, state)
    return TokensOut(access_token=issued.access_token, expires_in=issued.expires_in,
                     refresh_token=None if cookie else issued.refresh_token,
                     user=UserOut.of(user), organisation=issued.claims.organisation,
                     role=issued.claims.role)


def _keep_refresh(response: Response, raw: str, request: Request, state: ServiceState) -> None:
    """The refresh token as the page keeps it: out of script's reach, sent back only to
    the sign-in routes, and only from this site."""
    response.set_cookie(COOKIE, raw, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path=COOKIE_PATH,
                        max_age=int(state.settings.refresh_token_days * 86400))


def _client(request: Request) -> tuple[str | None, str | None]:
    return request.headers.get("user-agent"), request.client.host if request.client else None


@router.post("/auth/login", response_model=TokensOut, summary="Sign in with a password")
def login(body: LoginIn, request: Request, response: Response, state: State) -> TokensOut:
    agent, address = _client(request)
    rates: RequestRates = request.app.state.request_rates
    # Guessing is slowed per account and per address before any password is checked.
    rates.attempt(state.settings.login_address_rate_limit, "login-address", address or "-")
    email = body.email.strip().lower()
    rates.attempt(state.settings.login_rate_limit, "login-account", email)
    with state.db.session(write=True) as session:
        user = service.user_by_email(session, email)
        if not passwords.verify(user.password_hash if user else None, body.password) \
                or user is None:
            raise AuthenticationError(BAD_LOGIN)
        if user.password_hash and passwords.needs_rehash(user.password_hash):
            user.password_hash = passwords.hash_password(body.password)
        issued = tokens.sign_in(session, state.settings, user, body.organisation,
                                user_agent=agent, address=address)
        audit_log.record(session, user_actor(user.id), tenant_id=issued.claims.organisation,
                         action=SIGNED_IN, target_type="user", target_id=user.id,
                         details={"session": issued.claims.session_id})
        return _tokens(issued, user, response, request, state, body.cookie)


@router.post("/auth/refresh", response_model=TokensOut,
             summary="New tokens for a sign-in (the refresh token is used up)")
def refresh(body: RefreshIn, request: Request, response: Response, state: State) -> TokensOut:
    raw = body.refresh_token or request.cookies.get(COOKIE)
    if not raw:
        raise AuthenticationError("no refresh token: send it, or sign in")
    agent, address = _client(request)
    reused: tokens.RefreshReusedError | None = None
    with state.db.session(write=True) as session:
        try:
            issued = tokens.refresh(session, state.settings, raw, user_agent=agent,
                                    address=address)
            user = session.get(User, issued.claims.user_id)
            assert user is not None
            return _tokens(issued, user, response, request,
                           state, body.cookie or COOKIE in request.cookies)
        except tokens.RefreshReusedError as exc:
            reused = exc  # the family's revocation is committed before refusing
    raise reused


@router.post("/auth/logout", status_code=204, summary="End this sign-in")
def logout(request: Request, state: State, body: RefreshIn | None = None) -> Response:
    raw = (body.refresh_token if body else None) or request.cookies.get(COOKIE)
    with state.db.session(write=True) as session:
        family = tokens.family_of(session, raw) if raw else None
        if family is None:
            family = _session_of_bearer(request, state)
        if family is not None:
            tokens.revoke_family(session, family)
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response


def _session_of_bearer(request: Request, state: ServiceState) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    try:
        return tokens.decode_access(state.settings, value.strip()).session_id
    except AuthenticationError:
        return None


def _user(principal: Principal) -> str:
    if principal.user_id is None:
        raise AuthenticationError("this needs a signed-in user, not an API key")
    return principal.user_id


@router.get("/auth/me", response_model=MeOut, summary="Who is signed in")
def me(principal: CurrentPrincipal, state: State) -> MeOut:
    with state.db.session() as session:
        user = session.get(User, _user(principal))
        if user is None:
            raise AuthenticationError("this sign-in was ended; sign in again")
        return MeOut(user=UserOut.of(user), organisation=principal.tenant_id,
                     role=principal.role or "",
                     organisations=[MembershipOut(organisation=m.organisation_id, role=m.role)
                                    for m in service.memberships(session, user.id)])


@router.get("/auth/sessions", response_model=list[SessionOut], summary="Your sign-ins")
def list_sessions(principal: CurrentPrincipal, state: State) -> list[SessionOut]:
    with state.db.session() as session:
        return [SessionOut(id=s.id, organisation=s.organisation, started_at=s.started_at,
                           last_used_at=s.last_used_at, user_agent=s.user_agent,
                           address=s.address, current=s.id == principal.session_id)
                for s in tokens.sign_ins(session, _user(principal))]


@router.delete("/auth/sessions/{session_id}", status_code=204, summary="End a sign-in")
def end_session(session_id: str, principal: CurrentPrincipal, state: State) -> Response:
    with state.db.session(write=True) as session:
        if not tokens.revoke_family(session, session_id[:36], user_id=_user(principal)):
            raise NotFoundError("no such sign-in of yours", session=session_id[:36])
    return Response(status_code=204)


@router.post("/auth/password", status_code=204,
             summary="Change your password (your other sign-ins end)")
def change_password(body: PasswordIn, principal: CurrentPrincipal, state: State,
                    request: Request) -> Response:
    rates: RequestRates = request.app.state.request_rates
    rates.attempt(state.settings.login_rate_limit, "password-change", _user(principal))
    with state.db.session(write=True) as session:
        user = session.get(User, _user(principal))
        if user is None or not passwords.verify(user.password_hash, body.current_password):
            raise AuthenticationError("the current password is wrong", field="current_password")
        service.change_password(session, user, body.new_password)
        tokens.revoke_others(session, user.id, keep=principal.session_id)
    return Response(status_code=204)


@router.post("/auth/reset", status_code=204, summary="Set a password with a reset link")
def reset_password(body: ResetIn, state: State) -> Response:
    passwords.check_new(body.new_password, "new_password")
    with state.db.session(write=True) as session:
        user = tokens.use_reset_link(session, body.token)
        service.change_password(session, user, body.new_password)
    return Response(status_code=204)


# --- single sign-on ---------------------------------------------------------------------

OIDC_COOKIE = "hark_oidc"
OIDC_PATH = "/api/v1/auth/oidc"


@router.get("/auth/providers", summary="How people can sign in here")
def providers(state: State) -> dict[str, Any]:
    configured = oidc.provider(state.settings)
    return {"password": True,
            "oidc": {"start": f"{OIDC_PATH}/start"} if configured else None,
            "setup": _may_set_up(state)}


def _may_set_up(state: ServiceState) -> bool:
    """A server on loopback with nobody yet offers its first visitor the owner account."""
    if not is_loopback(state.settings.host):
        return False
    with state.db.session() as session:
        return not service.anyone(session)


@router.post("/auth/setup", response_model=TokensOut, status_code=201,
             summary="Make the first owner (a server on loopback with nobody yet)")
def set_up(body: SetupIn, request: Request, response: Response, state: State) -> TokensOut:
    if not is_loopback(state.settings.host):
        raise PermissionDeniedError("the first owner is made here only on a server bound to "
                                    "loopback; elsewhere use `hark users create … --role "
                                    "owner`")
    agent, address = _client(request)
    with state.db.session(write=True) as session:
        if not service.lock_first_owner(session):
            raise ConflictError("this server already has people: sign in",
                                reason="already_set_up")
        user = service.create_user(session, email=body.email, organisation=DEFAULT_TENANT_ID,
                                   role="owner", password=body.password, name=body.name,
                                   actor=request_actor(Principal(DEFAULT_TENANT_ID, None)))
        issued = tokens.sign_in(session, state.settings, user, DEFAULT_TENANT_ID,
                                user_agent=agent, address=address)
        return _tokens(issued, user, response, request, state, cookie=True)


def _callback_url(request: Request, state: ServiceState) -> str:
    base = state.settings.public_url or str(request.base_url)
    return f"{base.rstrip('/')}{OIDC_PATH}/callback"


@router.get("/auth/oidc/start", status_code=302, summary="Sign in with the SSO provider")
def oidc_start(request: Request, state: State) -> Response:
    configured = oidc.provider(state.settings)
    if configured is None:
        raise NotFoundError("single sign-on is not configured here (HARK_OIDC_ISSUER)")
    flow = oidc.Flow.new()
    response = RedirectResponse(configured.authorize_url(_callback_url(request, state), flow),
                                status_code=302)
    # Lax: the provider sends the browser back with a top-level GET from its own site.
    response.set_cookie(OIDC_COOKIE, oidc.seal(flow, tokens.signing_secret(state.settings)),
                        httponly=True, samesite="lax", secure=request.url.scheme == "https",
                        path=OIDC_PATH, max_age=oidc.FLOW_SECONDS)
    return response


@router.get("/auth/oidc/callback", status_code=302, summary="Where the SSO provider returns")
def oidc_callback(request: Request, state: State, code: str | None = None,
                  returned_state: Annotated[str | None, Query(alias="state")] = None,
                  error: str | None = None) -> Response:
    configured = oidc.provider(state.settings)
    if configured is None:
        raise NotFoundError("single sign-on is not configured here (HARK_OIDC_ISSUER)")
    flow = oidc.unseal(request.cookies.get(OIDC_COOKIE), tokens.signing_secret(state.settings))
    if error is not None or not code:
        raise AuthenticationError(f"the sign-in provider said no ({(error or 'no code')[:80]})",
                                  reason="oidc_denied")
    if not secrets.compare_digest(returned_state or "", flow.state):
        raise AuthenticationError("the provider's answer is not for this browser's sign-in",
                                  reason="oidc_bad_state")
    identity = configured.identity(code[:2048], _callback_url(request, state), flow)
    agent, address = _client(request)
    organisation = state.settings.oidc_organisation
    with state.db.session(write=True) as session:
        user = service.user_by_email(session, identity.email)
        if user is None:
            user = service.create_user(session, email=identity.email, organisation=organisation,
                                       role=state.settings.oidc_default_role, password=None,
                                       name=identity.name,
                                       actor=request_actor(Principal(organisation, None)))
        elif not any(m.organisation_id == organisation
                     for m in service.memberships(session, user.id)):
            service.set_role(session, user, organisation, state.settings.oidc_default_role)
        issued = tokens.sign_in(session, state.settings, user, organisation,
                                user_agent=agent, address=address)
        audit_log.record(session, user_actor(user.id), tenant_id=organisation,
                         action=SIGNED_IN, target_type="user", target_id=user.id,
                         details={"session": issued.claims.session_id, "via": "oidc"})
    response = RedirectResponse("/", status_code=302)
    response.delete_cookie(OIDC_COOKIE, path=OIDC_PATH)
    _keep_refresh(response, issued.refresh_token, request, state)
    return response
