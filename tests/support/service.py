"""The real app in-process, for HTTP-level tests of the job API.

    with serve(service_settings(tmp_path)) as svc:       # one worker process
        job = svc.submit(speech_wav(4.0), "clip.wav", diarize="true")
        done = svc.wait(job["id"])

`serve` runs the app's lifespan through Starlette's TestClient, so the database,
storage, event bus and worker pool are the real ones; the worker is a spawned process
that shares nothing with the test but the data directory. Tests start one app per
module (a module-scoped fixture) because a worker's first job pays for starting the
process and loading pocketsphinx.

Media builders make small recordings in memory: speech cut from the committed
espeak-ng conversations, a sine tone, a video file without audio, silence of any
length (for the duration limit).
"""

from __future__ import annotations

import io
import os
import wave
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urljoin

import av
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession

from hark.api.app import create_app
from hark.api.state import ServiceState
from hark.audit.actor import COMMAND_LINE
from hark.config import Settings, get_settings
from hark.keys.service import create_key
from hark.pipeline.audio import SAMPLE_RATE
from tests.support.common import wait_for
from tests.support.conversations import FIXTURES, load_fixture

API = "/api/v1"
JOBS = f"{API}/jobs"
TERMINAL = frozenset({"completed", "failed", "canceled"})
ENVELOPE_KEYS = {"error", "error_code", "details", "timestamp", "request_id"}
Headers = Mapping[str, str]


class HttpResponse(Protocol):
    """What tests read of a TestClient response (whichever httpx flavour it uses)."""

    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def text(self) -> str: ...
    def json(self, **kwargs: Any) -> Any: ...


def service_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings of a test server: isolated data dir, one worker, anonymous on loopback,
    and real Whisper (tiny.en, from its model package) as the default model."""
    values: dict[str, Any] = {
        "data_dir": data_dir, "workers": 1, "log_format": "console", "log_level": "WARNING",
        "allow_anonymous": True, "host": "127.0.0.1", "default_model": "tiny.en",
        # Test modules make hundreds of requests a minute with one key; the request
        # rate is tested where it is set (test_rate_limits).
        "rate_limit": "",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@dataclass
class Service:
    """A started app, its client and a few helpers that speak its API."""

    app: FastAPI
    client: TestClient
    settings: Settings

    @property
    def state(self) -> ServiceState:
        state: ServiceState = self.app.state.hark
        return state

    @property
    def storage_root(self) -> Path:
        return self.settings.storage_path

    def submit(self, data: bytes, filename: str = "clip.wav", *, headers: Headers | None = None,
               content_type: str = "application/octet-stream",
               fields: Mapping[str, str] | None = None, **options: str) -> dict[str, Any]:
        """Upload a recording as a job; asserts the 202 and returns the job."""
        response = self.upload(data, filename, headers=headers, content_type=content_type,
                               fields=fields, **options)
        assert response.status_code == 202, response.text
        job: dict[str, Any] = response.json()
        return job

    def upload(self, data: bytes, filename: str = "clip.wav", *,
               headers: Headers | None = None,
               content_type: str = "application/octet-stream",
               fields: Mapping[str, str] | None = None, **options: str) -> HttpResponse:
        """POST a recording with option fields (`fields` and keyword options, merged)."""
        return self.client.post(f"{JOBS}/upload", files={"file": (filename, data, content_type)},
                                data={**(fields or {}), **options}, headers=dict(headers or {}))

    def job(self, job_id: str, headers: Headers | None = None) -> dict[str, Any]:
        response = self.client.get(f"{JOBS}/{job_id}", headers=dict(headers or {}))
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        return job

    def wait(self, job_id: str, *, headers: Headers | None = None, timeout: float = 60.0,
             until: frozenset[str] = TERMINAL) -> dict[str, Any]:
        """Poll the job until its status is one of `until`; fails the test on timeout."""
        job: dict[str, Any] = {}

        def reached() -> bool:
            nonlocal job
            job = self.job(job_id, headers)
            return job["status"] in until

        wait_for(reached, timeout, message=lambda: f"job {job_id} still {job.get('status')}")
        return job

    def job_ids(self, headers: Headers | None = None) -> list[str]:
        """Every job of the caller's tenant, newest first (all pages)."""
        ids: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 200}
            if cursor:
                params["cursor"] = cursor
            response = self.client.get(JOBS, params=params, headers=dict(headers or {}))
            assert response.status_code == 200, response.text
            page = response.json()
            ids += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return ids

    def storage_snapshot(self) -> set[str]:
        """Every file and folder under the storage folder, as relative paths."""
        return tree(self.storage_root)

    def create_key(self, tenant: str, name: str = "test", max_priority: int = 0,
                   rate_limit: str | None = None, scopes: str | None = None,
                   user_id: str | None = None) -> str:
        return create_api_key(self.state, tenant, name, max_priority, rate_limit, scopes,
                              user_id)


def tree(root: Path) -> set[str]:
    if not root.exists():
        return set()
    found: set[str] = set()
    for folder, dirs, files in os.walk(root):
        base = Path(folder)
        found.update(str((base / name).relative_to(root)) for name in [*dirs, *files])
    return found


