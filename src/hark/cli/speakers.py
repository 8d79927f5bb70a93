"""`hark speakers enroll|list|rm`: the voice profiles used by `--identify-speakers`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hark.cli.base import HarkTyper
from hark.cli.console import err, error_line, fail
from hark.config import get_settings
from hark.errors import HarkError

if TYPE_CHECKING:
    from hark.db import Database

# The database layer is imported inside the commands: it costs every other `hark`
# command half a second of start-up otherwise.

app = HarkTyper(help="Enrol, list and remove voice profiles for speaker identification.",
                  no_args_is_help=True)

Tenant = Annotated[str | None, typer.Option(
    "--tenant", show_default=False,
    help="Tenant the profiles belong to (default: the local tenant).")]
MIN_SPEECH_SECONDS = 3  # hark.speakers.service.MIN_SPEECH_SECONDS, for the help text


def _open() -> Database:
    from hark.db import open_database

    try:
        return open_database(get_settings().database)
    except HarkError as exc:
        fail(exc)


def _tenant(tenant: str | None) -> str:
    from hark.db import DEFAULT_TENANT_ID

    return tenant or DEFAULT_TENANT_ID


@app.command("enroll")
def enroll(
    name: Annotated[str, typer.Argument(help="The person's name, as transcripts will show it.")],
    files: Annotated[list[Path], typer.Argument(help="Recordings of this person alone, "
                     f"each with at least {MIN_SPEECH_SECONDS} s of speech.")],
    tenant: Tenant = None,
) -> None:
    """Enrol a voice: one sample per file; an existing NAME gains the new samples.

    If any file fails, nothing is stored.
    """
    from hark.audit.actor import COMMAND_LINE
    from hark.pipeline.diarization.select import diarizer_cache
    from hark.speakers import service
    from hark.speakers.embedding import sample_from_recording
    from hark.speakers.service import NewSample

    settings = get_settings()
    try:
        name = service.validate_name(name)
    except HarkError as exc:
        fail(exc, code=2)
    with _open() as database:
        samples: list[NewSample] = []
        failed = False
        try:
            for path in files:
                try:
                    samples.append(sample_from_recording(path, settings))
                except (HarkError, OSError) as exc:
                    err.print(error_line(exc, str(path)), markup=False)
                    failed = True
        finally:
            diarizer_cache(settings).clear()
        if failed:
            err.print(f"Nothing enrolled for {name}.", markup=False)
            raise typer.Exit(1)
        try:
            with database.session(write=True) as session:
                profile = service.enroll(session, _tenant(tenant), name, samples,
                                         actor=COMMAND_LINE)
        except HarkError as exc:
            fail(exc)
    typer.echo(f"Enrolled {profile.name}: profile {profile.id}, {profile.sample_count} "
               f"sample{'s' if profile.sample_count != 1 else ''}, "
               f"{profile.speech_seconds:.1f} s of speech")


@app.command("list")
def list_profiles(tenant: Tenant = None) -> None:
    """List enrolled voice profiles."""
    from rich.console import Console
    from rich.table import Table

    from hark.speakers import service

    with _open() as database:
        try:
            with database.session() as session:
                profiles = service.list_profiles(session, _tenant(tenant))
        except HarkError as exc:
            fail(exc)
    if not profiles:
        err.print("No voice profiles; add one with `hark speakers enroll NAME FILE…`.",
                  markup=False)
        return
    table = Table(box=None)
    table.add_column("id", no_wrap=True, min_width=36)
    table.add_column("name")
    table.add_column("samples", justify="right")
    table.add_column("speech", justify="right", no_wrap=True)
    table.add_column("created", no_wrap=True)
    for p in profiles:
        table.add_row(p.id, p.name, str(p.sample_count), f"{p.speech_seconds:.1f} s",
                      p.created_at.astimezone().strftime("%Y-%m-%d %H:%M"))
    Console(highlight=False).print(table)


@app.command("rm")
def remove(
    profile: Annotated[str, typer.Argument(metavar="ID_OR_NAME",
                       help="A profile's id or name.")],
    tenant: Tenant = None,
) -> None:
    """Remove a voice profile and its samples."""
    from hark.audit.actor import COMMAND_LINE
    from hark.speakers import service

    with _open() as database:
        try:
            with database.session(write=True) as session:
                removed = service.delete_profile(session, _tenant(tenant), profile,
                                                 actor=COMMAND_LINE)
        except HarkError as exc:
            fail(exc)
    typer.echo(f"Removed {removed.name} ({removed.id})")
