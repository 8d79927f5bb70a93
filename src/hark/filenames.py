"""Names of the files people send, made safe to keep and to show, and errors about them.

Stored media lives under keys Hark chooses (`media/<job>/source`), so a message from the
pipeline names that file; `about_file` puts the person's own file name back.
"""

from __future__ import annotations

import unicodedata
from typing import TypeVar

from hark.errors import HarkError

MAX_BYTES = 255
# An extension longer than this is taken as part of the name, not kept whole.
_MAX_EXTENSION = 16

E = TypeVar("E", bound=HarkError)


def clean_filename(name: str, default: str = "upload") -> str:
    """A bare, printable file name of at most 255 bytes: no directories, control
    characters or leading dots; a long name loses the end of its stem, never its
    extension."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = name.strip().lstrip(".").strip()
    if len(name.encode("utf-8")) > MAX_BYTES:
        stem, dot, extension = name.rpartition(".")
        if not dot or not stem or len(extension) > _MAX_EXTENSION:
            stem, dot, extension = name, "", ""
        while stem and len(f"{stem}{dot}{extension}".encode()) > MAX_BYTES:
            stem = stem[:-1]
        name = f"{stem.rstrip()}{dot}{extension}"
    return name or default


def about_file(exc: E, stored_name: str, shown_name: str, **details: object) -> E:
    """The same error, naming the person's file instead of the stored one, without the
    server's paths."""
    message = exc.message.replace(repr(stored_name), repr(shown_name))
    if message.startswith(stored_name + " "):
        message = shown_name + message[len(stored_name):]
    kept = {k: v for k, v in exc.details.items() if k != "path"}
    kept.update(details)
    relabelled = type(exc)(message, **kept)
    relabelled.__cause__ = exc
    return relabelled
