"""Installed Whisper models: one CTranslate2 directory per model under a model directory.

    <model_dir>/
        large-v3/        config.json, model.bin, tokenizer.json, vocabulary.json, ...
        small.en/
        my-finetune/     anything placed here by hand that looks like a model counts too

Downloads land in a hidden sibling directory and are renamed into place only once
complete, so a directory named after a model is always a whole model.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import huggingface_hub
from faster_whisper.utils import _MODELS as _FASTER_WHISPER_MODELS
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils.tqdm import tqdm as _hub_tqdm
from tqdm.auto import tqdm as _auto_tqdm

from hark.errors import ModelDownloadError, ModelNotInstalledError, UnknownModelError

logger = logging.getLogger(__name__)

# faster-whisper's table is the one its own loader trusts, so following it keeps names
# in step with the installed library instead of with a copy that can drift.
WHISPER_REPOS: Mapping[str, str] = MappingProxyType(dict(_FASTER_WHISPER_MODELS))

QUALITY_ORDER: tuple[str, ...] = (
    "large-v3",
    "large",
    "large-v2",
    "large-v3-turbo",
    "turbo",
    "distil-large-v3.5",
    "distil-large-v3",
    "distil-large-v2",
    "large-v1",
    "medium",
    "medium.en",
    "distil-medium.en",
    "small",
    "small.en",
    "distil-small.en",
    "base",
    "base.en",
    "tiny",
    "tiny.en",
)

# Names faster-whisper lists twice for one repository. Aliases install under the full
# name, so pulling `large` after `large-v3` never costs a second multi-gigabyte download.
_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        alias: target
        for alias, target in {"large": "large-v3", "turbo": "large-v3-turbo"}.items()
        if alias in WHISPER_REPOS and WHISPER_REPOS.get(target) == WHISPER_REPOS[alias]
    }
)

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


@dataclass(frozen=True)
class InstalledModel:
    name: str
    path: Path
    size_bytes: int


def is_whisper_model_dir(path: Path) -> bool:
    """Whether `path` holds a CTranslate2 Whisper model faster-whisper can load."""
    if not path.is_dir():
        return False
    if not (path / "model.bin").is_file() or not (path / "config.json").is_file():
        return False
    if (path / "tokenizer.json").is_file():
        return True
    return any(p.is_file() for p in path.glob("vocabulary.*"))


def installed_models(model_dir: Path) -> list[InstalledModel]:
    """Every model directory under `model_dir`, best first; names outside QUALITY_ORDER last."""
    if not model_dir.is_dir():
        return []
    found = [
        InstalledModel(name=entry.name, path=entry, size_bytes=_tree_size(entry))
        for entry in model_dir.iterdir()
        if not entry.name.startswith(".") and is_whisper_model_dir(entry)
    ]
    return sorted(found, key=lambda m: (_quality_rank(m.name), m.name))


def best_installed(model_dir: Path) -> InstalledModel | None:
    """The highest-ranked installed model whose name Hark knows.

    Hand-placed models with other names are listed but never picked here: nothing says
    how good they are, and callers choosing a default pass the name on to places that
    only accept known names.
    """
    for model in installed_models(model_dir):
        if model.name in WHISPER_REPOS:
            return model
    return None


def resolve_whisper_model(
    name_or_path: str,
    model_dir: Path,
    *,
    allow_downloads: bool,
    endpoint: str | None = None,
) -> Path:
    """The directory to load for a model name or a local model path.

    Known names come first, so a stray `./small` in the working directory never shadows
    the installed `small`.
    """
    if name_or_path in WHISPER_REPOS:
        installed = _find_installed(name_or_path, model_dir)
        if installed is not None:
            return installed
        if not allow_downloads:
            raise ModelNotInstalledError(
                f"Model {name_or_path!r} is not installed in {model_dir}; "
                f"install it with `hark models pull {name_or_path}` or allow downloads",
                model=name_or_path,
            )
        logger.info("Model %s is not installed; downloading it", name_or_path)
        return pull(name_or_path, model_dir, endpoint=endpoint, progress=False).path

    if _is_plain_name(name_or_path) and is_whisper_model_dir(model_dir / name_or_path):
        return model_dir / name_or_path

    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if is_whisper_model_dir(path):
            return path
        raise UnknownModelError(
            f"{name_or_path} is not a CTranslate2 Whisper model directory "
            "(it needs model.bin, config.json and tokenizer.json or vocabulary.*)",
            model=name_or_path,
        )
    if not _is_plain_name(name_or_path):
        raise UnknownModelError(f"No model directory at {name_or_path}", model=name_or_path)
    raise UnknownModelError(
        f"Unknown model {name_or_path!r}; known models: {', '.join(WHISPER_REPOS)}",
        model=name_or_path,
    )


def pull(
    name: str,
    model_dir: Path,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    progress: bool = True,
    tqdm_class: type[Any] | None = None,
) -> InstalledModel:
    """Download a known model into `model_dir`; a model already installed is left as is.

    Aliases install under their full name (`large` becomes `large-v3`).
    """
    canonical = _canonical_name(name)
    repo_id = WHISPER_REPOS[canonical]
    existing = _find_installed(canonical, model_dir)
    if existing is not None:
        return InstalledModel(canonical, existing, _tree_size(existing))

    endpoint = endpoint.rstrip("/") if endpoint else None
    where = endpoint or huggingface_hub.constants.ENDPOINT
    model_dir.mkdir(parents=True, exist_ok=True)
    # Same parent as the final directory, so the closing rename cannot cross filesystems.
    staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{canonical}-", dir=model_dir))
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
            raise _download_error(exc, canonical, repo_id, where) from exc
        finally:
            # snapshot_download leaves its byte bars open; a live (rich) display would
            # keep redrawing over whatever the caller prints next.
            for bar in opened:
                bar.close()

        # Bookkeeping for resuming local_dir downloads; a finished model never resumes.
        shutil.rmtree(files / ".cache", ignore_errors=True)
        if not is_whisper_model_dir(files):
            raise ModelDownloadError(
                f"Downloading {canonical} from {where} gave no CTranslate2 Whisper model: "
                f"{repo_id} lacks model.bin, config.json or its tokenizer",
                model=canonical,
                repo_id=repo_id,
                endpoint=where,
            )
        target = _install(files, model_dir / canonical, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return InstalledModel(canonical, target, _tree_size(target))


def remove(name: str, model_dir: Path) -> Path:
    """Delete an installed model and return the directory it occupied."""
    if not _is_plain_name(name):
        raise ModelNotInstalledError(f"{name!r} is not a model name", model=name)
    found = _find_installed(name, model_dir) if name in WHISPER_REPOS else None
    if found is None and is_whisper_model_dir(model_dir / name):
        found = model_dir / name
    if found is None:
        raise ModelNotInstalledError(
            f"Model {name!r} is not installed in {model_dir}", model=name
        )
    shutil.rmtree(found)
    return found


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


def _canonical_name(name: str) -> str:
    if name not in WHISPER_REPOS:
        raise UnknownModelError(
            f"Unknown model {name!r}; known models: {', '.join(WHISPER_REPOS)}", model=name
        )
    return _ALIASES.get(name, name)


def _find_installed(name: str, model_dir: Path) -> Path | None:
    """The installed directory for a known name, whichever of its aliases it sits under."""
    canonical = _ALIASES.get(name, name)
    repo_id = WHISPER_REPOS[canonical]
    candidates = [canonical, *(n for n, r in WHISPER_REPOS.items() if r == repo_id)]
    for candidate in dict.fromkeys(candidates):
        path = model_dir / candidate
        if is_whisper_model_dir(path):
            return path
    return None


def _is_plain_name(name: str) -> bool:
    """A bare directory name: no separators, nothing hidden, nothing relative."""
    separators = [sep for sep in ("/", os.sep, os.altsep) if sep]
    return bool(name) and not name.startswith((".", "~")) and not any(
        sep in name for sep in separators
    )


def _quality_rank(name: str) -> int:
    try:
        return QUALITY_ORDER.index(name)
    except ValueError:
        return len(QUALITY_ORDER)


def _tree_size(path: Path) -> int:
    total = 0
    for root, _dirs, names in os.walk(path):
        for file_name in names:
            try:
                total += (Path(root) / file_name).stat().st_size
            except OSError:
                continue  # a dangling link counts as nothing rather than failing a listing
    return total
