"""S3Storage against a real S3-protocol server (moto's server mode on 127.0.0.1).

Multipart streaming and atomic commit, aborts, reads, temporary downloads, purges,
prefixes, presigned uploads, health probes and `open_storage` selection.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from hark.config import Settings
from hark.errors import MissingDependencyError, OptionError, StorageError
from hark.storage import LocalStorage, StorageObjectMissing, open_storage
from tests.support.s3 import MotoS3Server, require_s3_modules, s3_server_fixture

require_s3_modules()  # before the S3 module, which needs boto3

from hark.storage.base import READ_CHUNK_BYTES  # noqa: E402
from hark.storage.s3 import PART_SIZE, S3Storage, parse_s3_url  # noqa: E402

# Every test here talks to moto's S3 server, which the module starts.
pytestmark = [pytest.mark.services]

BUCKET = "hark-storage-tests"


@pytest.fixture(scope="module")
def s3_server() -> Iterator[MotoS3Server]:
    yield from s3_server_fixture()


@pytest.fixture(scope="module")
def raw(s3_server: MotoS3Server) -> Any:
    """A plain boto3 client, to inspect the bucket behind the storage's back."""
    client = s3_server.client()
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def storage(s3_server: MotoS3Server, raw: Any) -> S3Storage:
    # Each test gets its own prefix: moto's state is shared by the whole module.
    return S3Storage(BUCKET, f"t-{secrets.token_hex(4)}", endpoint_url=s3_server.endpoint_url)


def stored_keys(raw: Any, prefix: str) -> list[str]:
    paginator = raw.get_paginator("list_objects_v2")
    return sorted(
        item["Key"]
        for page in paginator.paginate(Bucket=BUCKET, Prefix=prefix + "/")
        for item in page.get("Contents", [])
    )


def open_uploads(raw: Any, prefix: str) -> list[str]:
    answer = raw.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix + "/")
    return [upload["Key"] for upload in answer.get("Uploads", [])]


def test_small_object_round_trip(storage: S3Storage, raw: Any) -> None:
    writer = storage.writer("media/j1/source")
    writer.write(b"hello ")
    writer.write(b"world")
    assert writer.size == 11
    assert not storage.exists("media/j1/source")
    assert storage.size("media/j1/source") is None
    assert open_uploads(raw, storage.prefix) == []  # small: no multipart upload at all

    writer.commit()
    assert storage.get_bytes("media/j1/source") == b"hello world"
    assert storage.size("media/j1/source") == 11
    assert storage.exists("media/j1/source")
    assert stored_keys(raw, storage.prefix) == [f"{storage.prefix}/media/j1/source"]
    writer.commit()  # idempotent
    writer.abort()  # a no-op after commit
    assert storage.get_bytes("media/j1/source") == b"hello world"
    with pytest.raises(ValueError):
        writer.write(b"more")

    # An empty object is an object.
    with storage.writer("results/j1/empty.txt") as empty:
        empty.commit()
    assert storage.get_bytes("results/j1/empty.txt") == b""
    assert storage.size("results/j1/empty.txt") == 0


def test_large_object_is_streamed_in_parts_and_visible_only_after_commit(
    storage: S3Storage, raw: Any
) -> None:
    data = os.urandom(2 * PART_SIZE + 12345)
    key = "media/big/source.wav"
    object_key = f"{storage.prefix}/{key}"
    with storage.writer(key) as writer:
        for start in range(0, len(data), 1_000_003):  # odd chunks straddle part edges
            writer.write(data[start : start + 1_000_003])
            # Bounded memory: never more than one part waits in the buffer.
            assert len(writer._buffer) < PART_SIZE
        assert writer.size == len(data)
        # Two full parts were uploaded, yet nothing is visible under the key.
        assert open_uploads(raw, storage.prefix) == [object_key]
        assert not storage.exists(key)
        with pytest.raises(StorageObjectMissing):
            storage.get_bytes(key)
        writer.commit()

    assert storage.get_bytes(key) == data
    assert storage.size(key) == len(data)
    # A multipart ETag ends in "-<number of parts>": 2 full parts plus the tail.
    assert raw.head_object(Bucket=BUCKET, Key=object_key)["ETag"].strip('"').endswith("-3")
    assert open_uploads(raw, storage.prefix) == []


