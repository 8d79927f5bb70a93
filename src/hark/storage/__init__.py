"""File storage for uploaded media and results, behind one small interface.

`open_storage` picks the backend from `HARK_STORAGE_URL`: unset, a plain path or a
`file://` URL is a local folder (embedded mode); `s3://bucket/prefix` is object
storage (scaled mode).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hark.errors import MissingDependencyError, OptionError
from hark.storage.base import ObjectWriter, Storage, StorageObjectMissing, validate_key
from hark.storage.local import LocalObjectWriter, LocalStorage

if TYPE_CHECKING:
    from hark.config import Settings

__all__ = [
    "LocalObjectWriter",
    "LocalStorage",
    "ObjectWriter",
    "Storage",
    "StorageObjectMissing",
    "open_storage",
    "validate_key",
]


def open_storage(settings: Settings) -> Storage:
    """The storage named by `settings.storage_url` (a local folder by default)."""
    url = settings.storage_url
    if url and url.lower().startswith("s3://"):
        # Imported here: boto3 is an optional extra, needed only in scaled mode.
        try:
            from hark.storage.s3 import S3Storage
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in ("boto3", "botocore", "s3transfer"):
                raise MissingDependencyError("boto3", extra="s3") from exc
            raise
        return S3Storage.from_settings(settings)
    if url and "://" in url and not url.startswith("file://"):
        scheme = url.split("://", 1)[0]
        raise OptionError(
            f"Unsupported storage URL scheme {scheme!r}: use a folder path, file:// or s3://",
            field="storage_url",
        )
    return LocalStorage(settings.storage_path)
