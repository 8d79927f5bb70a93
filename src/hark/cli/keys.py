"""`hark keys create|list|revoke`: API keys for the HTTP API."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hark.cli.base import HarkTyper
from hark.cli.console import err, fail
from hark.config import get_settings
from hark.errors import HarkError

if TYPE_CHECKING:
    from hark.db import Database

app = HarkTyper(help="Create, list and revoke API keys.", no_args_is_help=True)


def _session_scope() -> Database:
    from hark.db import open_database

    return open_database(get_settings().database)


@app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", "-n", help="What the key is for.")] = "default",
    tenant: Annotated[str | None, typer.Option(
        "--tenant", help="Organisation (tenant) whose jobs, results and speakers the key "
                         "can reach (default: the --user's only organisation, or local).")
    ] = None,
    user: Annotated[str | None, typer.Option(
        "--user", help="E-mail or id of the person the key acts for, within their role "
                       "(default: the organisation's service account).")] = None,
    scopes: Annotated[str | None, typer.Option(
        "--scopes", help="What the key may do, comma-separated: jobs:read, jobs:write, "
                         "speakers:write, live, admin (default: all but admin).")] = None,
    max_priority: Annotated[int, typer.Option(
        help="Highest job priority the key may ask for (0: normal; up to 100).")] = 0,
    rate_limit: Annotated[str | None, typer.Option(
        help="The key's request rate, e.g. 120/minute or 10/second;5000/day, or "
             "'unlimited' (default: HARK_RATE_LIMIT).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Make a key. It is shown once: store it now; only its hash is kept."""
    from hark.accounts.service import find_user, memberships
    from hark.audit.actor import COMMAND_LINE
    from hark.keys.service import create_key

    try:
        with _session_scope() as db, db.session(write=True) as session:
            person = find_user(session, user) if user is not None else None
            if tenant is None:
                joined = memberships(session, person.id) if person is not None else []
                tenant = joined[0].organisation_id if len(joined) == 1 else "local"
            created = create_key(session, name=name, tenant_id=tenant, actor=COMMAND_LINE,
                                 max_priority=max_priority, rate_limit=rate_limit,
                                 scopes=scopes, user_id=person.id if person else None)
            key = created.key
            info: dict[str, Any] = {"id": key.id, "name": key.name, "tenant": key.tenant_id,
                                    "user": person.email if person else None,
                                    "scopes": sorted(key.scope_set),
                                    "max_priority": key.max_priority,
                                    "rate_limit": key.rate_limit, "key": created.secret,
                                    "webhook_secret": key.webhook_secret}
    except HarkError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(info))
        return
    holder = f"{info['user']} in {info['tenant']}" if info["user"] else \
        f"tenant {info['tenant']}"
    err.print(f"Created key {info['id']} ({info['name']}) for {holder}, scopes "
              f"{' '.join(info['scopes'])}. It is shown only now:", markup=False)
    typer.echo(info["key"])
    err.print(f"Webhooks of this key are signed with: {info['webhook_secret']}", markup=False)


@app.command("list")
def list_command(
    include_revoked: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
) -> None:
    """Show keys (never the keys themselves: their first characters, to tell them apart)."""
    from hark.keys.service import list_keys

    try:
        with _session_scope() as db, db.session() as session:
            rows = [(k.id, k.prefix + "…", k.tenant_id, k.name,
                     k.created_at.strftime("%Y-%m-%d %H:%M"),
                     "revoked" if k.revoked_at else "active", k.rate_limit or "default rate",
                     ",".join(sorted(k.scope_set)))
                    for k in list_keys(session, include_revoked=include_revoked)]
    except HarkError as exc:
        fail(exc)
    if not rows:
        err.print("No API keys. Create one with: hark keys create", markup=False)
        return
    for row in rows:
        typer.echo("\t".join(row))


@app.command("revoke")
def revoke(
    key: Annotated[str, typer.Argument(help="The key's id, or its shown prefix.")],
) -> None:
    """Revoke a key; requests with it are refused from then on (within seconds)."""
    from hark.audit.actor import COMMAND_LINE
    from hark.keys.service import revoke_key

    try:
        with _session_scope() as db, db.session(write=True) as session:
            revoked = revoke_key(session, key, actor=COMMAND_LINE)
            key_id = revoked.id
    except HarkError as exc:
        fail(exc)
    typer.echo(f"Revoked {key_id}")


@app.command("rate")
def rate(
    key: Annotated[str, typer.Argument(help="The key's id, or its shown prefix.")],
    rate_limit: Annotated[str | None, typer.Argument(
        help="Requests allowed, e.g. 120/minute, or 'unlimited'; omit for the server's "
             "HARK_RATE_LIMIT.")] = None,
) -> None:
    """Give a key its own request rate (running servers apply it within seconds)."""
    from hark.audit.actor import COMMAND_LINE
    from hark.keys.service import set_rate_limit

    try:
        with _session_scope() as db, db.session(write=True) as session:
            changed = set_rate_limit(session, key, rate_limit, actor=COMMAND_LINE)
            shown = (changed.id, changed.rate_limit or "the server's rate")
    except HarkError as exc:
        fail(exc)
    typer.echo(f"{shown[0]}: {shown[1]}")
