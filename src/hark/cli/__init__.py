"""The `hark` command."""

from __future__ import annotations

import typer

from hark import __version__
from hark.cli import (
    audit,
    db,
    evaluate,
    keys,
    live,
    models,
    orgs,
    serve,
    speakers,
    transcribe,
    users,
    worker,
)
from hark.cli.base import HarkTyper

app = HarkTyper(
    name="hark",
    help="Self-hosted speech-to-text: transcripts with word timestamps, language and speakers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("transcribe")(transcribe.transcribe)
app.command("demo")(transcribe.demo)
app.command("live")(live.live)
app.command("eval")(evaluate.evaluate)
app.add_typer(models.app, name="models")
app.add_typer(speakers.app, name="speakers")
app.add_typer(db.app, name="db")
app.add_typer(keys.app, name="keys")
app.add_typer(orgs.app, name="orgs")
app.add_typer(users.app, name="users")
app.add_typer(audit.app, name="audit")
app.command("serve")(serve.serve)
app.command("worker")(worker.worker)


@app.command("version")
def version() -> None:
    """Print Hark's version."""
    typer.echo(__version__)


def main() -> None:
    app()
