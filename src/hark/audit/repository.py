"""Queries for audit events: adding one, and a page of them newest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Select, and_, or_, select, update
from sqlalchemy.orm import Session

from hark.audit.models import AuditEvent


@dataclass(frozen=True)
class EventFilter:
    """Which events to list; a field left None does not narrow the list."""

    tenant_id: str | None = None  # None: every tenant (the command line only)
    action: str | None = None
    actor_kind: str | None = None
    actor_key_id: str | None = None
    target_id: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive


class AuditRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, event: AuditEvent) -> AuditEvent:
        self.session.add(event)
        self.session.flush()
        return event

    def page(self, where: EventFilter, *, limit: int,
             after: tuple[datetime, str] | None) -> list[AuditEvent]:
        """Up to `limit` events newest first, starting below the (created_at, id) `after`."""
        query = _filtered(select(AuditEvent), where)
        if after is not None:
            created, event_id = after
            query = query.where(or_(AuditEvent.created_at < created,
                                    (AuditEvent.created_at == created)
                                    & (AuditEvent.id < event_id)))
        query = query.order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
        return list(self.session.scalars(query.limit(limit)))

    def anonymise(self, tenant_id: str, replacement_tenant_id: str) -> int:
        """Move the tenant's events to `replacement_tenant_id`, without anything that
        says who acted or from where; the rows changed.

        A bulk UPDATE: the mapper's append-only guard is for objects changed through a
        session, and this is the one change that is meant.
        """
        result = cast("CursorResult[Any]", self.session.execute(
            update(AuditEvent).where(AuditEvent.tenant_id == tenant_id).values(
                tenant_id=replacement_tenant_id, actor_key_id=None, actor_user_id=None,
                client_address=None,
                request_id=None, details={})))
        return int(result.rowcount or 0)

    def anonymise_person(self, user_id: str, key_ids: list[str], target_ids: list[str],
                         erased: str) -> int:
        """Events a person did (signed in, or through one of `key_ids`, their keys) no
        longer say who, from where, or anything in their details; events done to them or
        to `target_ids` (what was theirs) name `erased` instead. The rows changed (bulk
        UPDATEs, as above; the ids go a chunk at a time, under any database's limit)."""
        by_them = [AuditEvent.actor_user_id == user_id] + [
            AuditEvent.actor_key_id.in_(chunk) for chunk in _chunks(key_ids)]
        to_them = [and_(AuditEvent.target_type == "user", AuditEvent.target_id == user_id)] + [
            AuditEvent.target_id.in_(chunk) for chunk in _chunks([*key_ids, *target_ids])]
        changed: set[str] = set()
        for which, values in (
                (to_them, {"target_id": erased, "details": {}}),
                (by_them, {"actor_key_id": None, "actor_user_id": None,
                           "client_address": None, "request_id": None, "details": {}})):
            for condition in which:
                changed.update(self.session.scalars(select(AuditEvent.id).where(condition)))
                self.session.execute(update(AuditEvent).where(condition).values(**values))
        return len(changed)


def _chunks(ids: list[str], size: int = 500) -> list[list[str]]:
    return [ids[i:i + size] for i in range(0, len(ids), size)]


def _filtered(query: Select[tuple[AuditEvent]], where: EventFilter) -> Select[tuple[AuditEvent]]:
    if where.tenant_id is not None:
        query = query.where(AuditEvent.tenant_id == where.tenant_id)
    if where.action is not None:
        query = query.where(AuditEvent.action == where.action)
    if where.actor_kind is not None:
        query = query.where(AuditEvent.actor_kind == where.actor_kind)
    if where.actor_key_id is not None:  # a key's id, or a user's
        query = query.where(or_(AuditEvent.actor_key_id == where.actor_key_id,
                                AuditEvent.actor_user_id == where.actor_key_id))
    if where.target_id is not None:
        query = query.where(AuditEvent.target_id == where.target_id)
    if where.since is not None:
        query = query.where(AuditEvent.created_at >= where.since)
    if where.until is not None:
        query = query.where(AuditEvent.created_at < where.until)
    return query
