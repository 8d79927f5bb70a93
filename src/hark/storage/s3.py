"""Storage in an S3-compatible bucket (scaled mode): AWS S3, MinIO, Ceph, R2, ...

`HARK_STORAGE_URL=s3://bucket/optional/prefix` names the bucket and a key prefix;
`HARK_S3_ENDPOINT_URL` points at a non-AWS server and `HARK_S3_REGION` sets the region.
Credentials come from boto3's usual chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
a profile, an instance or pod role), never from Hark's settings.

Writes are streamed as multipart uploads in fixed-size parts, so memory stays bounded
whatever the object size, and S3 makes the object visible only when the upload is
completed: that is the atomic `commit` the Storage protocol promises.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from hark.errors import OptionError, StorageError
from hark.storage.base import READ_CHUNK_BYTES, StorageObjectMissing, validate_key

if TYPE_CHECKING:
    from hark.config import Settings

# Every part but the last must be at least 5 MiB (an S3 rule); 8 MiB parts keep a
# writer's memory at about one part while allowing objects up to 80 GB (10,000 parts).
PART_SIZE = 8 * 1024 * 1024
# delete_objects accepts at most 1000 keys per request.
_DELETE_BATCH = 1000
# Error codes S3 and compatible servers use for "no such object" (HEAD has no body, so
# only the status code is left there).
_MISSING_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
# Downloads for local_path: ranged GETs in parallel for big media files.
_DOWNLOAD_CONFIG = TransferConfig(
    multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE, max_concurrency=4
)


def parse_s3_url(url: str) -> tuple[str, str]:
    """Split `s3://bucket/optional/prefix` into (bucket, prefix without slashes)."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "s3" or not parts.netloc:
        raise OptionError(
            f"Invalid S3 storage URL {url!r}: expected s3://bucket/optional/prefix",
            field="storage_url",
        )
    if parts.query or parts.fragment:
        raise OptionError(
            f"Invalid S3 storage URL {url!r}: no query or fragment allowed", field="storage_url"
        )
    prefix = parts.path.strip("/")
    if prefix:
        try:
            validate_key(prefix)
        except ValueError:
            raise OptionError(
                f"Invalid key prefix in S3 storage URL {url!r}", field="storage_url"
            ) from None
    return parts.netloc, prefix


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _is_missing(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and _error_code(exc) in _MISSING_CODES


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '') or exc}"
    return str(exc) or type(exc).__name__


