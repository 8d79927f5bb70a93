"""Shared terminal output: messages and errors go to stderr, results to stdout."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from hark.errors import HarkError

err = Console(stderr=True, highlight=False, soft_wrap=True)


def error_line(error: BaseException, subject: str | None = None) -> str:
    where = f"{subject}: " if subject else ""
    if isinstance(error, HarkError):
        return f"error: {where}{error.message} [{error.code}]"
    return f"error: {where}{type(error).__name__}: {error}"


def fail(error: BaseException, code: int = 1) -> NoReturn:
    err.print(error_line(error), markup=False)
    raise typer.Exit(code)
