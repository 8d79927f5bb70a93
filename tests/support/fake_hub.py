"""A Hugging Face Hub stand-in on 127.0.0.1 that the real `snapshot_download` accepts.

It answers exactly what huggingface_hub sends for a download:

    GET  /api/models/{repo}/revision/{rev}        repo info: commit sha and file list
    GET  /api/models/{repo}/tree/{rev}            recursive file listing (sizes, oids, LFS)
    HEAD /{repo}/resolve/{rev}/{file}             X-Repo-Commit, ETag, sizes
    GET  /{repo}/resolve/{rev}/{file}             the bytes (Range honoured for resumes)
    GET  /api/agent-harnesses                     404: no registry of agents here

The last is not part of the download: huggingface_hub's telemetry asks its default hub
(HF_ENDPOINT, not the endpoint a download names) for it on a process's first request,
to describe its caller in the User-Agent. A hub without one answers 404, which the
library takes as "no agents", caching nothing.

Errors carry the `X-Error-Code` headers the library maps to its exception classes.
No Xet headers or hashes are ever sent, so downloads stay on plain HTTP.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import socket
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

import huggingface_hub.constants as hf_constants
import pytest

_REPO = r"(?P<repo>[^/]+/[^/]+)"
_INFO = re.compile(rf"^/api/models/{_REPO}/revision/(?P<rev>[^/]+)$")
_TREE = re.compile(rf"^/api/models/{_REPO}/tree/(?P<rev>[^/]+)$")
_RESOLVE = re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_RANGE = re.compile(r"^bytes=(?P<start>\d+)-(?P<end>\d*)$")
_AGENTS = "/api/agent-harnesses"


def fake_whisper_files(seed: str, model_bytes: int = 4096) -> dict[str, bytes]:
    """The files of a CTranslate2 Whisper repository, with a small random `model.bin`."""
    rng = random.Random(seed)
    return {
        "config.json": json.dumps({"model": seed, "suppress_ids": []}).encode(),
        "model.bin": rng.randbytes(model_bytes),
        "tokenizer.json": json.dumps({"version": "1.0", "model": {"vocab": {}}}).encode(),
        "vocabulary.txt": "\n".join(f"tok{i}" for i in range(64)).encode(),
    }


def unreachable_endpoint() -> str:
    """An http endpoint on 127.0.0.1 that refuses connections: a port just released."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def on_this_machine(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Body of a fixture: downloads in this process ask only hubs on this machine, any
    other host name looked up is refused before a request is sent, and the test fails
    if one was.

    Tests run without internet, where a request to huggingface.co fails quietly and
    would hide that a test sends one. huggingface_hub's telemetry sends one: it asks its
    default hub (huggingface.co, not the endpoint a download names) for its registry of
    agents on a process's first request, unless its telemetry is off, as Hark's downloads
    turn it. The fixture starts with it on, so the tests prove that Hark turns it off.
    """
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_TELEMETRY", False)
    refused: list[str] = []
    lookup = socket.getaddrinfo

    def local_only(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name not in LOOPBACK:  # None: this machine's addresses
            refused.append(name)
            raise socket.gaierror(socket.EAI_NONAME, f"{name} is not this machine (a test)")
        return lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)
    yield
    assert refused == [], f"the test looked up hosts elsewhere: {refused}"


@dataclass
class FakeRepo:
    repo_id: str
    files: dict[str, bytes]
    lfs: frozenset[str]
    sha: str = field(default_factory=lambda: f"{random.getrandbits(160):040x}")

    def oid(self, name: str) -> str:
        data = self.files[name]
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()

    def sha256(self, name: str) -> str:
        return hashlib.sha256(self.files[name]).hexdigest()

    def has_revision(self, rev: str) -> bool:
        return rev in ("main", self.sha)


@dataclass(frozen=True)
class Request:
    method: str
    path: str


class FakeHub:
    """Start with `with FakeHub() as hub:`; `hub.url` is the endpoint to pass on."""

    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.failures: dict[tuple[str, str], int] = {}
        self.requests: list[Request] = []
        self.unexpected: list[Request] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def add_repo(
        self, repo_id: str, files: Mapping[str, bytes], *, lfs: Iterable[str] = ("model.bin",)
    ) -> FakeRepo:
        repo = FakeRepo(repo_id, dict(files), frozenset(lfs) & set(files))
        self.repos[repo_id] = repo
        return repo

    def fail_download(self, repo_id: str, filename: str, status: int = 500) -> None:
        """Answer GETs of the file's bytes with `status`; its metadata still looks healthy."""
        self.failures[(repo_id, filename)] = status

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeHub is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def downloads(self) -> list[str]:
        """Paths of every GET of file bytes, in arrival order."""
        with self._lock:
            return [r.path for r in self.requests if r.method == "GET" and "/resolve/" in r.path]

    def record(self, request: Request, *, expected: bool) -> None:
        with self._lock:
            self.requests.append(request)
            if not expected:
                self.unexpected.append(request)

    def __enter__(self) -> FakeHub:
        hub = self

        class Handler(_HubHandler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll interval keeps shutdown, paid once per test, quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None


class _HubHandler(BaseHTTPRequestHandler):
    hub: FakeHub
    # One request per connection: nothing pooled by the client outlives a test's server.
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch(send_body=True)

    def do_HEAD(self) -> None:
        self._dispatch(send_body=False)

    def _dispatch(self, *, send_body: bool) -> None:
        path = urlsplit(self.path).path
        request = Request(self.command, path)
        if send_body and (m := _INFO.match(path)):
            self.hub.record(request, expected=True)
            self._repo_info(unquote(m["repo"]), unquote(m["rev"]))
        elif send_body and (m := _TREE.match(path)):
            self.hub.record(request, expected=True)
            self._tree(unquote(m["repo"]), unquote(m["rev"]))
        elif m := _RESOLVE.match(path):
            self.hub.record(request, expected=True)
            self._resolve(unquote(m["repo"]), unquote(m["rev"]), unquote(m["file"]), send_body)
        elif path == _AGENTS:
            self.hub.record(request, expected=True)
            self._error(404, "NotFound", "no registry of agents", send_body=send_body)
        else:
            self.hub.record(request, expected=False)
            self._error(404, "NotFound", f"no route for {path}", send_body=send_body)

    def _repo_or_error(self, repo_id: str, rev: str, *, send_body: bool) -> FakeRepo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            # The real Hub answers 401 for missing repos so as not to reveal private ones.
            self._error(401, "RepoNotFound", "Repository not found", send_body=send_body)
            return None
        if not repo.has_revision(rev):
            self._error(404, "RevisionNotFound", "Invalid rev id", send_body=send_body)
            return None
        return repo

    def _repo_info(self, repo_id: str, rev: str) -> None:
        repo = self._repo_or_error(repo_id, rev, send_body=True)
        if repo is None:
            return
        self._json(
            {
                "_id": repo.sha[:24],
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "sha": repo.sha,
                "private": False,
                "gated": False,
                "disabled": False,
                "tags": ["ctranslate2"],
                "lastModified": "2024-01-01T00:00:00.000Z",
                "siblings": [{"rfilename": name} for name in sorted(repo.files)],
            }
        )

    def _tree(self, repo_id: str, rev: str) -> None:
        repo = self._repo_or_error(repo_id, rev, send_body=True)
        if repo is None:
            return
        entries: list[dict[str, object]] = []
        for name in sorted(repo.files):
            entry: dict[str, object] = {
                "type": "file",
                "path": name,
                "oid": repo.oid(name),
                "size": len(repo.files[name]),
            }
            if name in repo.lfs:
                entry["lfs"] = {
                    "oid": repo.sha256(name),
                    "size": len(repo.files[name]),
                    "pointerSize": 134,
                }
            entries.append(entry)
        self._json(entries)

    def _resolve(self, repo_id: str, rev: str, filename: str, send_body: bool) -> None:
        repo = self._repo_or_error(repo_id, rev, send_body=send_body)
        if repo is None:
            return
        if filename not in repo.files:
            self._error(
                404, "EntryNotFound", "Entry not found", send_body=send_body,
                headers={"X-Repo-Commit": repo.sha},
            )
            return
        status = self.hub.failures.get((repo_id, filename))
        if send_body and status is not None:
            self._error(status, "InternalError", "simulated failure", send_body=True)
            return

        data = repo.files[filename]
        headers = {"X-Repo-Commit": repo.sha, "Accept-Ranges": "bytes"}
        if filename in repo.lfs:
            digest = repo.sha256(filename)
            headers |= {
                "ETag": f'"{digest}"',
                "X-Linked-Etag": f'"{digest}"',
                "X-Linked-Size": str(len(data)),
            }
        else:
            headers["ETag"] = f'"{repo.oid(filename)}"'

        code, body = 200, data
        wanted = _RANGE.match(self.headers.get("Range", ""))
        if send_body and wanted:
            start = int(wanted["start"])
            end = int(wanted["end"]) if wanted["end"] else len(data) - 1
            code, body = 206, data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{start + len(body) - 1}/{len(data)}"
        self.send_response(code)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _json(self, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(
        self,
        status: int,
        code: str,
        message: str,
        *,
        send_body: bool,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)
