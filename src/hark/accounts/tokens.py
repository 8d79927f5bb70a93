"""Sign-in tokens. The access token is a JWT (HS256, HARK_ACCESS_TOKEN_SECONDS, 15
minutes by default) naming the user, the organisation, the role and the sign-in; the
refresh token is opaque, stored as a hash, and rotated on every use: a sign-in is a
family of refresh tokens of which only the newest is good. A used one presented again
can only be a copy, so the whole family is revoked and the thief and the owner both
sign in again. Revoking a family (logout, a session ended from the list, a disabled
user) refuses its access tokens too, within the key cache's few seconds.

The signing secret is HARK_AUTH_SECRET, else one made once in the data directory (API
replicas that do not share one need the setting)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hark.accounts.models import Membership, PasswordReset, RefreshToken, User
from hark.config import Settings
from hark.db.base import new_id, utcnow
from hark.errors import AuthenticationError, PermissionDeniedError
from hark.stored_secret import stored_secret

REFRESH_PREFIX = "hrt_"
RESET_PREFIX = "hrs_"
SECRET_FILE = "auth_secret"
ISSUER = "hark"
RESET_SECONDS = 24 * 3600


def digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def signing_secret(settings: Settings) -> str:
    return settings.auth_secret or stored_secret(settings.data_dir, SECRET_FILE)


class RefreshReusedError(AuthenticationError):
    """A used refresh token came back: its family is revoked, and that must be committed
    although the request fails."""


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    organisation: str
    role: str
    session_id: str


@dataclass(frozen=True)
class Issued:
    access_token: str
    expires_in: int
    refresh_token: str
    claims: AccessClaims


def sign_in(session: Session, settings: Settings, user: User, organisation: str | None, *,
            user_agent: str | None = None, address: str | None = None) -> Issued:
    """A new sign-in (refresh-token family) of `user` into `organisation` (None: their
    first); the user must be enabled and a member."""
    membership = _membership(session, user, organisation)
    return _issue(session, settings, user.id, membership, new_id(), user_agent, address)


def refresh(session: Session, settings: Settings, raw: str, *, user_agent: str | None = None,
            address: str | None = None) -> Issued:
    """The next tokens of a sign-in, the presented refresh token used up."""
    token = session.scalar(select(RefreshToken).where(RefreshToken.token_hash == digest(raw))
                           .with_for_update())
    now = utcnow()
    if token is None or token.revoked_at is not None or token.expires_at < now:
        raise AuthenticationError("the refresh token is not valid; sign in again")
    if token.used_at is not None:
        revoke_family(session, token.family_id)
        raise RefreshReusedError("this refresh token was already used, so a copy of it "
                                 "exists: the sign-in was ended everywhere; sign in again",
                                 reason="refresh_token_reused")
    token.used_at = now
    user = session.get(User, token.user_id)
    if user is None:
        raise AuthenticationError("the refresh token is not valid; sign in again")
    membership = _membership(session, user, token.organisation_id)
    return _issue(session, settings, user.id, membership, token.family_id,
                  user_agent or token.user_agent, address or token.address)


def _membership(session: Session, user: User, organisation: str | None) -> Membership:
    if user.disabled_at is not None:
        raise AuthenticationError("this account is disabled")
    query = select(Membership).where(Membership.user_id == user.id)
    if organisation is not None:
        query = query.where(Membership.organisation_id == organisation)
    membership = session.scalar(query.order_by(Membership.organisation_id))
    if membership is None:
        raise PermissionDeniedError("you are not a member of that organisation"
                                    if organisation else "you belong to no organisation")
    return membership


def _issue(session: Session, settings: Settings, user_id: str, membership: Membership,
           family: str, user_agent: str | None, address: str | None) -> Issued:
    raw = REFRESH_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    session.add(RefreshToken(user_id=user_id, organisation_id=membership.organisation_id,
                             family_id=family, token_hash=digest(raw),
                             expires_at=now + timedelta(days=settings.refresh_token_days),
                             user_agent=(user_agent or "")[:200] or None,
                             address=(address or "")[:64] or None))
    session.flush()
    claims = AccessClaims(user_id, membership.organisation_id, membership.role, family)
    lifetime = settings.access_token_seconds
    payload = {"iss": ISSUER, "sub": user_id, "org": claims.organisation, "role": claims.role,
               "sid": family, "iat": now, "exp": now + timedelta(seconds=lifetime)}
    return Issued(jwt.encode(payload, signing_secret(settings), algorithm="HS256"),
                  lifetime, raw, claims)


def decode_access(settings: Settings, token: str) -> AccessClaims:
    try:
        payload: dict[str, Any] = jwt.decode(
            token, signing_secret(settings), algorithms=["HS256"], issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "sid"]})
    except jwt.ExpiredSignatureError:
        raise AuthenticationError("the access token expired; refresh it",
                                  reason="token_expired") from None
    except jwt.PyJWTError:
        raise AuthenticationError("the access token is not valid") from None
    return AccessClaims(str(payload["sub"]), str(payload.get("org")), str(payload.get("role")),
                        str(payload["sid"]))


def session_is_live(session: Session, claims: AccessClaims) -> bool:
    """The sign-in is not revoked and its user not disabled."""
    user = session.get(User, claims.user_id)
    if user is None or user.disabled_at is not None:
        return False
    revoked = session.scalar(select(RefreshToken.id).where(
        RefreshToken.family_id == claims.session_id, RefreshToken.revoked_at.is_not(None))
        .limit(1))
    return revoked is None


def revoke_family(session: Session, family: str, user_id: str | None = None) -> int:
    query = update(RefreshToken).where(RefreshToken.family_id == family,
                                       RefreshToken.revoked_at.is_(None))
    if user_id is not None:
        query = query.where(RefreshToken.user_id == user_id)
    count = session.execute(query.values(revoked_at=utcnow())).rowcount  # type: ignore[attr-defined]
    session.flush()
    return int(count or 0)


def family_of(session: Session, raw: str) -> str | None:
    """The sign-in a refresh token belongs to (None: unknown)."""
    return session.scalar(select(RefreshToken.family_id).where(
        RefreshToken.token_hash == digest(raw)))


def revoke_others(session: Session, user_id: str, keep: str | None) -> None:
    """End every sign-in of the user but `keep`."""
    query = update(RefreshToken).where(RefreshToken.user_id == user_id,
                                       RefreshToken.revoked_at.is_(None))
    if keep is not None:
        query = query.where(RefreshToken.family_id != keep)
    session.execute(query.values(revoked_at=utcnow()))


def revoke_all(session: Session, user_id: str) -> None:
    session.execute(update(RefreshToken).where(RefreshToken.user_id == user_id,
                                               RefreshToken.revoked_at.is_(None))
                    .values(revoked_at=utcnow()))


@dataclass(frozen=True)
class SignIn:
    id: str
    organisation: str
    started_at: Any
    last_used_at: Any
    user_agent: str | None
    address: str | None


def sign_ins(session: Session, user_id: str) -> list[SignIn]:
    """The user's sign-ins still going (not revoked, newest token not expired)."""
    rows = session.scalars(select(RefreshToken).where(
        RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .order_by(RefreshToken.created_at))
    families: dict[str, list[RefreshToken]] = {}
    for row in rows:
        families.setdefault(row.family_id, []).append(row)
    now = utcnow()
    found = []
    for family, chain in families.items():
        newest = chain[-1]
        if newest.used_at is None and newest.expires_at > now:
            found.append(SignIn(family, newest.organisation_id, chain[0].created_at,
                                newest.created_at, newest.user_agent, newest.address))
    return found


def make_reset_link(session: Session, user: User) -> str:
    """A one-time token for `user` to set a new password (valid a day)."""
    raw = RESET_PREFIX + secrets.token_urlsafe(32)
    session.add(PasswordReset(user_id=user.id, token_hash=digest(raw),
                              expires_at=utcnow() + timedelta(seconds=RESET_SECONDS)))
    session.flush()
    return raw


def use_reset_link(session: Session, raw: str) -> User:
    """The user a reset token is for; the token is used up, their sign-ins end."""
    reset = session.scalar(select(PasswordReset).where(PasswordReset.token_hash == digest(raw))
                           .with_for_update())
    if reset is None or reset.used_at is not None or reset.expires_at < utcnow():
        raise AuthenticationError("this reset link is not valid (used, expired or unknown)")
    reset.used_at = utcnow()
    user = session.get(User, reset.user_id)
    if user is None or user.disabled_at is not None:
        raise AuthenticationError("this reset link is not valid")
    revoke_all(session, user.id)
    return user
