"""Who is calling: a tenant, through an API key, a signed-in user of an organisation,
or anonymously (when allowed)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    api_key_id: str | None
    # The highest job priority this caller may ask for (0: normal).
    max_priority: int = 0
    # The key's own request rate ("120/minute"); None: the server's HARK_RATE_LIMIT.
    rate_limit: str | None = None
    # A signed-in user: who, their role in the organisation (the tenant), and the
    # sign-in the access token belongs to. None for keys and anonymous callers.
    user_id: str | None = None
    role: str | None = None
    session_id: str | None = None
    # An API key's scopes (hark.accounts.policy.SCOPES); None: not limited by scopes
    # (a signed-in user, held to their role, or the anonymous local user).
    scopes: frozenset[str] | None = None
