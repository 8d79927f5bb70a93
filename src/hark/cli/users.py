"""`hark users create|list|role|disable|reset-link|erase`: the people who sign in to the page
and the API, and their role in each organisation."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from hark.audit.actor import COMMAND_LINE
from hark.cli.base import HarkTyper
from hark.cli.console import err, fail
from hark.config import get_settings
from hark.errors import HarkError, OptionError

if TYPE_CHECKING:
    from hark.db import Database

app = HarkTyper(help="People who sign in, and their roles.", no_args_is_help=True)


def _database() -> Database:
    from hark.db import open_database

    return open_database(get_settings().database)


@app.command("create")
def create(
    email: Annotated[str, typer.Argument(help="Their e-mail address (their sign-in name).")],
    org: Annotated[str, typer.Option("--org", help="The organisation (tenant).")] = "local",
    role: Annotated[str, typer.Option(help="owner, admin, member or viewer.")] = "member",
    name: Annotated[str | None, typer.Option(help="A name to show.")] = None,
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read the password from standard input (else they set "
                                 "one through `hark users reset-link`).")] = False,
) -> None:
    """Add a person; the first owner of a server is made this way."""
    from hark.accounts.service import create_user

    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
    try:
        if password_stdin and not password:
            raise OptionError("no password on standard input", field="password")
        with _database() as db, db.session(write=True) as session:
            user = create_user(session, email=email, organisation=org, role=role,
                               actor=COMMAND_LINE,
                               password=password, name=name)
            shown = {"id": user.id, "email": user.email, "organisation": org, "role": role}
    except HarkError as exc:
        fail(exc)
    typer.echo(json.dumps(shown))
    if password is None:
        err.print(f"{shown['email']} has no password yet: hark users reset-link "
                  f"{shown['email']}", markup=False)


@app.command("list")
def list_command(org: Annotated[str | None, typer.Option("--org", help="Only this "
                 "organisation.")] = None) -> None:
    """Everyone, with their organisation:role memberships."""
    from hark.accounts.service import list_users

    try:
        with _database() as db, db.session() as session:
            rows = [(u.id, u.email, u.name, role, "disabled" if u.disabled_at else "active")
                    for u, role in list_users(session, org)]
    except HarkError as exc:
        fail(exc)
    for row in rows:
        typer.echo("\t".join(row))


@app.command("role")
def role_command(
    email: Annotated[str, typer.Argument(help="Their e-mail address or id.")],
    role: Annotated[str, typer.Argument(help="owner, admin, member or viewer.")],
    org: Annotated[str, typer.Option("--org", help="The organisation.")] = "local",
) -> None:
    """Give a person a role in an organisation (making them a member if they are not)."""
    from hark.accounts.service import find_user, set_role

    try:
        with _database() as db, db.session(write=True) as session:
            user = find_user(session, email)
            set_role(session, user, org, role, actor=COMMAND_LINE)
            shown = f"{user.email}\t{org}:{role}"
    except HarkError as exc:
        fail(exc)
    typer.echo(shown)


@app.command("disable")
def disable_command(email: Annotated[str, typer.Argument(help="Their e-mail address or id.")]
                    ) -> None:
    """Stop a person signing in; their sign-ins end (within seconds on running servers)."""
    from hark.accounts.service import disable, find_user

    try:
        with _database() as db, db.session(write=True) as session:
            user = find_user(session, email)
            disable(session, user, actor=COMMAND_LINE)
            shown = user.email
    except HarkError as exc:
        fail(exc)
    typer.echo(f"disabled {shown}")


@app.command("reset-link")
def reset_link(email: Annotated[str, typer.Argument(help="Their e-mail address or id.")]
               ) -> None:
    """A one-time link (valid a day) for a person to set a new password; give it to them."""
    from hark.accounts.service import find_user
    from hark.accounts.tokens import make_reset_link

    settings = get_settings()
    try:
        with _database() as db, db.session(write=True) as session:
            token = make_reset_link(session, find_user(session, email))
    except HarkError as exc:
        fail(exc)
    base = settings.public_url or f"http://{settings.host}:{settings.port}"
    typer.echo(f"{base.rstrip('/')}/#/reset/{token}")


@app.command("erase")
def erase_command(
    email: Annotated[str, typer.Argument(help="Their e-mail address or id.")],
    yes: Annotated[bool, typer.Option("--yes", help="Really erase: this cannot be "
                   "undone.")] = False,
) -> None:
    """Erase a person: the jobs they submitted with all they stored, the voice profiles
    they enrolled, their keys and sign-ins, and the account; audit events stop naming
    them. Prints what was removed."""
    from hark.accounts.erasure import erase_person
    from hark.storage import open_storage

    if not yes:
        fail(OptionError(f"erasing {email!r} cannot be undone: add --yes", field="yes"), 2)
    try:
        with _database() as db:
            report = erase_person(db, open_storage(get_settings()), email, actor=COMMAND_LINE)
    except HarkError as exc:
        fail(exc)
    typer.echo(json.dumps(report.to_dict()))
