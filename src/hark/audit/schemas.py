"""What the audit API returns: events, a page of them, and the JSON-lines export."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hark.audit.models import AuditEvent


class AuditEventOut(BaseModel):
    """One recorded action. Fields are flat, so exported lines filter easily (`jq`)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    tenant_id: str = Field(description="The organisation whose key, job or voice it was.")
    created_at: datetime
    actor_kind: str = Field(description="key, user (signed in), anonymous (a local "
                                        "caller without a key), link (a signed media "
                                        "link) or cli (the `hark` command on the server).")
    actor_key_id: str | None = Field(description="The API key that acted (for a link: "
                                                  "the key that made it).")
    actor_user_id: str | None = Field(default=None, description="The signed-in user who "
                                                                 "acted.")
    action: str = Field(description="Such as job.created, key.revoked, media.downloaded.")
    target_type: str = Field(description="key, job, speaker, user or organisation.")
    target_id: str
    client_address: str | None = Field(description="The caller's address, over HTTP.")
    request_id: str | None = Field(description="The request's X-Request-ID, over HTTP.")
    details: dict[str, Any]

    @classmethod
    def of(cls, event: AuditEvent) -> AuditEventOut:
        return cls.model_validate(event)


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) "
                                                "page; null on the last page.")
