"""Request and response bodies of the key API. The key itself appears only in the
answer to its creation."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from hark.keys.models import ApiKey


class NewKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="unnamed", max_length=200)
    # None: jobs:read, jobs:write, speakers:write and live.
    scopes: list[str] | None = Field(default=None, max_length=8)
    max_priority: int = Field(default=0, ge=-100, le=100)
    rate_limit: str | None = Field(default=None, max_length=64)
    # A person of the organisation the key acts for; None: a service account.
    user_id: str | None = Field(default=None, max_length=36)


class KeyOut(BaseModel):
    id: str
    name: str
    prefix: str
    scopes: list[str]
    user_id: str | None
    max_priority: int
    rate_limit: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        return cls(id=key.id, name=key.name, prefix=key.prefix, scopes=sorted(key.scope_set),
                   user_id=key.user_id, max_priority=key.max_priority,
                   rate_limit=key.rate_limit, created_at=key.created_at,
                   last_used_at=key.last_used_at, revoked_at=key.revoked_at)


class CreatedKeyOut(KeyOut):
    key: str
    webhook_secret: str
