"""Creating, listing, revoking and checking API keys.

A key is `hark_` followed by 32 random bytes (base62-ish, URL-safe); only its
SHA-256 is stored. Keys are random and long, so a plain hash is enough: there is
nothing to brute-force, and lookups stay one indexed equality. Functions take the
session first and never commit; creating a key, changing its rate and revoking it
record an audit event in the same transaction.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from sqlalchemy import select
from sqlalchemy.orm import Session

from hark.accounts.models import Membership, User
from hark.accounts.policy import parse_scopes
from hark.audit import service as audit
from hark.audit.actor import Actor
from hark.audit.models import KEY_CREATED, KEY_RATE_CHANGED, KEY_REVOKED
from hark.db.base import utcnow
from hark.errors import AuthenticationError, NotFoundError, OptionError
from hark.keys.models import ApiKey
from hark.organisations.service import ensure_organisation
from hark.principal import Principal

KEY_PREFIX = "hark_"
_DISPLAY_CHARS = 12
MAX_TENANT_LENGTH = 64


# A key's rate that turns limiting off for it (a trusted batch client, say).
UNLIMITED = "unlimited"


def parse_rate(text: str, field: str = "rate_limit") -> list[RateLimitItem]:
    """`text` in `limits`' notation ("600/minute", "10/second;1000/hour") as rate
    limits; none for UNLIMITED or ""."""
    text = text.strip()
    if not text or text == UNLIMITED:
        return []
    try:
        return list(parse_many(text))
    except ValueError:
        raise OptionError(f"{text[:64]!r} is not a rate: write it as N/second, N/minute, "
                          f"N/hour or N/day, several joined by ';', or {UNLIMITED!r}",
                          field=field) from None


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    secret: str  # the key itself: shown once, never stored


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def check_tenant(tenant_id: str) -> str:
    """A tenant (organisation) id, checked: 1-64 letters, digits, '-', '_' or '.'."""
    tenant_id = tenant_id.strip()
    if not tenant_id or len(tenant_id) > MAX_TENANT_LENGTH or not tenant_id.replace(
            "-", "").replace("_", "").replace(".", "").isalnum():
        raise OptionError("a tenant is 1-64 letters, digits, '-', '_' or '.'", field="tenant")
    return tenant_id


def create_key(session: Session, *, name: str, tenant_id: str, actor: Actor,
               max_priority: int = 0, rate_limit: str | None = None,
               scopes: str | list[str] | None = None, user_id: str | None = None
               ) -> CreatedKey:
    """A key of the organisation `tenant_id`: a service account's, or with `user_id`
    the key of one of its people, which acts for them and within their role."""
    tenant_id = check_tenant(tenant_id)
    granted = " ".join(sorted(parse_scopes(scopes)))
    if user_id is not None:
        user = session.get(User, user_id)
        if user is None or session.get(Membership, (user_id, tenant_id)) is None:
            raise OptionError(f"that person is not a member of {tenant_id}", field="user")
        if user.disabled_at is not None:
            raise OptionError("that person is disabled", field="user")
    name = " ".join(name.split()) or "unnamed"
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    if not -100 <= max_priority <= 100:
        raise OptionError("a key's maximum priority is between -100 and 100",
                          field="max_priority")
    if rate_limit is not None:
        parse_rate(rate_limit)
        rate_limit = rate_limit.strip()[:64]
    ensure_organisation(session, tenant_id)
    key = ApiKey(name=name[:200], tenant_id=tenant_id, prefix=raw[:_DISPLAY_CHARS],
                 key_hash=hash_key(raw), webhook_secret="whsec_" + secrets.token_urlsafe(32),
                 max_priority=max_priority, rate_limit=rate_limit, scopes=granted,
                 user_id=user_id)
    session.add(key)
    session.flush()
    audit.record(session, actor, tenant_id=key.tenant_id, action=KEY_CREATED,
                 target_type="key", target_id=key.id,
                 details={"name": key.name, "max_priority": key.max_priority,
                          "rate_limit": key.rate_limit, "scopes": granted,
                          "user": user_id})
    return CreatedKey(key, raw)


def key_principal(session: Session, key: ApiKey) -> Principal:
    """Who a live key makes its caller: a person's key is held to that person's role in
    the organisation, and stops working while they are disabled or no longer in it."""
    role = None
    if key.user_id is not None:
        user = session.get(User, key.user_id)
        membership = session.get(Membership, (key.user_id, key.tenant_id))
        if user is None or user.disabled_at is not None or membership is None:
            raise AuthenticationError("the person this API key belongs to is disabled or "
                                      "no longer in the organisation")
        role = membership.role
    return Principal(tenant_id=key.tenant_id, api_key_id=key.id,
                     max_priority=key.max_priority, rate_limit=key.rate_limit,
                     user_id=key.user_id, role=role, scopes=key.scope_set)


def list_keys(session: Session, *, include_revoked: bool = False,
              tenant_id: str | None = None) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at)
    if tenant_id is not None:
        query = query.where(ApiKey.tenant_id == tenant_id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return list(session.scalars(query))


def set_rate_limit(session: Session, id_or_prefix: str, rate_limit: str | None, *,
                   actor: Actor) -> ApiKey:
    """Give a key its own request rate (None: the server's again)."""
    if rate_limit is not None:
        parse_rate(rate_limit)
    key = find_key(session, id_or_prefix)
    before = key.rate_limit
    key.rate_limit = rate_limit.strip()[:64] if rate_limit is not None else None
    session.flush()
    if key.rate_limit != before:
        audit.record(session, actor, tenant_id=key.tenant_id, action=KEY_RATE_CHANGED,
                     target_type="key", target_id=key.id,
                     details={"from": before, "to": key.rate_limit})
    return key


def revoke_key(session: Session, id_or_prefix: str, *, actor: Actor) -> ApiKey:
    """Revoke by id or by the displayed prefix (when it names exactly one key); a key
    revoked already stays as it was, and no event is recorded for it again."""
    key = find_key(session, id_or_prefix)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.flush()
        audit.record(session, actor, tenant_id=key.tenant_id, action=KEY_REVOKED,
                     target_type="key", target_id=key.id, details={"name": key.name})
    return key


def find_key(session: Session, id_or_prefix: str) -> ApiKey:
    """A key by id, or by the displayed prefix when it names exactly one key."""
    key = session.get(ApiKey, id_or_prefix)
    if key is None:
        matches = list(session.scalars(select(ApiKey).where(
            ApiKey.prefix.startswith(id_or_prefix, autoescape=True))))
        if len(matches) > 1:
            raise OptionError(f"{id_or_prefix!r} matches {len(matches)} keys; use the id",
                              field="key")
        key = matches[0] if matches else None
    if key is None:
        raise NotFoundError(f"no API key {id_or_prefix!r}", key=id_or_prefix)
    return key


def authenticate(session: Session, raw: str) -> ApiKey | None:
    """The live key matching `raw`, or None."""
    if not raw.startswith(KEY_PREFIX):
        return None
    key = session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(raw))).first()
    if key is None or key.revoked_at is not None:
        return None
    return key
