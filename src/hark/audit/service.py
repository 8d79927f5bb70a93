"""Recording audit events and reading them back.

`record` is called by the services whose actions are audited, with the session of
that action: it only adds the event to the transaction, so the event is committed
with the action or rolled back with it, never one without the other. Listing pages
newest first with an opaque cursor, like the job list. Functions take the session
first and never commit.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from hark.audit.actor import Actor
from hark.audit.models import ACTIONS, ACTOR_KINDS, AuditEvent, TargetType
from hark.audit.repository import AuditRepository, EventFilter
from hark.errors import OptionError

MAX_PAGE = 500
# Where the events of an erased organisation go. Tenant ids cannot hold parentheses, so
# no organisation can ever be this one.
ERASED_TENANT = "(erased)"


def record(session: Session, actor: Actor, *, tenant_id: str, action: str,
           target_type: TargetType, target_id: str,
           details: dict[str, Any] | None = None) -> AuditEvent:
    """Add the event of `action` to the session's transaction."""
    # A new action must be listed in ACTIONS, or nobody could filter by it.
    assert action in ACTIONS, action
    return AuditRepository(session).add(AuditEvent(
        tenant_id=tenant_id, actor_kind=actor.kind, actor_key_id=actor.api_key_id,
        actor_user_id=actor.user_id,
        action=action, target_type=target_type, target_id=target_id,
        client_address=actor.client_address, request_id=actor.request_id,
        details=dict(details or {})))


def anonymise_tenant(session: Session, tenant_id: str) -> int:
    """For erasing an organisation: its events stay (something was done, to what, when,
    by what kind of actor) but no longer say whose they were, which key acted, from
    which address, or anything in their details. Returns how many events changed."""
    return AuditRepository(session).anonymise(tenant_id, ERASED_TENANT)


def anonymise_person(session: Session, user_id: str, key_ids: list[str],
                     target_ids: list[str]) -> int:
    """For erasing a person: the events they did, or that were done to them or to what
    was theirs (`target_ids`: jobs, voice profiles), stay without saying who they were.
    Returns how many events changed."""
    return AuditRepository(session).anonymise_person(user_id, key_ids, target_ids,
                                                     ERASED_TENANT)


def event_filter(*, tenant_id: str | None, action: str | None = None,
                 actor: str | None = None, target_id: str | None = None,
                 since: str | None = None, until: str | None = None) -> EventFilter:
    """The filter that the API's and the command's options describe, checked: a bad
    value raises OptionError naming its option.

    `actor` is an API key's id or one of the actor kinds (`anonymous`, `cli`, ...).
    """
    if action is not None and action not in ACTIONS:
        raise OptionError(f"unknown action {action!r}; one of: {', '.join(ACTIONS)}",
                          field="action", allowed=list(ACTIONS))
    start = parse_time(since, "since") if since is not None else None
    end = parse_time(until, "until") if until is not None else None
    if start is not None and end is not None and start >= end:
        raise OptionError("until must be later than since", field="until")
    is_kind = actor is not None and actor in ACTOR_KINDS
    return EventFilter(tenant_id=tenant_id, action=action,
                       actor_kind=actor if is_kind else None,
                       actor_key_id=actor if not is_kind else None,
                       target_id=target_id, since=start, until=end)


def parse_time(value: str, field: str) -> datetime:
    """An ISO 8601 date or time; one without a UTC offset is taken as UTC."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise OptionError(f"{field} must be an ISO 8601 date or time, such as "
                          f"2026-12-01T09:30:00Z; got {value!r}", field=field) from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def list_events(session: Session, where: EventFilter, *, limit: int,
                cursor: str | None = None) -> tuple[list[AuditEvent], str | None]:
    """A page of events newest first, and the cursor of the next page (None: the last)."""
    if not 1 <= limit <= MAX_PAGE:
        raise OptionError(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    events = AuditRepository(session).page(
        where, limit=limit + 1, after=decode_cursor(cursor) if cursor else None)
    more = len(events) > limit
    events = events[:limit]
    return events, encode_cursor(events[-1]) if more and events else None


def encode_cursor(event: AuditEvent) -> str:
    raw = json.dumps([event.created_at.isoformat(), event.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, event_id = json.loads(raw)
        moment = datetime.fromisoformat(created)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise OptionError("cursor is not one this API returned", field="cursor") from exc
    if moment.tzinfo is None:
        raise OptionError("cursor is not one this API returned", field="cursor")
    return moment, str(event_id)
