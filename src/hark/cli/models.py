"""`hark models list|pull|rm`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from hark.cli.base import HarkTyper
from hark.cli.console import err, fail
from hark.config import get_settings
from hark.errors import HarkError
from hark.pipeline import model_store
from hark.pipeline.engines.select import POCKETSPHINX, resolve_model

app = HarkTyper(help="Install, list and remove Whisper models.", no_args_is_help=True)


@app.command("list")
def list_models(
    available: Annotated[bool, typer.Option("--available", help="Also list models that "
                         "can be pulled from a model hub.")] = False,
) -> None:
    """List the models that work offline: where each comes from, its size and languages."""
    settings = get_settings()
    installed = {m.name: m for m in model_store.installed_models(
        settings.models_path, packages=settings.model_packages)}
    default = resolve_model(None, settings)
    english = resolve_model(None, settings, language="en")
    table = Table("model", "source", "size", "languages", "default", "path", box=None)
    table.add_row(POCKETSPHINX, "bundled", "-", "en", _default_mark(
        POCKETSPHINX, default, english), "-")
    for model in installed.values():
        source = f"package {model.package}" if model.source == "package" and model.package \
            else model.source
        table.add_row(model.name, escape(source), f"{model.size_bytes / 1e6:.0f} MB",
                      model.languages, _default_mark(model.name, default, english),
                      escape(str(model.path)))
    if available:
        for name in model_store.WHISPER_REPOS:
            if name not in installed:
                table.add_row(name, "hub (not installed)", "-",
                              "en" if name.endswith(".en") else "99 languages", "", "-")
    typer.echo(f"Model directory: {settings.models_path}")
    from rich.console import Console

    Console(highlight=False, width=200).print(table)


def _default_mark(name: str, default: str, english: str) -> str:
    if name == default and name == english:
        return "*"
    if name == default:
        return "* (language detected)"
    return "* (English)" if name == english else ""


@app.command("pull")
def pull(name: Annotated[str, typer.Argument(help="A Whisper model, e.g. small or large-v3.")]
         ) -> None:
    """Install a Whisper model: from its model package when installed (no download),
    else from the model hub into HARK_MODEL_DIR."""
    from tqdm.rich import tqdm as rich_tqdm

    settings = get_settings()
    try:
        model = model_store.pull(name, settings.models_path, endpoint=settings.hf_endpoint,
                                 tqdm_class=rich_tqdm if err.is_terminal else None,
                                 progress=err.is_terminal, packages=settings.model_packages)
    except HarkError as exc:
        fail(exc)
    origin = f" from {model.package}" if model.package else ""
    typer.echo(f"Installed {model.name} ({model.size_bytes / 1e6:.0f} MB){origin} "
               f"at {model.path}")


@app.command("rm")
def remove(name: Annotated[str, typer.Argument(help="An installed model.")]) -> None:
    """Remove an installed model."""
    settings = get_settings()
    try:
        path = model_store.remove(name, settings.models_path)
    except HarkError as exc:
        fail(exc)
    typer.echo(f"Removed {name} from {path}")
