"""Storage in a local folder (embedded mode).

An object is written to `<root>/<key>.part-<random>` and renamed onto `<root>/<key>`
on commit, after an fsync, so a reader sees either the whole object or none, and a
crash mid-write leaves only a `.part-` file, which `sweep_partials` removes later.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from hark.errors import StorageError
from hark.storage.base import (
    PARTIAL_MARKER,
    READ_CHUNK_BYTES,
    StorageObjectMissing,
    validate_key,
)

# Small writes (network chunks are often a few KiB) are gathered into fewer syscalls.
_WRITE_BUFFER_BYTES = 256 * 1024


def _describe(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _fsync_dir(path: Path) -> None:
    """Persist a rename: the directory entry must reach the disk too."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # not supported here (e.g. some network file systems); best effort
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _prune_empty_dirs(start: Path, root: Path) -> None:
    """Remove `start` and its parents while they are empty, stopping below `root`."""
    current = start
    while current != root and root in current.parents:
        try:
            current.rmdir()
        except OSError:
            return  # not empty (or already gone, or in use): stop climbing
        current = current.parent


class LocalObjectWriter:
    """Writes one object to a partial file; `commit` renames it into place."""

    def __init__(self, key: str, final_path: Path, root: Path | None = None) -> None:
        self.key = key
        self.size = 0
        self._final = final_path
        self._root = root
        self._part = final_path.with_name(
            f"{final_path.name}{PARTIAL_MARKER}{secrets.token_hex(8)}"
        )
        self._file: BinaryIO | None = self._open()
        self._committed = False

    def _open(self) -> BinaryIO:
        # A concurrent delete_prefix may remove the (empty) parent between mkdir and
        # open; one retry covers that race.
        for attempt in range(2):
            try:
                self._final.parent.mkdir(parents=True, exist_ok=True)
                return open(self._part, "xb", buffering=_WRITE_BUFFER_BYTES)
            except FileNotFoundError:
                if attempt:
                    raise StorageError(
                        f"Cannot create stored object {self.key!r}: its folder keeps vanishing",
                        key=self.key,
                    ) from None
            except OSError as exc:
                raise StorageError(
                    f"Cannot create stored object {self.key!r}: {_describe(exc)}", key=self.key
                ) from exc
        raise AssertionError("unreachable")

    def write(self, data: bytes) -> None:
        file = self._file
        if file is None:
            raise ValueError(f"Writer for {self.key!r} is already closed")
        try:
            file.write(data)
        except OSError as exc:
            self.abort()
            raise StorageError(
                f"Cannot write stored object {self.key!r}: {_describe(exc)}", key=self.key
            ) from exc
        self.size += len(data)

    def commit(self) -> None:
        file = self._file
        if file is None:
            if self._committed:
                return
            raise ValueError(f"Writer for {self.key!r} was aborted; it cannot be committed")
        try:
            file.flush()
            os.fsync(file.fileno())
            file.close()
            self._file = None
            os.replace(self._part, self._final)
        except OSError as exc:
            self.abort()
            raise StorageError(
                f"Cannot store object {self.key!r}: {_describe(exc)}", key=self.key
            ) from exc
        self._committed = True
        _fsync_dir(self._final.parent)

    def abort(self) -> None:
        if self._committed:
            return
        file, self._file = self._file, None
        # Failures here are ignored: the data is being discarded anyway, a file that
        # cannot be unlinked is left for sweep_partials, and aborting must never mask
        # the error that caused it.
        if file is not None:
            with suppress(OSError):
                file.close()
        with suppress(OSError):
            self._part.unlink(missing_ok=True)
        if self._root is not None:
            # The folders made for this object must not outlive it (a refused upload
            # leaves nothing behind); a folder another object lives in is not empty.
            _prune_empty_dirs(self._final.parent, self._root)

    def __enter__(self) -> LocalObjectWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._committed:
            self.abort()


