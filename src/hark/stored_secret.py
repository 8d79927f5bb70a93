"""Secrets a server makes for itself when none is configured: made once, by whichever
process is first, and kept (mode 0600) in the data directory. API replicas that do not
share a data directory need the matching setting instead, with one value for all."""

from __future__ import annotations

import contextlib
import os
import secrets
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=16)
def stored_secret(data_dir: Path, name: str) -> str:
    """The secret kept in `data_dir/name`, made on first use."""
    path = Path(data_dir) / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_urlsafe(32))
        try:
            # A hard link appears whole or not at all, and never replaces a secret that
            # another process put there first.
            with contextlib.suppress(FileExistsError):
                os.link(draft, path)
        finally:
            draft.unlink()
    return path.read_text().strip()
