"""Downloading a Whisper model from a model hub (Hugging Face or a mirror).

Downloads land in a hidden staging directory beside the target and are renamed into
place only once complete, so a directory named after a model is always a whole model.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import huggingface_hub
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils.tqdm import tqdm as _hub_tqdm
from tqdm.auto import tqdm as _auto_tqdm

from hark.errors import ModelDownloadError
from hark.pipeline.model_files import SOURCE_FILE, is_whisper_model_dir

# What faster-whisper's own downloader fetches: enough for CTranslate2 and the tokenizer,
# none of the PyTorch or safetensors weights some of these repositories also carry.
MODEL_FILE_PATTERNS: tuple[str, ...] = (
    "config.json",
    "preprocessor_config.json",
    "model.bin",
    "tokenizer.json",
    "vocabulary.*",
)

_STAGING_PREFIX = ".pull-"


def download(
    name: str,
    repo_id: str,
    target: Path,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    progress: bool = True,
    tqdm_class: type[Any] | None = None,
) -> Path:
    """Fetch `repo_id`'s CTranslate2 files into `target` (its parent is created)."""
    endpoint = endpoint.rstrip("/") if endpoint else None
    where = endpoint or huggingface_hub.constants.ENDPOINT
    # The hub client's telemetry asks huggingface.co itself (whatever endpoint a
    # download names) for a registry to describe its caller: a self-hosted service
    # sends nothing beyond the download, and nothing to a host it was not pointed at.
    huggingface_hub.constants.HF_HUB_DISABLE_TELEMETRY = True
    target.parent.mkdir(parents=True, exist_ok=True)
    # Same parent as the final directory, so the closing rename cannot cross filesystems.
    staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{name}-", dir=target.parent))
    bars, opened = _tracked(tqdm_class if progress else _SilentTqdm)
    try:
        files = staging / "model"
        try:
            huggingface_hub.snapshot_download(
                repo_id=repo_id,
                local_dir=files,
                # A private cache keeps the user's Hugging Face cache untouched and goes
                # away with the staging directory.
                cache_dir=staging / "hub-cache",
                endpoint=endpoint,
                token=token,
                allow_patterns=list(MODEL_FILE_PATTERNS),
                tqdm_class=bars,
                library_name="hark",
            )
        except _DOWNLOAD_ERRORS as exc:
            raise _download_error(exc, name, repo_id, where) from exc
        finally:
            # snapshot_download leaves its byte bars open; a live (rich) display would
            # keep redrawing over whatever the caller prints next.
            for bar in opened:
                bar.close()

        # Bookkeeping for resuming local_dir downloads; a finished model never resumes.
        shutil.rmtree(files / ".cache", ignore_errors=True)
        if not is_whisper_model_dir(files):
            raise ModelDownloadError(
                f"Downloading {name} from {where} gave no CTranslate2 Whisper model: "
                f"{repo_id} lacks model.bin, config.json or its tokenizer",
                model=name,
                repo_id=repo_id,
                endpoint=where,
            )
        (files / SOURCE_FILE).write_text(json.dumps(
            {"source": "hub", "repo_id": repo_id, "endpoint": where}, indent=2))
        return _install(files, target, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _tracked(tqdm_class: type[Any] | None) -> tuple[type[Any], list[Any]]:
    """A subclass of `tqdm_class` that remembers its bars, so they can all be closed."""
    opened: list[Any] = []
    base = tqdm_class if tqdm_class is not None else _hub_tqdm  # the library's own default

    class Tracked(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            opened.append(self)

    Tracked.__name__ = Tracked.__qualname__ = base.__name__
    return Tracked, opened


class _SilentTqdm(_auto_tqdm):
    """A bar that never draws, for callers that asked for no progress output."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.pop("name", None)
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)


def _transport_errors() -> tuple[type[BaseException], ...]:
    # huggingface_hub lets the HTTP client's own errors escape mid-download, and that
    # client changed between releases (requests, then httpx, then httpx2).
    found: list[type[BaseException]] = []
    for module_name, attribute in (
        ("httpx2", "HTTPError"),
        ("httpx", "HTTPError"),
        ("requests", "RequestException"),
    ):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        error = getattr(module, attribute, None)
        if isinstance(error, type) and issubclass(error, BaseException):
            found.append(error)
    return tuple(found)


_TRANSPORT_ERRORS = _transport_errors()
# OSError also covers the library's own failures (size mismatch, missing metadata) and a
# full disk; HfHubHTTPError and LocalEntryNotFoundError are both OSErrors.
_DOWNLOAD_ERRORS: tuple[type[BaseException], ...] = (OSError, *_TRANSPORT_ERRORS)


def _download_error(
    exc: BaseException, name: str, repo_id: str, endpoint: str
) -> ModelDownloadError:
    details: dict[str, Any] = {"model": name, "repo_id": repo_id, "endpoint": endpoint}
    prefix = f"Could not download {name} ({repo_id})"
    if isinstance(exc, RepositoryNotFoundError):
        return ModelDownloadError(
            f"{prefix}: {endpoint} has no such repository, or it needs a token", **details
        )
    if isinstance(exc, RevisionNotFoundError):
        return ModelDownloadError(f"{prefix}: {endpoint} has no main revision of it", **details)

    cause = _root_cause(exc)
    if isinstance(cause, OfflineModeIsEnabled):
        return ModelDownloadError(
            f"{prefix}: downloads are disabled because HF_HUB_OFFLINE is set", **details
        )
    if isinstance(exc, HfHubHTTPError):
        status = _status_of(exc)
        return ModelDownloadError(
            f"{prefix}: the model hub at {endpoint} answered HTTP {status}",
            status=status,
            **details,
        )
    # The library reports an unreachable hub as "not in the local cache", with the
    # network error as its cause.
    if isinstance(exc, (LocalEntryNotFoundError, *_TRANSPORT_ERRORS)):
        return ModelDownloadError(
            f"{prefix}: the model hub at {endpoint} could not be reached ({_one_line(cause)})",
            **details,
        )
    return ModelDownloadError(f"{prefix} from {endpoint}: {_one_line(exc)}", **details)


def _root_cause(exc: BaseException) -> BaseException:
    seen = {id(exc)}
    while exc.__cause__ is not None and id(exc.__cause__) not in seen:
        exc = exc.__cause__
        seen.add(id(exc))
    return exc


def _status_of(exc: HfHubHTTPError) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, HfHubHTTPError) and _status_of(exc) is not None:
        return f"HTTP {_status_of(exc)}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _install(files: Path, target: Path, staging: Path) -> Path:
    """Move a complete download to `target`, atomically from any reader's point of view."""
    displaced: Path | None = None
    if target.exists() or target.is_symlink():
        if is_whisper_model_dir(target):
            return target  # another pull finished first
        # A damaged install under this name; it is replaced only now that its
        # successor is whole, and moved aside first so the swap stays one rename.
        displaced = staging / "displaced"
        os.replace(target, displaced)
    try:
        os.replace(files, target)
    except OSError:
        if is_whisper_model_dir(target):
            return target  # lost a race with a concurrent pull of the same model
        if displaced is not None and not target.exists():
            os.replace(displaced, target)
        raise
    return target


