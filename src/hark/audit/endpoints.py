"""The audit API: `GET /api/v1/audit`, for an organisation's admins and for operators
(HARK_OPERATOR_TENANTS).

An admin (a signed-in owner or admin, or a key with the admin scope) sees their own
organisation's events; an operator also another tenant's with `?tenant=`. Anyone else
is refused (403). Pages come newest first with a cursor, like
the job list; `?format=jsonl` (or `Accept: application/x-ndjson`) streams every
matching event instead, one JSON object per line, read from the database a batch at
a time so that no transaction stays open while a slow client reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from hark.api.auth import require_principal
from hark.api.openapi import ERRORS
from hark.api.state import Principal, State
from hark.audit import service
from hark.audit.repository import EventFilter
from hark.audit.schemas import AuditEventOut, AuditPage
from hark.db import Database
from hark.errors import OperatorOnlyError

router = APIRouter(prefix="/api/v1", tags=["operations"], responses=ERRORS)


async def require_audit_reader(request: Request) -> Principal:
    principal = await require_principal(request)
    admin = principal.role in ("owner", "admin") or (
        principal.scopes is not None and "admin" in principal.scopes)
    if not admin and not _is_operator(request, principal):
        raise OperatorOnlyError("the audit log is for the organisation's admins and for "
                                "operators (HARK_OPERATOR_TENANTS)",
                                tenant=principal.tenant_id)
    return principal


def _is_operator(request: Request, principal: Principal) -> bool:
    return principal.tenant_id in request.app.state.hark.settings.operator_tenants


AuditReader = Annotated[Principal, Depends(require_audit_reader)]

JSON_LINES = "application/x-ndjson"
DEFAULT_PAGE = 50
_TEXT = Annotated[str | None, Query(min_length=1, max_length=64)]

# FastAPI documents the JSON page; the export's content type is added here.
_EXPORT: dict[int | str, dict[str, Any]] = {200: {
    "description": "A page of events; with format=jsonl, every matching event as one "
                   "JSON object per line",
    "content": {JSON_LINES: {"schema": {"type": "string"}}}}}


@router.get("/audit", response_model=AuditPage, responses=_EXPORT,
            summary="The audit log: who did what and when, newest first (admins, operators)")
def list_audit_events(
    request: Request, principal: AuditReader, state: State,
    tenant: Annotated[str | None, Query(
        min_length=1, max_length=64,
        description="Another tenant's events, for operators (default: the caller's "
                    "own).")] = None,
    action: Annotated[str | None, Query(
        min_length=1, max_length=64, description="Only this action, such as job.purged.")
    ] = None,
    actor: Annotated[str | None, Query(
        min_length=1, max_length=64,
        description="Only this API key's id, or one actor kind (anonymous, link, cli).")
    ] = None,
    target_id: _TEXT = None,
    since: Annotated[str | None, Query(
        min_length=1, max_length=64,
        description="ISO 8601; events at or after it (no offset: UTC).")] = None,
    until: Annotated[str | None, Query(
        min_length=1, max_length=64, description="ISO 8601; events before it.")] = None,
    limit: Annotated[int | None, Query(
        ge=1, le=service.MAX_PAGE,
        description=f"Events per page (default {DEFAULT_PAGE}); with format=jsonl, the "
                    "most to export (default: all).")] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    format: Annotated[Literal["json", "jsonl"] | None, Query()] = None,
) -> Response:
    if tenant not in (None, principal.tenant_id) and not _is_operator(request, principal):
        raise OperatorOnlyError("another organisation's events are for operators "
                                "(HARK_OPERATOR_TENANTS)", tenant=principal.tenant_id)
    where = service.event_filter(tenant_id=tenant or principal.tenant_id, action=action,
                                 actor=actor, target_id=target_id, since=since, until=until)
    if cursor is not None:
        service.decode_cursor(cursor)  # refused now: once streaming, no error can be sent
    if _wants_lines(format, request.headers.get("accept")):
        return StreamingResponse(export_lines(state.db, where, limit=limit, cursor=cursor),
                                 media_type=JSON_LINES)
    with state.db.session() as session:
        events, next_cursor = service.list_events(session, where, limit=limit or DEFAULT_PAGE,
                                                  cursor=cursor)
        page = AuditPage(items=[AuditEventOut.of(e) for e in events], next_cursor=next_cursor)
    return Response(page.model_dump_json(), media_type="application/json")


def export_lines(db: Database, where: EventFilter, *, limit: int | None,
                 cursor: str | None) -> Iterator[bytes]:
    """Every matching event (at most `limit`) as JSON lines, one batch per transaction."""
    remaining = limit
    while remaining is None or remaining > 0:
        batch = service.MAX_PAGE if remaining is None else min(service.MAX_PAGE, remaining)
        with db.session() as session:
            events, cursor = service.list_events(session, where, limit=batch, cursor=cursor)
            lines = [AuditEventOut.of(event).model_dump_json() + "\n" for event in events]
        if lines:
            yield "".join(lines).encode()
        if cursor is None:
            return
        if remaining is not None:
            remaining -= len(events)


def _wants_lines(format: str | None, accept: str | None) -> bool:
    if format is not None:
        return format == "jsonl"
    types = {part.split(";", 1)[0].strip().lower() for part in (accept or "").split(",")}
    return JSON_LINES in types
