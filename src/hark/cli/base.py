"""What every `hark` command shares: help without type noise.

Typer prints each parameter's Python type (`<str>`, `<bool>`, `<list[Path]>`) beside
it. Here a flag shows nothing there, a value option shows its name in capitals
(`--model MODEL`) and an argument its name, the way Unix tools write them.
"""

from __future__ import annotations

from typing import Any

import typer
from typer import _click
from typer.core import TyperArgument, TyperCommand, TyperOption


class _PlainArgument(TyperArgument):
    def display_type_rich(self, ctx: _click.Context) -> str | None:
        return None


class HarkCommand(TyperCommand):
    def get_params(self, ctx: _click.Context) -> list[_click.Parameter]:
        params = super().get_params(ctx)
        for param in params:
            if isinstance(param, TyperOption) and param.metavar is None:
                param.metavar = "" if param.is_flag else (param.name or "value").upper()
            elif isinstance(param, TyperArgument) and not isinstance(param, _PlainArgument):
                param.__class__ = _PlainArgument
                if param.metavar is None:
                    param.metavar = (param.name or "value").upper()
        return params


class HarkTyper(typer.Typer):
    """A Typer app whose commands are HarkCommands."""

    def command(self, name: str | None = None, *, cls: type[TyperCommand] | None = None,
                **kwargs: Any) -> Any:
        return super().command(name, cls=cls or HarkCommand, **kwargs)
