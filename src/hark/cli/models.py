"""`hark models list|pull|rm`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from hark.cli.console import err, fail
from hark.config import get_settings
from hark.errors import HarkError
from hark.pipeline import model_store
from hark.pipeline.engines.select import POCKETSPHINX, resolve_model

app = typer.Typer(help="Install, list and remove Whisper models.", no_args_is_help=True)


@app.command("list")
def list_models(
    available: Annotated[bool, typer.Option("--available", help="Also list models that "
                         "can be pulled.")] = False,
) -> None:
    """List installed models (and, with --available, every model that can be pulled)."""
    settings = get_settings()
    installed = {m.name: m for m in model_store.installed_models(settings.models_path)}
    default = resolve_model(None, settings)
    table = Table("model", "installed", "size", "default", box=None)
    table.add_row(POCKETSPHINX, "bundled", "-", "*" if default == POCKETSPHINX else "")
    names = list(installed)
    if available:
        names += [n for n in model_store.WHISPER_REPOS if n not in installed]
    for name in names:
        model = installed.get(name)
        table.add_row(
            name,
            "yes" if model else "no",
            f"{model.size_bytes / 1e6:.0f} MB" if model else "-",
            "*" if name == default else "",
        )
    typer.echo(f"Model directory: {settings.models_path}")
    from rich.console import Console

    Console(highlight=False).print(table)


@app.command("pull")
def pull(name: Annotated[str, typer.Argument(help="A Whisper model, e.g. small or large-v3.")]
         ) -> None:
    """Download a Whisper model into HARK_MODEL_DIR."""
    from tqdm.rich import tqdm as rich_tqdm

    settings = get_settings()
    try:
        model = model_store.pull(name, settings.models_path, endpoint=settings.hf_endpoint,
                                 tqdm_class=rich_tqdm if err.is_terminal else None,
                                 progress=err.is_terminal)
    except HarkError as exc:
        fail(exc)
    typer.echo(f"Installed {model.name} ({model.size_bytes / 1e6:.0f} MB) at {model.path}")


@app.command("rm")
def remove(name: Annotated[str, typer.Argument(help="An installed model.")]) -> None:
    """Remove an installed model."""
    settings = get_settings()
    try:
        path = model_store.remove(name, settings.models_path)
    except HarkError as exc:
        fail(exc)
    typer.echo(f"Removed {name} from {path}")
