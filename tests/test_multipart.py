"""Streaming multipart parsing into real local storage."""

from __future__ import annotations

import asyncio
import hashlib
import random
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hark.api.multipart import ParsedForm, parse_form
from hark.errors import RequestError, UploadTooLargeError
from hark.storage import LocalStorage
from hark.storage.local import LocalObjectWriter

KEY = "media/job/source"
MiB = 1024 * 1024


def encode(files: Any = None, data: Any = None, boundary: str | None = None) -> tuple[bytes, str]:
    """A real multipart body and its content type, as httpx sends them."""
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"} if boundary else {}
    request = httpx.Request("POST", "http://hark.test/", files=files, data=data, headers=headers)
    return request.read(), request.headers["content-type"]


def split_randomly(body: bytes, seed: int = 0, max_size: int = 97) -> list[bytes]:
    rng = random.Random(seed)
    chunks, i = [], 0
    while i < len(body):
        n = rng.randint(1, max_size)
        chunks.append(body[i : i + n])
        i += n
    return chunks


class Feed:
    """An async chunk iterator that counts what was consumed and can fail midway."""

    def __init__(self, chunks: Iterable[bytes], fail_after: int | None = None) -> None:
        self.chunks = chunks
        self.fail_after = fail_after
        self.consumed = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            if self.fail_after is not None and self.consumed >= self.fail_after:
                raise ConnectionResetError("client disconnected")
            self.consumed += 1
            yield chunk


class Opener:
    """Opens storage writers for parse_form and remembers what it was asked."""

    def __init__(self, storage: LocalStorage) -> None:
        self.storage = storage
        self.calls: list[tuple[str, str | None]] = []
        self.writers: list[LocalObjectWriter] = []

    def __call__(self, filename: str, content_type: str | None) -> LocalObjectWriter:
        self.calls.append((filename, content_type))
        writer = self.storage.writer(KEY if not self.calls[1:] else f"{KEY}{len(self.calls)}")
        self.writers.append(writer)
        return writer


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "store")


def stored_files(storage: LocalStorage) -> list[Path]:
    return [p for p in storage.root.rglob("*") if p.is_file()] if storage.root.exists() else []


def parse(
    feed: Feed | list[bytes],
    content_type: str | None,
    open_writer: Callable[..., Any],
    **limits: Any,
) -> ParsedForm:
    chunks = feed if isinstance(feed, Feed) else Feed(feed)
    limits.setdefault("max_file_bytes", 100 * MiB)
    return asyncio.run(parse_form(chunks.__aiter__(), content_type, open_writer, **limits))


def test_fields_and_file_round_trip_byte_exact(storage: LocalStorage) -> None:
    payload = random.Random(1).randbytes(300_000)
    body, content_type = encode(
        files={"file": ("interview take 1.m4a", payload, "audio/mp4")},
        data={"model": "small", "language": "fr", "initial_prompt": "Grüße, naïve café ☕"},
    )
    for seed, max_size in ((0, 97), (1, 5000), (2, 65536)):
        opener = Opener(storage)
        form = parse(split_randomly(body, seed, max_size), content_type, opener)
        assert form.fields == {
            "model": ["small"],
            "language": ["fr"],
            "initial_prompt": ["Grüße, naïve café ☕"],
        }
        assert form.file is not None
        assert form.file.field == "file"
        assert form.file.filename == "interview take 1.m4a"
        assert form.file.content_type == "audio/mp4"
        assert form.file.size == len(payload)
        assert form.files == [form.file]
        assert opener.calls == [("interview take 1.m4a", "audio/mp4")]
        assert storage.get_bytes(KEY) == payload
        assert [p.name for p in stored_files(storage)] == ["source"]


