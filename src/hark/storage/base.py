"""The storage interface: where uploaded media and results live.

Embedded mode keeps objects in a local folder (`LocalStorage`); the scaled mode puts
them in S3-compatible object storage. The service only ever talks to `Storage`, so
swapping one for the other changes no service code.

Keys are '/'-separated relative strings such as "media/<job_id>/source" or
"results/<job_id>/transcript.json". They are made by the service, never taken from a
client verbatim, so a bad key is a programming error (ValueError); I/O failures are
`StorageError` (503) and a key with no object is `StorageObjectMissing` (404).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from hark.errors import NotFoundError

# Marks an object still being written. A key may not contain it, so a half-written
# file can never be mistaken for an object (and `sweep_partials` never removes one).
PARTIAL_MARKER = ".part-"
# The unit in which `read_range` hands out bytes.
READ_CHUNK_BYTES = 256 * 1024


class StorageObjectMissing(NotFoundError):
    """No object is stored under the key."""

    code = "OBJECT_NOT_FOUND"


class ObjectWriter(Protocol):
    """Streams one object into storage; nothing is visible under the key until `commit`.

    Use it as a context manager: leaving the block without `commit` (normally or by an
    exception) aborts, so a failed upload never leaves a half-written object behind.
    """

    size: int
    """Bytes written so far."""

    def write(self, data: bytes) -> None: ...

    def commit(self) -> None:
        """Make the object visible under its key, atomically (all bytes or none)."""
        ...

    def abort(self) -> None:
        """Discard everything written. Safe to call twice; a no-op after `commit`."""
        ...

    def __enter__(self) -> ObjectWriter: ...

    def __exit__(self, *exc_info: object) -> None: ...


class Storage(Protocol):
    name: str
    """"local" or "s3"."""

    def writer(self, key: str) -> ObjectWriter: ...

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def get_bytes(self, key: str) -> bytes:
        """The object's content; `StorageObjectMissing` if there is none."""
        ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int | None:
        """The object's size in bytes, or None if there is no object."""
        ...

    def local_path(self, key: str) -> AbstractContextManager[Path]:
        """A readable local file holding the object, valid inside the `with` block.

        Local storage yields the stored file itself (do not modify or delete it); S3
        yields a temporary download removed on exit. `StorageObjectMissing` if absent.
        """
        ...

    def read_range(self, key: str, first: int, last: int) -> Iterator[bytes]:
        """Bytes `first`..`last` (inclusive) of the object, in chunks, read as iterated.

        Serves seeking media players without fetching the whole object first.
        `StorageObjectMissing` (from the first iteration) if there is no object.
        """
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete the object at `prefix` and every object under `prefix + "/"`.

        Returns the number of objects deleted. Used to purge a job's audio and results.
        """
        ...

    def check_writable(self) -> None:
        """Raise `StorageError` unless an object can be written now (for /health/ready)."""
        ...

    def presigned_put(self, key: str, *, size: int, expires_seconds: int) -> str | None:
        """A URL a client may `PUT` exactly `size` bytes to, creating the object `key`.

        Valid for `expires_seconds`. None where the storage cannot presign (local: the
        service then offers its own upload URL instead).
        """
        ...


def validate_key(key: str) -> str:
    """Return `key` unchanged if it is a well-formed storage key, else raise ValueError.

    Well-formed: non-empty, relative, '/'-separated, no empty segments, no segment that
    starts with '.' (which rules out '.', '..' and hidden files), no backslash or NUL,
    and no partial-file marker.
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"Storage key must be a non-empty string, got {key!r}")
    if "\\" in key or "\x00" in key:
        raise ValueError(f"Storage key may not contain backslashes or NUL: {key!r}")
    if PARTIAL_MARKER in key:
        raise ValueError(f"Storage key may not contain {PARTIAL_MARKER!r}: {key!r}")
    for segment in key.split("/"):
        if not segment:
            raise ValueError(f"Storage key must be relative with no empty segments: {key!r}")
        if segment.startswith("."):
            raise ValueError(f"Storage key segments may not start with '.': {key!r}")
    return key
