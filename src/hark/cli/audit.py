"""`hark audit list`: the audit log, read from this server's database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from hark.cli.base import HarkTyper
from hark.cli.console import err, fail
from hark.config import get_settings
from hark.errors import HarkError

if TYPE_CHECKING:
    from hark.audit.models import AuditEvent

app = HarkTyper(help="Read the audit log: who created, revoked, downloaded or removed what.",
                no_args_is_help=True)

MAX_LIMIT = 500  # hark.audit.service.MAX_PAGE, without importing the database layer


@app.command("list")
def list_command(
    tenant: Annotated[str | None, typer.Option(
        "--tenant", show_default=False, help="Only this tenant's events (default: all).")
    ] = None,
    action: Annotated[str | None, typer.Option(
        "--action", show_default=False, help="Only this action, such as job.purged.")] = None,
    actor: Annotated[str | None, typer.Option(
        "--actor", show_default=False,
        help="Only this API key's id, or one kind of actor: anonymous, link or cli.")
    ] = None,
    target: Annotated[str | None, typer.Option(
        "--target", show_default=False, help="Only events about this job, key or voice id.")
    ] = None,
    since: Annotated[str | None, typer.Option(
        "--since", show_default=False,
        help="ISO 8601 date or time: events at or after it (no offset: UTC).")] = None,
    until: Annotated[str | None, typer.Option(
        "--until", show_default=False, help="ISO 8601 date or time: events before it.")
    ] = None,
    limit: Annotated[int, typer.Option(
        "--limit", min=1, max=MAX_LIMIT, help="The most events to show, newest first.")
    ] = 50,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object per line, as the API's export.")] = False,
) -> None:
    """Show recorded events, newest first."""
    from hark.audit import service
    from hark.audit.schemas import AuditEventOut
    from hark.db import open_database

    try:
        where = service.event_filter(tenant_id=tenant, action=action, actor=actor,
                                     target_id=target, since=since, until=until)
    except HarkError as exc:
        fail(exc, code=2)
    try:
        with open_database(get_settings().database) as db, db.session() as session:
            events, _ = service.list_events(session, where, limit=limit)
            if as_json:
                lines = [AuditEventOut.of(event).model_dump_json() for event in events]
            else:
                lines = ["\t".join(_columns(event)) for event in events]
    except HarkError as exc:
        fail(exc)
    if not lines:
        err.print("No audit events match.", markup=False)
        return
    for line in lines:
        typer.echo(line)


def _columns(event: AuditEvent) -> tuple[str, ...]:
    acted = event.actor_key_id or event.actor_user_id
    who = f"{event.actor_kind}:{acted}" if acted else event.actor_kind
    return (event.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"), event.tenant_id, event.action,
            f"{event.target_type}:{event.target_id}", who, event.client_address or "-")