def test_exact_multiple_of_the_part_size(storage: S3Storage) -> None:
    data = os.urandom(PART_SIZE)
    with storage.writer("media/exact/source") as writer:
        writer.write(data)
        writer.commit()
    assert storage.get_bytes("media/exact/source") == data


def test_abort_leaves_nothing(storage: S3Storage, raw: Any) -> None:
    writer = storage.writer("media/j2/source")
    writer.write(os.urandom(PART_SIZE + 10))
    assert len(open_uploads(raw, storage.prefix)) == 1
    writer.abort()
    writer.abort()  # safe twice
    assert open_uploads(raw, storage.prefix) == []
    assert stored_keys(raw, storage.prefix) == []
    assert not storage.exists("media/j2/source")
    with pytest.raises(ValueError):
        writer.commit()
    with pytest.raises(ValueError):
        writer.write(b"x")


def test_with_block_aborts_on_exception_or_missing_commit(storage: S3Storage, raw: Any) -> None:
    with pytest.raises(RuntimeError), storage.writer("media/j3/source") as writer:
        writer.write(os.urandom(PART_SIZE + 1))
        raise RuntimeError("client went away")
    with storage.writer("media/j4/source") as writer:
        writer.write(b"never committed")
    assert open_uploads(raw, storage.prefix) == []
    assert stored_keys(raw, storage.prefix) == []


def test_commit_replaces_an_existing_object(storage: S3Storage) -> None:
    storage.put_bytes("results/j/transcript.json", b"old")
    with storage.writer("results/j/transcript.json") as writer:
        writer.write(b"new content")
        assert storage.get_bytes("results/j/transcript.json") == b"old"
        writer.commit()
    assert storage.get_bytes("results/j/transcript.json") == b"new content"


def test_missing_objects(storage: S3Storage) -> None:
    assert not storage.exists("media/none/source")
    assert storage.size("media/none/source") is None
    with pytest.raises(StorageObjectMissing) as caught:
        storage.get_bytes("media/none/source")
    assert caught.value.details == {"key": "media/none/source"}
    assert caught.value.status_code == 404
    with pytest.raises(StorageObjectMissing), storage.local_path("media/none/source.wav"):
        pass


def test_invalid_keys_are_refused(storage: S3Storage) -> None:
    for key in ("", "../x", "/abs", "a//b", "a/.hidden", "a\\b"):
        with pytest.raises(ValueError):
            storage.put_bytes(key, b"x")
        with pytest.raises(ValueError):
            storage.exists(key)


def test_local_path_is_a_temporary_download(storage: S3Storage) -> None:
    data = os.urandom(PART_SIZE + 999)  # big enough for a ranged, parallel download
    storage.put_bytes("media/j5/call.m4a", data)
    with storage.local_path("media/j5/call.m4a") as path:
        assert path.suffix == ".m4a"  # FFmpeg keeps its container hint
        assert path.parent == Path(tempfile.gettempdir())
        assert path.read_bytes() == data
    assert not path.exists()

    storage.put_bytes("media/j5/source", b"no suffix")
    with pytest.raises(RuntimeError), storage.local_path("media/j5/source") as path:
        assert path.read_bytes() == b"no suffix"
        assert path.suffix == ""
        raise RuntimeError("decoder crashed")
    assert not path.exists()


def test_read_range_is_a_ranged_get(storage: S3Storage) -> None:
    data = os.urandom(READ_CHUNK_BYTES * 2 + 17)
    storage.put_bytes("media/r/source", data)
    ranges: list[str] = []

    def note_range(request: Any, **_: Any) -> None:
        ranges.append(request.headers["Range"].decode())

    events = storage.client.meta.events
    events.register("before-send.s3.GetObject", note_range)
    try:
        chunks = list(storage.read_range("media/r/source", 5, len(data) - 1))
        middle = b"".join(storage.read_range("media/r/source", 100, 199))
        assert list(storage.read_range("media/r/source", 10, 9)) == []
        with pytest.raises(StorageObjectMissing):
            list(storage.read_range("media/none/source", 0, 9))
    finally:
        events.unregister("before-send.s3.GetObject", note_range)
    assert b"".join(chunks) == data[5:] and len(chunks) == 3
    assert middle == data[100:200]
    # Only the asked bytes travel: the whole object is never fetched.
    assert ranges == [f"bytes=5-{len(data) - 1}", "bytes=100-199", "bytes=0-9"]


