"""Model size classes: small (tiny, base, small, pocketsphinx), medium, large.

Large models (large-*, turbo, distil-large-*) need gigabytes each, so a process
keeps at most one of them loaded; the job service routes each class to its own
queue so an operator can give each class its own workers.
"""

from __future__ import annotations

from pathlib import Path

SMALL, MEDIUM, LARGE = "small", "medium", "large"
_WHISPER_PREFIX = "faster-whisper/"
# Local model directories are classed by the size of their weights.
_LOCAL_SMALL_BYTES = 600 * 1024**2
_LOCAL_MEDIUM_BYTES = 1600 * 1024**2


def size_class(model: str) -> str:
    """The size class of a concrete model name (after `auto` was resolved)."""
    name = model.removeprefix(_WHISPER_PREFIX).strip().lower()
    if name.startswith("pocketsphinx"):
        return SMALL
    base = name.split("/")[-1]
    if base.startswith(("tiny", "base", "small", "distil-small")):
        return SMALL
    if base.startswith(("medium", "distil-medium")):
        return MEDIUM
    if base.startswith(("large", "turbo", "distil-large")):
        return LARGE
    weights = Path(model) / "model.bin"
    if weights.is_file():
        size = weights.stat().st_size
        return SMALL if size < _LOCAL_SMALL_BYTES else (
            MEDIUM if size < _LOCAL_MEDIUM_BYTES else LARGE)
    return MEDIUM