def test_boundary_lookalikes_in_the_file_survive_one_byte_chunks(storage: LocalStorage) -> None:
    boundary = "hark-boundary-0123"
    # RFC 2046 forbids the full delimiter inside a part, so these are all near misses.
    tricky = b"".join(
        [
            b"\r\n--hark-boundary-012",  # the delimiter less its last byte
            b"x\r\n-",
            b"\r\r\n--\r\n",
            b"x--hark-boundary-0123",  # the boundary without its CRLF is just data
            b"\r\n--hark-boundary-01\r",
            b"\r\n--hark-boundary-012",  # right before the real delimiter
        ]
    )
    body, content_type = encode(
        files={"file": ("t.bin", tricky, "application/octet-stream")},
        data={"note": "\r\n--hark-boundary-012"},
        boundary=boundary,
    )
    form = parse([body[i : i + 1] for i in range(len(body))], content_type, Opener(storage))
    assert storage.get_bytes(KEY) == tricky
    assert form.fields == {"note": ["\r\n--hark-boundary-012"]}


def test_repeated_fields_keep_order_and_file_may_come_first(storage: LocalStorage) -> None:
    boundary = "b0undary"
    parts = [
        b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        b"Content-Type: audio/wav\r\n\r\nRIFFdata\r\n",
        b'--b0undary\r\nContent-Disposition: form-data; name="tag"\r\n\r\none\r\n',
        b'--b0undary\r\nContent-Disposition: form-data; name="other"\r\n\r\n\r\n',
        b'--b0undary\r\nContent-Disposition: form-data; name="tag"\r\n\r\ntwo\r\n',
        b'--b0undary\r\nContent-Disposition: form-data; name="tag"\r\n\r\nthree\r\n',
        b"--b0undary--\r\nepilogue is ignored",
    ]
    form = parse(
        split_randomly(b"".join(parts), 3, 7),
        f"multipart/form-data; boundary={boundary}",
        Opener(storage),
    )
    assert form.fields == {"tag": ["one", "two", "three"], "other": [""]}
    assert list(form.fields) == ["tag", "other"]
    assert form.file is not None and form.file.size == 8
    assert storage.get_bytes(KEY) == b"RIFFdata"


def test_filenames_are_reduced_to_a_base_name(storage: LocalStorage) -> None:
    cases = {
        b'filename="../../etc/passwd"': "passwd",
        b'filename="C:\\\\Users\\\\me\\\\talk.mp3"': "talk.mp3",
        b'filename="\xc3\xa9t\xc3\xa9.ogg"': "été.ogg",  # raw UTF-8, as browsers send it
        b'filename=".."': "upload",
        b"": "upload",  # no filename at all: the part is named "file", so it is the file
    }
    for disposition, expected in cases.items():
        opener = Opener(LocalStorage(storage.root / expected.replace(".", "_")))
        body = (
            b'--xx\r\nContent-Disposition: form-data; name="file"; '
            + disposition
            + b"\r\n\r\nabc\r\n--xx--\r\n"
        )
        form = parse([body], "multipart/form-data; boundary=xx", opener)
        assert form.file is not None
        assert form.file.filename == expected, disposition
        assert form.file.content_type is None
        assert opener.calls == [(expected, None)]


def test_an_empty_file_input_is_no_file(storage: LocalStorage) -> None:
    # What a browser sends for a file input left empty (httpx cannot produce it).
    body = (
        b'--xx\r\nContent-Disposition: form-data; name="model"\r\n\r\ntiny\r\n'
        b'--xx\r\nContent-Disposition: form-data; name="file"; filename=""\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n\r\n--xx--\r\n"
    )
    form = parse(split_randomly(body, 11, 5), "multipart/form-data; boundary=xx", Opener(storage))
    assert form.file is None and form.files == []
    assert form.fields == {"model": ["tiny"]}
    assert stored_files(storage) == []


def test_form_without_a_file(storage: LocalStorage) -> None:
    body, content_type = encode(files={"unused": (None, "x")}, data={"a": "1"})
    opener = Opener(storage)
    form = parse([body], content_type, opener)
    assert form.file is None
    assert form.fields == {"a": ["1"], "unused": ["x"]}
    assert opener.calls == []


