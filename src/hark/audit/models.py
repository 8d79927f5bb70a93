"""Table: one audit event, an action someone took on a tenant's key, job, result,
recording or voice profile.

The table is append-only. Events are written in the transaction of the action they
record and never changed afterwards: the mapper refuses updates and deletes. The one
exception is erasing an organisation, which anonymises its events with a deliberate
bulk update (`hark.audit.service.anonymise_tenant`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import JSON, Index, String, event, func
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, Mapper, mapped_column

from hark.db.base import Base, IdMixin, utcnow
from hark.db.types import UTCDateTime

# Who acted: a request with an API key, a signed-in user, an anonymous request from
# this machine, a signed media link (made with some key), or the `hark` command.
ActorKind = Literal["key", "user", "anonymous", "link", "cli"]
ACTOR_KINDS: tuple[str, ...] = get_args(ActorKind)

KEY_CREATED = "key.created"
KEY_REVOKED = "key.revoked"
KEY_RATE_CHANGED = "key.rate_changed"
JOB_CREATED = "job.created"
JOB_CANCELED = "job.canceled"
JOB_PURGED = "job.purged"
RESULT_DOWNLOADED = "result.downloaded"
MEDIA_DOWNLOADED = "media.downloaded"
SPEAKER_ENROLLED = "speaker.enrolled"
SPEAKER_SAMPLES_ADDED = "speaker.samples_added"
SPEAKER_DELETED = "speaker.deleted"
SIGNED_IN = "auth.signed_in"
USER_CREATED = "user.created"
USER_ROLE_CHANGED = "user.role_changed"
USER_DISABLED = "user.disabled"
USER_ERASED = "user.erased"
QUOTAS_CHANGED = "organisation.quotas_changed"
RETENTION_CHANGED = "organisation.retention_changed"
ACTIONS: tuple[str, ...] = (
    KEY_CREATED, KEY_REVOKED, KEY_RATE_CHANGED, JOB_CREATED, JOB_CANCELED, JOB_PURGED,
    RESULT_DOWNLOADED, MEDIA_DOWNLOADED, SPEAKER_ENROLLED, SPEAKER_SAMPLES_ADDED,
    SPEAKER_DELETED, SIGNED_IN, USER_CREATED, USER_ROLE_CHANGED, USER_DISABLED,
    USER_ERASED, QUOTAS_CHANGED, RETENTION_CHANGED)

TargetType = Literal["key", "job", "speaker", "user", "organisation"]


class AuditEvent(IdMixin, Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        # Listing: a tenant's events newest first (the id breaks ties, as in the cursor).
        Index("ix_audit_events_tenant_created", "tenant_id", "created_at", "id"),
        # "Everything that happened to this job": one target across its events.
        Index("ix_audit_events_target_id", "target_id"),
    )

    # No default tenant, unlike other tables: an event always says whose data it was.
    tenant_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, server_default=func.now())
    actor_kind: Mapped[str] = mapped_column(String(16))
    # The API key that acted (None: anonymous, or the command line).
    actor_key_id: Mapped[str | None] = mapped_column(String(36))
    # The signed-in user who acted (actor kind `user`).
    actor_user_id: Mapped[str | None] = mapped_column(String(36))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str] = mapped_column(String(64))
    # Set for actions over HTTP: where the request came from, and its X-Request-ID.
    client_address: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AuditEventImmutableError(RuntimeError):
    """Code tried to change or remove an audit event (a programming error, not a 4xx)."""


@event.listens_for(AuditEvent, "before_update")
def _refuse_update(_mapper: Mapper[AuditEvent], _connection: Connection,
                   target: AuditEvent) -> None:
    raise AuditEventImmutableError(f"audit event {target.id} is append-only")


@event.listens_for(AuditEvent, "before_delete")
def _refuse_delete(_mapper: Mapper[AuditEvent], _connection: Connection,
                   target: AuditEvent) -> None:
    raise AuditEventImmutableError(f"audit event {target.id} is append-only")
