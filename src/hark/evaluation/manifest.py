"""JSONL manifests: one JSON object per line, paths relative to the manifest's folder
or its parent (as in the shared corpus)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hark.errors import ManifestError

T = TypeVar("T")


def read_rows(path: Path, build: Callable[[dict[str, Any]], T]) -> list[T]:
    """`build` each line's object; any malformed line fails with its line number."""
    if not path.is_file():
        raise ManifestError(f"manifest {path} does not exist", field="manifest")
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append(build(json.loads(line)))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as exc:
            raise ManifestError(f"{path}:{number}: not a valid manifest line ({exc})",
                                line=number) from exc
    return items


def find_file(manifest: Path, relative: str) -> Path:
    folder = manifest.parent
    for base in (folder, folder.parent):
        if (base / relative).exists():
            return base / relative
    return folder / relative
