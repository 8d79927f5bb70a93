"""What a Whisper model directory on disk is, shared by every model source."""

from __future__ import annotations

import json
import os
from pathlib import Path

# Written into a directory Hark installed: where the model came from.
SOURCE_FILE = ".hark-source.json"


def is_whisper_model_dir(path: Path) -> bool:
    """Whether `path` holds a CTranslate2 Whisper model faster-whisper can load."""
    if not path.is_dir():
        return False
    if not (path / "model.bin").is_file() or not (path / "config.json").is_file():
        return False
    if (path / "tokenizer.json").is_file():
        return True
    return any(p.is_file() for p in path.glob("vocabulary.*"))


def read_source(path: Path) -> dict[str, object]:
    """The record Hark left in a model directory it installed; empty for other folders."""
    try:
        source = json.loads((path / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return source if isinstance(source, dict) else {}


def tree_size(path: Path) -> int:
    """Bytes of the files under `path`, not counting hidden ones (Hark's own notes)."""
    total = 0
    for root, _dirs, names in os.walk(path):
        for file_name in names:
            if file_name.startswith("."):
                continue
            try:
                total += (Path(root) / file_name).stat().st_size
            except OSError:
                continue  # a dangling link counts as nothing rather than failing a listing
    return total