def create_api_key(state: ServiceState, tenant: str, name: str = "test",
                   max_priority: int = 0, rate_limit: str | None = None,
                   scopes: str | None = None, user_id: str | None = None) -> str:
    with state.db.session(write=True) as session:
        return create_key(session, name=name, tenant_id=tenant, actor=COMMAND_LINE,
                          max_priority=max_priority, rate_limit=rate_limit, scopes=scopes,
                          user_id=user_id).secret


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class LocalTestClient(TestClient):
    """A TestClient that calls as a local client does, at 127.0.0.1: the app answers
    only the host names it knows, and TestClient's own is `testserver`."""

    def __init__(self, app: FastAPI) -> None:
        super().__init__(app, base_url="http://127.0.0.1")

    def websocket_connect(self, url: str, subprotocols: Sequence[str] | None = None,
                          **kwargs: Any) -> WebSocketTestSession:
        return super().websocket_connect(urljoin("ws://127.0.0.1", url), subprotocols,
                                         **kwargs)


def service_fixture(name: str, *, workers: bool = True, **overrides: Any) -> Any:
    """A module's `svc` fixture: one app (with `workers` job workers) for the module,
    its settings `service_settings` with `overrides`.

        svc = service_fixture("jobs", max_upload_bytes=1024)
    """
    @pytest.fixture(scope="module")
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
        settings = service_settings(tmp_path_factory.mktemp(name), **overrides)
        with serve(settings, workers=workers) as service:
            yield service

    return fixture


def both_databases_fixture(name: str, *, workers: bool = True, **overrides: Any) -> Any:
    """Like `service_fixture`, once on SQLite and once on a throwaway PostgreSQL
    database (the real server)."""
    # A test module: imported when used. DATABASES marks the PostgreSQL run `services`.
    from tests.test_db import DATABASES, throwaway_postgres

    @pytest.fixture(scope="module", params=DATABASES)
    def fixture(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
        folder = tmp_path_factory.mktemp(f"{name}-{request.param}")
        with ExitStack() as stack:
            database = {"database_url": stack.enter_context(throwaway_postgres())} \
                if request.param == "postgresql" else {}
            yield stack.enter_context(serve(
                service_settings(folder, **overrides, **database), workers=workers))

    return fixture


@contextmanager
def serve(settings: Settings, *, workers: bool = True) -> Iterator[Service]:
    app = create_app(settings, workers=workers)
    with LocalTestClient(app) as client:
        yield Service(app=app, client=client, settings=settings)


def assert_error(response: HttpResponse, status: int, code: str,
                 field: str | None = None) -> dict[str, Any]:
    """The response is the error envelope with this status, code (and details.field)."""
    assert response.status_code == status, (response.status_code, response.text)
    body: dict[str, Any] = response.json()
    assert set(body) == ENVELOPE_KEYS, body
    assert body["error_code"] == code, body
    assert isinstance(body["error"], str) and body["error"], body
    assert isinstance(body["details"], dict), body
    assert body["timestamp"].endswith("Z"), body
    assert body["request_id"] and response.headers["x-request-id"] == body["request_id"], body
    if field is not None:
        assert body["details"].get("field") == field, body
    return body


# --- recordings --------------------------------------------------------------------------

def wav_bytes(audio: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes())
    return buffer.getvalue()


def sine_wav(seconds: float = 1.0, frequency: float = 440.0) -> bytes:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return wav_bytes((0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32))


def silence_wav(seconds: float, rate: int = 8000) -> bytes:
    """A long recording in few bytes (low rate), for the duration limit."""
    return wav_bytes(np.zeros(int(seconds * rate), dtype=np.float32), rate)


@lru_cache(maxsize=4)
def _conversation_audio(name: str) -> np.ndarray:
    return load_fixture(name).audio


def speech_wav(seconds: float, start: float = 0.0, name: str = "two_voices") -> bytes:
    """`seconds` of an espeak-ng conversation (two_voices: a voice change at 4.4 s)."""
    audio = _conversation_audio(name)
    return wav_bytes(audio[int(start * SAMPLE_RATE):int((start + seconds) * SAMPLE_RATE)])


def fixture_bytes(name: str = "two_voices") -> bytes:
    return (FIXTURES / f"{name}.ogg").read_bytes()


def video_without_audio(frames: int = 10) -> bytes:
    """A small MPEG-4 video in Matroska with no audio track."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.time_base = Fraction(1, 10)
        for index in range(frames):
            image = np.full((48, 64, 3), index * 20 % 255, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


@contextmanager
def commands_on(service: Service, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`hark` commands run in this process act on `service`'s data directory."""
    monkeypatch.setenv("HARK_DATA_DIR", str(service.settings.data_dir))
    if service.settings.database_url is not None:
        monkeypatch.setenv("HARK_DATABASE_URL", service.settings.database_url)
    get_settings.cache_clear()
    try:
        yield
    finally:
        get_settings.cache_clear()