def test_too_large_file_is_aborted_and_reading_stops(storage: LocalStorage) -> None:
    payload = b"\x01" * (2 * MiB)
    body, content_type = encode(files={"file": ("big.wav", payload, "audio/wav")})
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    feed = Feed(chunks)
    opener = Opener(storage)
    with pytest.raises(UploadTooLargeError) as caught:
        parse(feed, content_type, opener, max_file_bytes=MiB)
    assert caught.value.status_code == 413
    assert caught.value.details == {"field": "file", "limit": MiB}
    assert feed.consumed <= MiB // 65536 + 2 < len(chunks)
    assert stored_files(storage) == []
    assert not storage.exists(KEY)


def test_a_file_exactly_at_the_limit_is_accepted(storage: LocalStorage) -> None:
    body, content_type = encode(files={"file": ("x", b"y" * 1000)})
    form = parse(split_randomly(body, 5), content_type, Opener(storage), max_file_bytes=1000)
    assert form.file is not None and form.file.size == 1000


def test_client_disconnect_mid_file_aborts(storage: LocalStorage) -> None:
    body, content_type = encode(files={"file": ("x.wav", b"z" * 500_000)})
    chunks = [body[i : i + 4096] for i in range(0, len(body), 4096)]
    feed = Feed(chunks, fail_after=len(chunks) // 2)
    opener = Opener(storage)
    with pytest.raises(ConnectionResetError):
        parse(feed, content_type, opener)
    assert opener.writers and opener.writers[0].size > 0  # it was mid-file
    assert stored_files(storage) == []


def test_truncated_body_is_a_request_error(storage: LocalStorage) -> None:
    body, content_type = encode(files={"file": ("x.wav", b"z" * 10_000)})
    with pytest.raises(RequestError, match="ended before") as caught:
        parse([body[:6000]], content_type, Opener(storage))
    assert caught.value.details == {"field": "body"}
    assert stored_files(storage) == []


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        (None, b"anything", "multipart/form-data"),
        ("application/json", b"{}", "multipart/form-data"),
        ("multipart/form-data", b"--x\r\n", "boundary"),
        ("multipart/form-data; boundary=", b"--x\r\n", "boundary"),
        ("multipart/form-data; boundary=" + "b" * 71, b"--x\r\n", "boundary"),
        ("multipart/form-data; boundary=xx", b"not multipart at all", "Malformed"),
        ("multipart/form-data; boundary=xx", b"--xx\r\nBad Header\r\n\r\n", "Malformed"),
        ("multipart/form-data; boundary=xx", b"--xx\r\nX-A: 1\r\n\r\nv\r\n--xx--", "Content-Disp"),
        (
            "multipart/form-data; boundary=xx",
            b"--xx\r\nContent-Disposition: form-data\r\n\r\nv\r\n--xx--",
            "no field name",
        ),
        ("multipart/form-data; boundary=xx", b"", "ended before"),
    ],
)
def test_malformed_requests(
    storage: LocalStorage, content_type: str | None, body: bytes, message: str
) -> None:
    opener = Opener(storage)
    with pytest.raises(RequestError, match=message) as caught:
        parse([body], content_type, opener)
    assert caught.value.details == {"field": "body"}
    assert stored_files(storage) == []


def test_malformed_after_the_file_aborts_it(storage: LocalStorage) -> None:
    body = (
        b'--xx\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
        + b"q" * 5000
        + b"\r\n--xx\r\n\x00bad header\r\n\r\n"
    )
    opener = Opener(storage)
    with pytest.raises(RequestError, match="Malformed"):
        parse(split_randomly(body, 9, 300), "multipart/form-data; boundary=xx", opener)
    assert opener.writers[0].size == 5000
    assert stored_files(storage) == []


def test_two_files_are_refused(storage: LocalStorage) -> None:
    body, content_type = encode(
        files=[("file", ("a.wav", b"1" * 3000)), ("file", ("b.wav", b"2" * 3000))]
    )
    opener = Opener(storage)
    with pytest.raises(RequestError, match="one file") as caught:
        parse(split_randomly(body, 4, 1000), content_type, opener)
    assert caught.value.details == {"field": "file"}
    assert len(opener.calls) == 1
    assert stored_files(storage) == []