def test_local_path_of_a_missing_object_leaves_no_temp_file(storage: S3Storage) -> None:
    def temp_files() -> set[str]:
        return {p.name for p in Path(tempfile.gettempdir()).glob("hark-s3-*")}

    before = temp_files()
    with pytest.raises(StorageObjectMissing), storage.local_path("media/none/x.ogg"):
        pass
    assert temp_files() <= before


def test_delete_prefix_removes_the_key_and_its_subtree_only(storage: S3Storage, raw: Any) -> None:
    for key in ("results/j1", "results/j1/a.json", "results/j1/b/c.srt", "results/j10/x"):
        storage.put_bytes(key, b"x")
    storage.put_bytes("results/j1x", b"sibling")
    storage.put_bytes("media/j1/source", b"other tree")

    assert storage.delete_prefix("results/j1") == 3
    p = storage.prefix
    assert stored_keys(raw, p) == [f"{p}/media/j1/source", f"{p}/results/j10/x", f"{p}/results/j1x"]
    assert storage.delete_prefix("results/j1/") == 0  # nothing left: fine
    assert storage.delete_prefix("media/j1") == 1
    assert storage.delete_prefix("nothing/here") == 0


def test_delete_prefix_pages_and_batches(storage: S3Storage, raw: Any) -> None:
    # More than one listing page and one delete_objects batch (1000 each).
    keys = [f"results/many/{i:05d}" for i in range(1105)]
    with ThreadPoolExecutor(16) as pool:  # also: one storage shared by many threads
        list(pool.map(lambda key: storage.put_bytes(key, b"x"), keys))
    storage.put_bytes("results/keep", b"x")
    assert storage.delete_prefix("results/many") == len(keys)
    assert stored_keys(raw, storage.prefix) == [f"{storage.prefix}/results/keep"]


def test_storages_with_different_prefixes_are_isolated(s3_server: MotoS3Server, raw: Any) -> None:
    token = secrets.token_hex(4)
    first = S3Storage(BUCKET, f"{token}/one/", endpoint_url=s3_server.endpoint_url)
    second = S3Storage(BUCKET, f"/{token}/two", endpoint_url=s3_server.endpoint_url)
    assert first.prefix == f"{token}/one"  # surrounding slashes are dropped
    first.put_bytes("results/j/t.json", b"first")
    second.put_bytes("results/j/t.json", b"second")
    assert first.get_bytes("results/j/t.json") == b"first"
    assert second.get_bytes("results/j/t.json") == b"second"
    second.put_bytes("results/only-two", b"2")
    assert not first.exists("results/only-two")

    assert first.delete_prefix("results") == 1
    assert second.get_bytes("results/j/t.json") == b"second"
    assert stored_keys(raw, token) == [
        f"{token}/two/results/j/t.json",
        f"{token}/two/results/only-two",
    ]

    bare = S3Storage(BUCKET, endpoint_url=s3_server.endpoint_url)
    assert bare.object_key(f"{token}/two/results/only-two") == f"{token}/two/results/only-two"
    assert bare.get_bytes(f"{token}/two/results/only-two") == b"2"


def test_check_writable(storage: S3Storage, raw: Any, s3_server: MotoS3Server) -> None:
    storage.check_writable()
    assert stored_keys(raw, storage.prefix) == []  # the probe is removed

    missing = S3Storage("hark-no-such-bucket", "p", endpoint_url=s3_server.endpoint_url)
    with pytest.raises(StorageError) as caught:
        missing.check_writable()
    assert "NoSuchBucket" in str(caught.value)
    assert caught.value.status_code == 503


