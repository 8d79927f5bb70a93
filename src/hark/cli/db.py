"""`hark db upgrade|current`."""

from __future__ import annotations

from typing import Annotated

import typer

from hark.cli.base import HarkTyper
from hark.cli.console import err, fail
from hark.config import get_settings
from hark.errors import HarkError

app = HarkTyper(help="Manage the database schema (SQLite file or PostgreSQL).",
                  no_args_is_help=True)


@app.command("upgrade")
def upgrade_command(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply schema migrations (Hark also does this itself when it first needs the database)."""
    from hark.db import current_revision, display_url, upgrade

    url = get_settings().database
    try:
        before = current_revision(url)
        after = upgrade(url, revision)
    except HarkError as exc:
        fail(exc)
    err.print(f"Database: {display_url(url)}", markup=False)
    if before == after:
        typer.echo(f"Already at revision {after}")
    else:
        typer.echo(f"Upgraded from {before or 'an empty database'} to revision {after}")


@app.command("current")
def current_command() -> None:
    """Show the database's schema revision and whether it is up to date."""
    from hark.db import current_revision, display_url, head_revision

    url = get_settings().database
    try:
        current = current_revision(url)
    except HarkError as exc:
        fail(exc)
    head = head_revision()
    err.print(f"Database: {display_url(url)}", markup=False)
    if current is None:
        typer.echo(f"empty (newest revision: {head}; run `hark db upgrade`)")
    elif current == head:
        typer.echo(f"{current} (head)")
    else:
        typer.echo(f"{current} (newest revision: {head}; run `hark db upgrade`)")