class LocalStorage:
    """Objects as files under `root`; parent folders are created on demand."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def path_for(self, key: str) -> Path:
        """The file that holds (or would hold) the object under `key`."""
        return self.root.joinpath(*validate_key(key).split("/"))

    def writer(self, key: str) -> LocalObjectWriter:
        return LocalObjectWriter(key, self.path_for(key), self.root)

    def put_bytes(self, key: str, data: bytes) -> None:
        with self.writer(key) as writer:
            writer.write(data)
            writer.commit()

    def get_bytes(self, key: str) -> bytes:
        path = self.path_for(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise StorageObjectMissing(f"No stored object {key!r}", key=key) from None
        except OSError as exc:
            raise StorageError(
                f"Cannot read stored object {key!r}: {_describe(exc)}", key=key
            ) from exc

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def size(self, key: str) -> int | None:
        path = self.path_for(key)
        try:
            info = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StorageError(
                f"Cannot inspect stored object {key!r}: {_describe(exc)}", key=key
            ) from exc
        return info.st_size if stat.S_ISREG(info.st_mode) else None

    @contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        path = self.path_for(key)
        if not path.is_file():
            raise StorageObjectMissing(f"No stored object {key!r}", key=key)
        yield path

    def read_range(self, key: str, first: int, last: int) -> Iterator[bytes]:
        path = self.path_for(key)
        try:
            handle = path.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise StorageObjectMissing(f"No stored object {key!r}", key=key) from None
        with handle:
            handle.seek(first)
            remaining = last - first + 1
            while remaining > 0:
                chunk = handle.read(min(READ_CHUNK_BYTES, remaining))
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk

    def delete_prefix(self, prefix: str) -> int:
        path = self.path_for(prefix.rstrip("/"))
        deleted = 0
        try:
            if path.is_dir():
                deleted = sum(
                    1
                    for _, _, files in os.walk(path)
                    for name in files
                    if PARTIAL_MARKER not in name
                )
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
                deleted = 1
        except FileNotFoundError:
            pass  # removed concurrently: the goal is reached
        except OSError as exc:
            raise StorageError(
                f"Cannot delete stored objects under {prefix!r}: {_describe(exc)}", prefix=prefix
            ) from exc
        _prune_empty_dirs(path.parent, self.root)
        return deleted

    def check_writable(self) -> None:
        probe = self.root / f".probe{PARTIAL_MARKER}{secrets.token_hex(8)}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(probe, "xb") as file:
                file.write(b"ok")
                file.flush()
                os.fsync(file.fileno())
            probe.unlink()
        except OSError as exc:
            # The error a full disk gives is worth naming plainly in /health/ready.
            reason = "disk full" if exc.errno == errno.ENOSPC else _describe(exc)
            raise StorageError(f"Storage folder {self.root} is not writable: {reason}") from exc

    def presigned_put(self, key: str, *, size: int, expires_seconds: int) -> str | None:
        return None  # a folder cannot presign: the service offers its own upload URL

    def sweep_partials(self, older_than_seconds: float) -> int:
        """Remove partial files older than the given age (left by crashed writes).

        The age must exceed the longest plausible upload so live writes are spared.
        Returns the number of files removed.
        """
        cutoff = time.time() - older_than_seconds
        removed = 0
        emptied: set[Path] = set()
        for dirpath, _, files in os.walk(self.root):
            for name in files:
                if PARTIAL_MARKER not in name:
                    continue
                path = Path(dirpath) / name
                try:
                    if path.stat().st_mtime >= cutoff:
                        continue
                    path.unlink()
                except FileNotFoundError:
                    continue  # committed or aborted meanwhile
                except OSError as exc:
                    raise StorageError(
                        f"Cannot remove partial file {path}: {_describe(exc)}"
                    ) from exc
                removed += 1
                emptied.add(path.parent)
        for folder in emptied:
            _prune_empty_dirs(folder, self.root)
        return removed