def test_a_broken_bucket_is_a_storage_error_not_a_missing_object(
    s3_server: MotoS3Server,
) -> None:
    missing = S3Storage("hark-no-such-bucket", endpoint_url=s3_server.endpoint_url)
    with pytest.raises(StorageError) as caught:
        missing.get_bytes("media/j/source")
    assert not isinstance(caught.value, StorageObjectMissing)
    with pytest.raises(StorageError):
        missing.delete_prefix("media/j")

    # A failing multipart write raises StorageError and leaves the writer aborted.
    writer = missing.writer("media/j/source")
    with pytest.raises(StorageError):
        writer.write(os.urandom(PART_SIZE))
    with pytest.raises(ValueError):
        writer.commit()
    with pytest.raises(StorageError):
        missing.put_bytes("media/j/small", b"x")  # the single-PUT path


def test_presigned_put(storage: S3Storage, raw: Any, tmp_path: Path) -> None:
    data = os.urandom(70_000)
    url = storage.presigned_put("uploads/u1/source.mp3", size=len(data), expires_seconds=600)
    assert url is not None
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == ["600"]
    # The length is signed, so real S3 refuses a body of another size. (moto does not
    # verify presigned signatures at all, so that refusal cannot be shown here.)
    assert "content-length" in query["X-Amz-SignedHeaders"][0].split(";")
    assert urlsplit(url).path.endswith(f"/{storage.prefix}/uploads/u1/source.mp3")

    assert not storage.exists("uploads/u1/source.mp3")
    response = httpx.put(url, content=data, timeout=10)
    assert response.status_code == 200, response.text
    assert storage.size("uploads/u1/source.mp3") == len(data)
    assert storage.get_bytes("uploads/u1/source.mp3") == data

    assert LocalStorage(tmp_path).presigned_put("uploads/u1/x", size=1, expires_seconds=60) is None


def test_parse_s3_url() -> None:
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    assert parse_s3_url("s3://bucket/") == ("bucket", "")
    assert parse_s3_url("S3://bucket/a/b/") == ("bucket", "a/b")
    for bad in ("s3://", "s3:///prefix", "s3://bucket/a//b", "s3://bucket/../x", "s3://b/p?x=1"):
        with pytest.raises(OptionError) as caught:
            parse_s3_url(bad)
        assert caught.value.details == {"field": "storage_url"}


def test_open_storage_selects_s3(s3_server: MotoS3Server, raw: Any) -> None:
    prefix = f"open-{secrets.token_hex(4)}"
    settings = Settings(
        _env_file=None,
        storage_url=f"s3://{BUCKET}/{prefix}",
        s3_endpoint_url=s3_server.endpoint_url,
        s3_region="us-east-1",
    )
    storage = open_storage(settings)
    assert isinstance(storage, S3Storage)
    assert storage.name == "s3"
    assert (storage.bucket, storage.prefix) == (BUCKET, prefix)
    storage.put_bytes("results/j/t.txt", b"via settings")
    assert stored_keys(raw, prefix) == [f"{prefix}/results/j/t.txt"]

    for bad in ("s3://", "s3:///only/prefix"):
        with pytest.raises(OptionError) as caught:
            open_storage(Settings(_env_file=None, storage_url=bad))
        assert caught.value.details == {"field": "storage_url"}


def test_open_storage_without_boto3(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes `import boto3` fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "boto3", None)
    monkeypatch.delitem(sys.modules, "hark.storage.s3")
    with pytest.raises(MissingDependencyError) as caught:
        open_storage(Settings(_env_file=None, storage_url=f"s3://{BUCKET}/p"))
    assert "hark[s3]" in str(caught.value)
    assert caught.value.details == {"package": "boto3"}


def test_the_module_is_marked_as_starting_a_server(request: pytest.FixtureRequest) -> None:
    # moto's server is a service this module starts: `pytest -m "not services"`, the
    # quick subset of CONTRIBUTING.md, must leave every test here out.
    assert request.node.get_closest_marker("services") is not None