@contextmanager
def s3_errors(action: str, subject: str, *, missing: bool = False,
              **details: str) -> Iterator[None]:
    """The one place S3's and botocore's errors become Hark's: StorageError saying what
    could not be done to what (or StorageObjectMissing, when `missing` is asked for and
    the object is not there)."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        if missing and _is_missing(exc):
            raise StorageObjectMissing(f"No stored object {subject!r}",
                                       **details) from None
        raise StorageError(f"Cannot {action} {subject!r}: {_describe(exc)}",
                           **details) from exc


class S3ObjectWriter:
    """Streams one object as a multipart upload; small objects become one PUT.

    The multipart upload is created lazily when the first full part is ready, so an
    object smaller than a part costs a single request and an aborted small write
    costs none.
    """

    def __init__(self, client: Any, bucket: str, object_key: str, key: str) -> None:
        self.key = key
        self.size = 0
        self._client = client
        self._bucket = bucket
        self._object_key = object_key
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._closed = False
        self._committed = False

    @contextmanager
    def _aborting(self, action: str) -> Iterator[None]:
        try:
            with s3_errors(action, self.key, key=self.key):
                yield
        except StorageError:
            self.abort()
            raise

    def _upload_part(self, data: bytes) -> None:
        with self._aborting("write stored object"):
            if self._upload_id is None:
                created = self._client.create_multipart_upload(
                    Bucket=self._bucket, Key=self._object_key
                )
                self._upload_id = str(created["UploadId"])
            number = len(self._parts) + 1
            answer = self._client.upload_part(
                Bucket=self._bucket,
                Key=self._object_key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=data,
            )
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def write(self, data: bytes) -> None:
        if self._closed:
            raise ValueError(f"Writer for {self.key!r} is already closed")
        self._buffer += data
        self.size += len(data)
        # Ship full parts as soon as they exist: memory stays at about one part.
        while len(self._buffer) >= PART_SIZE:
            part = bytes(self._buffer[:PART_SIZE])
            del self._buffer[:PART_SIZE]
            self._upload_part(part)

    def commit(self) -> None:
        if self._closed:
            if self._committed:
                return
            raise ValueError(f"Writer for {self.key!r} was aborted; it cannot be committed")
        if self._upload_id is None:
            with self._aborting("store stored object"):
                self._client.put_object(
                    Bucket=self._bucket, Key=self._object_key, Body=bytes(self._buffer)
                )
        else:
            if self._buffer:
                # The last part may be smaller than PART_SIZE (S3 allows that).
                self._upload_part(bytes(self._buffer))
            with self._aborting("store stored object"):
                self._client.complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=self._object_key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )
        self._buffer = bytearray()
        self._closed = True
        self._committed = True

    def abort(self) -> None:
        if self._committed:
            return
        self._closed = True
        self._buffer = bytearray()
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is not None:
            # Best effort: aborting must never mask the error that caused it. A bucket
            # lifecycle rule (AbortIncompleteMultipartUpload) catches what is left.
            with suppress(ClientError, BotoCoreError):
                self._client.abort_multipart_upload(
                    Bucket=self._bucket, Key=self._object_key, UploadId=upload_id
                )

    def __enter__(self) -> S3ObjectWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._committed:
            self.abort()


class S3Storage:
    """Objects in `bucket` under `prefix`; one thread-safe boto3 client per instance."""

    name = "s3"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_pool_connections: int = 32,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        config = Config(
            retries={"max_attempts": 5, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max_pool_connections,
            signature_version="s3v4",
            # Custom endpoints (MinIO in compose, a server on an IP) rarely resolve
            # bucket.<host> names: address buckets by path there.
            s3={"addressing_style": "path" if endpoint_url else "auto"},
        )
        # A session is not thread-safe but the client made from it is: make the
        # client once, here, and share it between all threads using this storage.
        session = boto3.session.Session()
        self._client: Any = session.client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Storage:
        bucket, prefix = parse_s3_url(settings.storage_url or "")
        return cls(bucket, prefix, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region)

    def __repr__(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        return f"S3Storage({where!r})"

    @property
    def client(self) -> Any:
        """The underlying boto3 S3 client (thread-safe)."""
        return self._client

    def object_key(self, key: str) -> str:
        """The S3 key that holds (or would hold) the object under `key`."""
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def writer(self, key: str) -> S3ObjectWriter:
        return S3ObjectWriter(self._client, self.bucket, self.object_key(key), key)

    def put_bytes(self, key: str, data: bytes) -> None:
        with self.writer(key) as writer:
            writer.write(data)
            writer.commit()

    def get_bytes(self, key: str) -> bytes:
        with s3_errors("read stored object", key, missing=True, key=key):
            answer = self._client.get_object(Bucket=self.bucket, Key=self.object_key(key))
            return bytes(answer["Body"].read())

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def size(self, key: str) -> int | None:
        try:
            with s3_errors("inspect stored object", key, missing=True, key=key):
                answer = self._client.head_object(Bucket=self.bucket,
                                                  Key=self.object_key(key))
        except StorageObjectMissing:
            return None
        return int(answer["ContentLength"])

    @contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        object_key = self.object_key(key)
        # Keep the key's extension: FFmpeg probes better when it knows the container.
        suffix = PurePosixPath(key).suffix
        if len(suffix) > 16:
            suffix = ""
        fd, name = tempfile.mkstemp(prefix="hark-s3-", suffix=suffix)
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as file:
                try:
                    with s3_errors("download stored object", key, missing=True, key=key):
                        self._client.download_fileobj(
                            self.bucket, object_key, file, Config=_DOWNLOAD_CONFIG
                        )
                except OSError as exc:  # the temp folder is full or unwritable
                    raise StorageError(
                        f"Cannot download stored object {key!r} to {path}: {exc}", key=key
                    ) from exc
            yield path
        finally:
            with suppress(OSError):
                path.unlink(missing_ok=True)

    def read_range(self, key: str, first: int, last: int) -> Iterator[bytes]:
        if last < first:  # an empty range has no HTTP spelling
            return
        with s3_errors("read stored object", key, missing=True, key=key):
            answer = self._client.get_object(Bucket=self.bucket, Key=self.object_key(key),
                                             Range=f"bytes={first}-{last}")
            body = answer["Body"]
            with closing(body):
                yield from body.iter_chunks(READ_CHUNK_BYTES)

    def _list(self, object_prefix: str) -> Iterator[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=object_prefix):
            for item in page.get("Contents", []):
                yield str(item["Key"])

    def delete_prefix(self, prefix: str) -> int:
        exact = self.object_key(prefix.rstrip("/"))
        under = exact + "/"
        deleted = 0
        with s3_errors("delete stored objects under", prefix, prefix=prefix):
            # One listing serves both the exact key and its subtree; a sibling that
            # merely shares the leading characters ("results/j10" for "results/j1")
            # is filtered out here.
            batch: list[str] = []
            for object_key in self._list(exact):
                if object_key != exact and not object_key.startswith(under):
                    continue
                batch.append(object_key)
                if len(batch) == _DELETE_BATCH:
                    deleted += self._delete_batch(batch, prefix)
                    batch = []
            if batch:
                deleted += self._delete_batch(batch, prefix)
        return deleted

    def _delete_batch(self, object_keys: list[str], prefix: str) -> int:
        answer = self._client.delete_objects(
            Bucket=self.bucket,
            Delete={"Objects": [{"Key": k} for k in object_keys], "Quiet": True},
        )
        errors = answer.get("Errors") or []
        if errors:
            first = errors[0]
            raise StorageError(
                f"Cannot delete {len(errors)} stored object(s) under {prefix!r}: "
                f"{first.get('Key')}: {first.get('Code')} {first.get('Message', '')}".rstrip(),
                prefix=prefix,
            )
        return len(object_keys)

    def check_writable(self) -> None:
        # A segment starting with '.' is never a valid key, so the probe cannot clash
        # with (or be listed as) a real object.
        probe = f".hark-probe-{secrets.token_hex(8)}"
        object_key = f"{self.prefix}/{probe}" if self.prefix else probe
        with s3_errors("write to the S3 bucket", self.bucket):
            self._client.put_object(Bucket=self.bucket, Key=object_key, Body=b"ok")
            self._client.delete_object(Bucket=self.bucket, Key=object_key)

    def presigned_put(self, key: str, *, size: int, expires_seconds: int) -> str | None:
        """A URL a client can `PUT` exactly `size` bytes to, valid for `expires_seconds`.

        Content-Length is part of the signature, so S3 refuses a body of another size.
        The URL points at `endpoint_url`, which must therefore be reachable by clients.
        """
        with s3_errors("sign an upload URL for", key, key=key):
            url = self._client.generate_presigned_url(
                "put_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": self.object_key(key),
                    "ContentLength": size,
                },
                ExpiresIn=expires_seconds,
                HttpMethod="PUT",
            )
        return str(url)
