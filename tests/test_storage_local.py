"""LocalStorage: atomic commits, aborts, key validation, purge, sweeping and errors."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hark.config import Settings
from hark.errors import NotFoundError, OptionError, StorageError
from hark.storage import LocalStorage, StorageObjectMissing, open_storage, validate_key
from hark.storage.base import READ_CHUNK_BYTES


def all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "store")


def test_commit_makes_the_object_visible_only_then(storage: LocalStorage) -> None:
    writer = storage.writer("media/job1/source")
    writer.write(b"hello ")
    writer.write(b"world")
    assert writer.size == 11
    assert not storage.exists("media/job1/source")
    assert storage.size("media/job1/source") is None
    [partial] = all_files(storage.root)
    assert partial.startswith("media/job1/source.part-")

    writer.commit()
    assert storage.exists("media/job1/source")
    assert storage.get_bytes("media/job1/source") == b"hello world"
    assert storage.size("media/job1/source") == 11
    assert all_files(storage.root) == ["media/job1/source"]
    writer.commit()  # idempotent
    writer.abort()  # a no-op after commit
    assert storage.get_bytes("media/job1/source") == b"hello world"


def test_commit_replaces_an_existing_object(storage: LocalStorage) -> None:
    storage.put_bytes("results/j/transcript.json", b"old")
    with storage.writer("results/j/transcript.json") as writer:
        writer.write(b"new content")
        assert storage.get_bytes("results/j/transcript.json") == b"old"
        writer.commit()
    assert storage.get_bytes("results/j/transcript.json") == b"new content"


def test_abort_removes_the_partial_file(storage: LocalStorage) -> None:
    writer = storage.writer("media/a/source")
    writer.write(b"x" * 1000)
    writer.abort()
    writer.abort()  # safe twice
    assert all_files(storage.root) == []
    assert not storage.exists("media/a/source")
    with pytest.raises(ValueError):
        writer.write(b"more")
    with pytest.raises(ValueError):
        writer.commit()


def test_exception_inside_with_aborts(storage: LocalStorage) -> None:
    with pytest.raises(RuntimeError), storage.writer("media/b/source") as writer:
        writer.write(b"partial")
        raise RuntimeError("client went away")
    assert all_files(storage.root) == []


def test_leaving_with_without_commit_aborts(storage: LocalStorage) -> None:
    with storage.writer("media/c/source") as writer:
        writer.write(b"data")
    assert all_files(storage.root) == []
    assert not storage.exists("media/c/source")


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "../outside",
        "media/../../outside",
        "media//source",
        "media/source/",
        "media/./source",
        "media\\source",
        ".hidden",
        "media/x.part-123",
        "a\x00b",
    ],
)
def test_bad_keys_are_rejected(storage: LocalStorage, key: str) -> None:
    with pytest.raises(ValueError):
        validate_key(key)
    with pytest.raises(ValueError):
        storage.writer(key)
    with pytest.raises(ValueError):
        storage.get_bytes(key)
    assert not storage.root.exists() or all_files(storage.root) == []


def test_good_keys_pass() -> None:
    for key in ("media/0f3c/source", "results/j/transcript.json", "a", "uploads/x-y_z.1"):
        assert validate_key(key) == key


def test_missing_objects(storage: LocalStorage) -> None:
    with pytest.raises(StorageObjectMissing) as caught:
        storage.get_bytes("media/none/source")
    assert isinstance(caught.value, NotFoundError)
    assert caught.value.code == "OBJECT_NOT_FOUND"
    assert caught.value.status_code == 404
    with pytest.raises(StorageObjectMissing), storage.local_path("media/none/source"):
        pass
    assert storage.size("media/none/source") is None
    assert not storage.exists("media/none/source")
    # A folder is not an object.
    storage.put_bytes("media/dir/source", b"1")
    assert not storage.exists("media/dir")
    with pytest.raises(StorageObjectMissing):
        storage.get_bytes("media/dir")
    # Nor is a path "under" a file.
    assert not storage.exists("media/dir/source/deeper")


def test_local_path_is_the_stored_file(storage: LocalStorage) -> None:
    storage.put_bytes("media/p/source", b"audio bytes")
    with storage.local_path("media/p/source") as path:
        assert path.read_bytes() == b"audio bytes"
        assert path == storage.root / "media" / "p" / "source"
    assert storage.exists("media/p/source")  # local storage keeps the file


def test_read_range_reads_only_the_asked_bytes(storage: LocalStorage) -> None:
    data = os.urandom(READ_CHUNK_BYTES * 2 + 17)
    storage.put_bytes("media/r/source", data)
    chunks = list(storage.read_range("media/r/source", 5, len(data) - 1))
    assert b"".join(chunks) == data[5:]
    assert len(chunks) == 3 and max(map(len, chunks)) == READ_CHUNK_BYTES
    assert b"".join(storage.read_range("media/r/source", 100, 199)) == data[100:200]
    assert list(storage.read_range("media/r/source", 10, 9)) == []
    with pytest.raises(StorageObjectMissing):
        list(storage.read_range("media/none/source", 0, 9))


def test_delete_prefix_removes_the_subtree_and_empty_parents(storage: LocalStorage) -> None:
    storage.put_bytes("media/j1/source", b"a")
    storage.put_bytes("results/j1/transcript.json", b"b")
    storage.put_bytes("results/j1/extra/deep.txt", b"c")
    storage.put_bytes("results/j2/transcript.json", b"d")
    storage.put_bytes("results/j10/transcript.json", b"e")

    assert storage.delete_prefix("results/j1") == 2
    assert not storage.exists("results/j1/transcript.json")
    assert not (storage.root / "results" / "j1").exists()
    # A sibling whose name merely starts with the prefix is untouched.
    assert storage.get_bytes("results/j10/transcript.json") == b"e"
    assert storage.get_bytes("results/j2/transcript.json") == b"d"

    assert storage.delete_prefix("media/j1/") == 1
    assert not (storage.root / "media").exists()  # emptied parents removed...
    assert storage.root.is_dir()  # ...but never the root
    assert storage.delete_prefix("media/j1") == 0  # nothing left: fine

    assert storage.delete_prefix("results/j2/transcript.json") == 1  # a single object
    assert all_files(storage.root) == ["results/j10/transcript.json"]
    with pytest.raises(ValueError):
        storage.delete_prefix("")
    with pytest.raises(ValueError):
        storage.delete_prefix("../")


def test_writer_recreates_folders_after_a_purge(storage: LocalStorage) -> None:
    storage.put_bytes("media/j/source", b"1")
    storage.delete_prefix("media/j")
    storage.put_bytes("media/j/source", b"2")
    assert storage.get_bytes("media/j/source") == b"2"


def test_sweep_partials_removes_only_stale_partial_files(storage: LocalStorage) -> None:
    storage.put_bytes("media/kept/source", b"done")
    stale = storage.writer("media/crashed/source")
    stale.write(b"half")
    live = storage.writer("media/live/source")
    live.write(b"in progress")
    [stale_part] = (storage.root / "media" / "crashed").iterdir()
    hour_ago = time.time() - 3600
    os.utime(stale_part, (hour_ago, hour_ago))
    old_object = storage.path_for("media/kept/source")
    os.utime(old_object, (hour_ago, hour_ago))

    assert storage.sweep_partials(older_than_seconds=600) == 1
    assert not stale_part.exists()
    assert not (storage.root / "media" / "crashed").exists()
    assert storage.get_bytes("media/kept/source") == b"done"  # old, but committed
    live.write(b"!")
    live.commit()
    assert storage.get_bytes("media/live/source") == b"in progress!"
    assert storage.sweep_partials(older_than_seconds=0) == 0
    stale.abort()  # its file is already gone: still fine


def test_check_writable(storage: LocalStorage, tmp_path: Path) -> None:
    storage.check_writable()  # creates the root on first use
    assert storage.root.is_dir()
    assert all_files(storage.root) == []  # the probe is removed

    # Root ignores permission bits, so block the folder with a regular file instead.
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")
    broken = LocalStorage(blocker / "store")
    with pytest.raises(StorageError) as caught:
        broken.check_writable()
    assert caught.value.code == "STORAGE_ERROR"
    assert str(blocker / "store") in str(caught.value)


def test_io_failures_become_storage_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    broken = LocalStorage(blocker)
    with pytest.raises(StorageError, match="media/x/source"):
        broken.writer("media/x/source")
    with pytest.raises(StorageError):
        broken.put_bytes("a", b"1")


def test_open_storage(tmp_path: Path) -> None:
    default = open_storage(Settings(_env_file=None, data_dir=tmp_path / "data"))
    assert isinstance(default, LocalStorage)
    assert default.name == "local"
    assert default.root == tmp_path / "data" / "storage"

    plain = open_storage(Settings(_env_file=None, storage_url=str(tmp_path / "s1")))
    assert isinstance(plain, LocalStorage) and plain.root == tmp_path / "s1"

    file_url = open_storage(Settings(_env_file=None, storage_url=f"file://{tmp_path}/s2"))
    assert isinstance(file_url, LocalStorage) and file_url.root == tmp_path / "s2"
    file_url.put_bytes("k", b"v")
    assert (tmp_path / "s2" / "k").read_bytes() == b"v"

    with pytest.raises(OptionError) as caught:
        open_storage(Settings(_env_file=None, storage_url="s3:///prefix"))
    assert caught.value.details == {"field": "storage_url"}
    with pytest.raises(OptionError):
        open_storage(Settings(_env_file=None, storage_url="ftp://host/x"))
