"""`hark orgs list|create|quota|retention|sweep|erase`: organisations (the tenants keys
belong to), their quotas and retention, and erasing one's data."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from hark.audit.actor import COMMAND_LINE
from hark.cli.base import HarkTyper
from hark.cli.console import fail
from hark.config import get_settings
from hark.errors import HarkError, OptionError

if TYPE_CHECKING:
    from hark.db import Database
    from hark.organisations.models import Organisation

app = HarkTyper(help="Organisations and their quotas.", no_args_is_help=True)
UNLIMITED = "unlimited"


def _database() -> Database:
    from hark.db import open_database

    return open_database(get_settings().database)


def _shown(organisation: Organisation) -> dict[str, object]:
    return {"id": organisation.id, "name": organisation.name,
            "audio_hours_per_month": None if organisation.quota_audio_seconds_per_month is None
            else organisation.quota_audio_seconds_per_month / 3600,
            "concurrent_jobs": organisation.quota_concurrent_jobs,
            "storage_bytes": organisation.quota_storage_bytes,
            "live_streams": organisation.quota_live_streams,
            "media_days": organisation.retention_media_days,
            "results_days": organisation.retention_results_days}


@app.command("list")
def list_command(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")]
                 = False) -> None:
    """Every organisation and its quotas (empty: not limited)."""
    from hark.organisations.service import list_organisations

    try:
        with _database() as db, db.session() as session:
            rows = [_shown(o) for o in list_organisations(session)]
    except HarkError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for row in rows:
        typer.echo("\t".join("-" if v is None else f"{v:g}" if isinstance(v, float) else str(v)
                             for v in row.values()))


@app.command("create")
def create(
    organisation: Annotated[str, typer.Argument(help="Its id: the tenant its keys name.")],
    name: Annotated[str | None, typer.Option(help="A name for people.")] = None,
) -> None:
    """Make an organisation (keys made for a new tenant make theirs too)."""
    from hark.keys.service import check_tenant
    from hark.organisations.service import ensure_organisation

    try:
        check_tenant(organisation)
        with _database() as db, db.session(write=True) as session:
            made = ensure_organisation(session, organisation)
            if name:
                made.name = " ".join(name.split())[:200]
    except HarkError as exc:
        fail(exc)
    typer.echo(organisation)


def _quota(value: str | None, name: str, scale: float = 1.0) -> tuple[bool, float | None]:
    """(given, number or None for UNLIMITED)."""
    if value is None:
        return False, None
    if value == UNLIMITED:
        return True, None
    try:
        return True, float(value) * scale
    except ValueError:
        raise OptionError(f"--{name} is a number or {UNLIMITED!r}", field=name) from None


@app.command("quota")
def quota(
    organisation: Annotated[str, typer.Argument(help="The organisation's id.")],
    audio_hours: Annotated[str | None, typer.Option(
        help="Hours of audio its jobs may take a month, or 'unlimited'.")] = None,
    concurrent_jobs: Annotated[str | None, typer.Option(
        help="Jobs queued or running at once, or 'unlimited'.")] = None,
    storage_bytes: Annotated[str | None, typer.Option(
        help="Bytes of stored recordings, or 'unlimited'.")] = None,
    live_streams: Annotated[str | None, typer.Option(
        help="Live streams at once (per API process), or 'unlimited'.")] = None,
) -> None:
    """Set an organisation's quotas; work past one is refused before it starts."""
    from hark.organisations.service import set_quotas

    try:
        changes: dict[str, float | None] = {}
        for field, value, scale in (("audio_seconds_per_month", audio_hours, 3600.0),
                                    ("concurrent_jobs", concurrent_jobs, 1.0),
                                    ("storage_bytes", storage_bytes, 1.0),
                                    ("live_streams", live_streams, 1.0)):
            given, number = _quota(value, field.replace("_", "-"), scale)
            if given:
                changes[field] = number
        with _database() as db, db.session(write=True) as session:
            shown = _shown(set_quotas(session, organisation, changes, actor=COMMAND_LINE))
    except HarkError as exc:
        fail(exc)
    typer.echo(json.dumps(shown))


KEEP = "keep"


def _days(value: str | None, name: str) -> int | bool | None:
    """False: not given; None: keep for ever; else the days."""
    if value is None:
        return False
    if value == KEEP:
        return None
    if not value.isdigit():
        raise OptionError(f"--{name} is a number of days or {KEEP!r}", field=name)
    return int(value)


@app.command("retention")
def retention(
    organisation: Annotated[str, typer.Argument(help="The organisation's id.")],
    media_days: Annotated[str | None, typer.Option(
        help="Delete a job's recording this many days after it finished (its transcript "
             "stays), or 'keep'.")] = None,
    results_days: Annotated[str | None, typer.Option(
        help="Purge a job (recording, results, edits, search index) this many days after "
             "it finished, or 'keep'.")] = None,
) -> None:
    """Set how long an organisation's jobs keep what they stored; every server applies it
    at its next sweep (HARK_RETENTION_SWEEP_SECONDS), or run `hark orgs sweep`."""
    from hark.organisations.service import set_retention

    try:
        media, results = _days(media_days, "media-days"), _days(results_days, "results-days")
        with _database() as db, db.session(write=True) as session:
            shown = _shown(set_retention(session, organisation, actor=COMMAND_LINE,
                                         media_days=media, results_days=results))
    except HarkError as exc:
        fail(exc)
    typer.echo(json.dumps(shown))


@app.command("sweep")
def sweep() -> None:
    """Apply every organisation's retention now; prints what was removed."""
    from hark.organisations.retention import sweep as run_sweep
    from hark.storage import open_storage

    try:
        with _database() as db:
            report = run_sweep(db, open_storage(get_settings()))
    except HarkError as exc:
        fail(exc)
    typer.echo(json.dumps({"media_deleted": report.media_deleted,
                           "jobs_purged": report.jobs_purged,
                           "organisations": report.organisations}))


@app.command("erase")
def erase(
    organisation: Annotated[str, typer.Argument(help="The organisation's id.")],
    yes: Annotated[bool, typer.Option("--yes", help="Really erase: this cannot be "
                   "undone.")] = False,
) -> None:
    """Erase an organisation: its jobs with their recordings, results, edits and search
    index, its upload slots, voice profiles and API keys; its audit events are
    anonymised. Prints what was removed."""
    from hark.organisations.erasure import erase_organisation
    from hark.storage import open_storage

    if not yes:
        fail(OptionError(f"erasing {organisation!r} cannot be undone: add --yes",
                         field="yes"), 2)
    try:
        with _database() as db:
            report = erase_organisation(db, open_storage(get_settings()), organisation)
    except HarkError as exc:
        fail(exc)
    typer.echo(json.dumps(report.to_dict()))