def test_several_files_when_allowed(storage: LocalStorage) -> None:
    body, content_type = encode(
        files=[("samples", ("a.wav", b"1" * 3000)), ("samples", ("b.wav", b"2" * 10))],
        data={"name": "Alice"},
    )
    opener = Opener(storage)
    form = parse([body], content_type, opener, file_field="samples", max_files=3)
    assert [(f.filename, f.size) for f in form.files] == [("a.wav", 3000), ("b.wav", 10)]
    assert form.file == form.files[0]
    assert storage.get_bytes(KEY) == b"1" * 3000
    assert storage.get_bytes(KEY + "2") == b"2" * 10


def test_file_under_another_name_is_refused(storage: LocalStorage) -> None:
    body, content_type = encode(files={"audio": ("a.wav", b"1234")})
    opener = Opener(storage)
    with pytest.raises(RequestError, match="'audio'") as caught:
        parse([body], content_type, opener)
    assert caught.value.details == {"field": "audio"}
    assert opener.calls == []


def test_field_limits(storage: LocalStorage) -> None:
    body, content_type = encode(
        files={"file": ("a.wav", b"1" * 100)}, data={"initial_prompt": "p" * 101}
    )
    with pytest.raises(RequestError, match="initial_prompt") as caught:
        parse(split_randomly(body, 6, 30), content_type, Opener(storage), max_field_bytes=100)
    assert caught.value.details == {"field": "initial_prompt"}
    assert stored_files(storage) == []
    parse([body], content_type, Opener(LocalStorage(storage.root / "ok")), max_field_bytes=101)

    body, content_type = encode(files={f"f{i}": (None, "v") for i in range(11)})
    with pytest.raises(RequestError, match="Too many form fields"):
        parse([body], content_type, Opener(storage), max_fields=10)
    assert len(parse([body], content_type, Opener(storage), max_fields=11).fields) == 11


def test_field_that_is_not_utf8(storage: LocalStorage) -> None:
    body = b'--xx\r\nContent-Disposition: form-data; name="language"\r\n\r\n\xff\xfe\r\n--xx--\r\n'
    with pytest.raises(RequestError, match="UTF-8") as caught:
        parse([body], "multipart/form-data; boundary=xx", Opener(storage))
    assert caught.value.details == {"field": "language"}


def generated_upload(total: int, boundary: str) -> tuple[Iterator[bytes], Any]:
    """A multipart body with a `total`-byte file, produced lazily in varied chunk sizes."""
    digest = hashlib.sha256()
    block = random.Random(7).randbytes(MiB + 65536)
    rng = random.Random(8)

    def chunks() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\ntiny\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"'
            "\r\nContent-Type: audio/wav\r\n\r\n"
        ).encode()
        left = total
        while left:
            n = min(left, rng.randint(16 * 1024, 64 * 1024))
            start = rng.randint(0, MiB)
            piece = block[start : start + n]
            digest.update(piece)
            left -= n
            yield piece
        yield f"\r\n--{boundary}--\r\n".encode()

    return chunks(), digest


def test_large_upload_streams_with_bounded_memory(storage: LocalStorage) -> None:
    total = 200 * MiB
    boundary = "----hark-large-upload-boundary"
    chunks, digest = generated_upload(total, boundary)
    tracemalloc.start()
    try:
        form = parse(
            list_free(chunks),
            f"multipart/form-data; boundary={boundary}",
            Opener(storage),
            max_file_bytes=total,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert form.file is not None and form.file.size == total
    assert form.fields == {"model": ["tiny"]}
    # The 1 MiB source block is allocated before tracing; what remains is chunk-sized.
    assert peak < 4 * MiB, f"peak traced memory {peak / MiB:.1f} MiB"
    stored = hashlib.sha256()
    with storage.local_path(KEY) as path, path.open("rb") as file:
        while block := file.read(MiB):
            stored.update(block)
    assert stored.hexdigest() == digest.hexdigest()
    assert storage.size(KEY) == total


def list_free(chunks: Iterator[bytes]) -> Feed:
    """Feed a generator lazily (never materialised as a list)."""
    return Feed(chunks)
