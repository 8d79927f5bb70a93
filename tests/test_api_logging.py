"""Request ids and structured logs, on a small FastAPI app built here.

Most tests drive the app in-process through httpx's ASGI transport; one runs it under a
real uvicorn server (its own startup lines, a WebSocket handshake).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
import structlog
import uvicorn
from fastapi import APIRouter, FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import JSONResponse
from websockets.sync.client import connect

from hark.api.logging import AccessLogMiddleware
from hark.api.metrics import MetricsMiddleware, metrics_router
from hark.api.request_id import (
    RequestIdMiddleware,
    current_request_id,
    request_id_from_scope,
)
from hark.logs import configure_logging, get_logger
from tests.support.common import wait_for

HEX_ID = re.compile(r"[0-9a-f]{32}")
ReadLines = Callable[[], list[dict[str, Any]]]


def build_app() -> FastAPI:
    app = FastAPI()
    jobs = APIRouter(prefix="/jobs")

    @jobs.get("/{job_id}")
    async def get_job(job_id: str) -> dict[str, str]:
        return {"id": job_id}

    app.include_router(jobs, prefix="/api/v1")

    @app.get("/whoami")
    async def whoami(request: Request) -> dict[str, Any]:
        return {"context": current_request_id(), "state": request.state.request_id}

    @app.get("/whoami-sync")
    def whoami_sync() -> dict[str, Any]:  # runs in a worker thread
        return {"context": current_request_id()}

    @app.get("/log")
    def log_lines() -> dict[str, bool]:
        get_logger("hark.test").info("structlog line", answer=42)
        logging.getLogger("hark.test.stdlib").info("stdlib %s line", "formatted")
        logging.getLogger("uvicorn.error").warning("uvicorn %s", "says hi")
        warnings.warn("a deprecated thing", DeprecationWarning, stacklevel=1)
        try:
            raise ValueError("broken")
        except ValueError:
            logging.getLogger("hark.test.stdlib").exception("with traceback")
        return {"ok": True}

    @app.get("/conflict")
    async def conflict() -> None:
        raise HTTPException(status_code=409, detail="conflict")

    @app.get("/typed/{n}")
    async def typed(n: int) -> dict[str, int]:
        return {"n": n}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("unhandled")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready")
    async def ready() -> JSONResponse:
        return JSONResponse({"status": "down"}, status_code=503)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"context": current_request_id()})
        await websocket.close()

    # The pattern the app factory uses for unhandled errors: ServerErrorMiddleware runs
    # this handler outside the user middleware, so it adds the header itself.
    @app.exception_handler(Exception)
    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        request_id = request_id_from_scope(request.scope)
        return JSONResponse(
            {"error": "internal", "request_id": request_id},
            status_code=500,
            headers={"X-Request-ID": request_id or ""},
        )

    app.include_router(metrics_router())
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(RequestIdMiddleware)  # added last = outermost
    return app


def request(
    app: FastAPI, method: str, path: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(
            app=app, raise_app_exceptions=False, client=("203.0.113.7", 4321)
        )
        async with httpx.AsyncClient(transport=transport, base_url="http://hark.test") as client:
            return await client.request(method, path, headers=headers)

    return asyncio.run(go())


@pytest.fixture
def app() -> FastAPI:
    return build_app()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    yield
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    logging.captureWarnings(False)
    structlog.reset_defaults()


@pytest.fixture
def json_lines(capsys: pytest.CaptureFixture[str], restore_logging: None) -> ReadLines:
    """Configure JSON logging; the reader parses every stderr line (and fails on non-JSON)."""
    configure_logging("INFO", "json")
    capsys.readouterr()

    def read() -> list[dict[str, Any]]:
        err = capsys.readouterr().err
        return [json.loads(line) for line in err.splitlines() if line.strip()]

    return read


def access_lines(lines: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("event") == "http_request" and line["path"] == path]


def test_request_id_is_generated_and_echoed(app: FastAPI) -> None:
    response = request(app, "GET", "/whoami")
    request_id = response.headers["x-request-id"]
    assert HEX_ID.fullmatch(request_id)
    assert response.json() == {"context": request_id, "state": request_id}
    # Sync endpoints run in a thread: the contextvar travels with them.
    sync = request(app, "GET", "/whoami-sync")
    assert sync.json() == {"context": sync.headers["x-request-id"]}
    assert sync.headers["x-request-id"] != request_id
    # Outside a request there is none.
    assert current_request_id() is None


def test_incoming_request_id_is_reused(app: FastAPI) -> None:
    incoming = "gateway-1234.abc_DEF"
    response = request(app, "GET", "/whoami", {"X-Request-ID": incoming})
    assert response.headers["x-request-id"] == incoming
    assert response.json()["context"] == incoming
    longest = "a" * 128
    assert request(app, "GET", "/whoami", {"X-Request-ID": longest}).headers[
        "x-request-id"] == longest


@pytest.mark.parametrize(
    "incoming", ["a" * 129, "has space", "semi;colon", "quote\"d", "path/../x", "ünïcode", ""]
)
def test_insane_request_id_is_replaced(app: FastAPI, incoming: str) -> None:
    raw = incoming.encode("utf-8")
    response = request(app, "GET", "/whoami", {"X-Request-ID": raw})  # type: ignore[dict-item]
    request_id = response.headers["x-request-id"]
    assert request_id != incoming
    assert HEX_ID.fullmatch(request_id)
    assert response.json()["context"] == request_id
    assert len(response.headers.get_list("x-request-id")) == 1


@pytest.mark.parametrize(
    ("path", "status"), [("/nowhere", 404), ("/conflict", 409), ("/typed/x", 422), ("/boom", 500)]
)
def test_error_responses_carry_the_request_id(app: FastAPI, path: str, status: int) -> None:
    response = request(app, "GET", path, {"X-Request-ID": "err-1"})
    assert response.status_code == status
    assert response.headers.get_list("x-request-id") == ["err-1"]
    if status == 500:
        assert response.json()["request_id"] == "err-1"


def test_access_log_line_is_json_with_request_fields(app: FastAPI, json_lines: ReadLines) -> None:
    request(app, "GET", "/api/v1/jobs/j-42", {"X-Request-ID": "trace-77"})
    request(app, "GET", "/nowhere")
    lines = json_lines()
    [line] = access_lines(lines, "/api/v1/jobs/j-42")
    assert line["request_id"] == "trace-77"
    assert line["method"] == "GET"
    assert line["status"] == 200
    assert line["client"] == "203.0.113.7"
    assert line["level"] == "info"
    assert line["logger"] == "hark.access"
    assert isinstance(line["duration_ms"], float) and 0 <= line["duration_ms"] < 5000
    assert line["timestamp"].endswith("Z")
    stamp = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
    assert stamp.utcoffset() is not None and stamp.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    [missing] = access_lines(lines, "/nowhere")
    assert missing["status"] == 404 and HEX_ID.fullmatch(missing["request_id"])


def test_unhandled_error_is_logged_with_status_500(app: FastAPI, json_lines: ReadLines) -> None:
    response = request(app, "GET", "/boom")
    [line] = access_lines(json_lines(), "/boom")
    assert line["status"] == 500
    assert line["request_id"] == response.headers["x-request-id"]


def test_every_line_is_json_including_stdlib_and_uvicorn(
    app: FastAPI, json_lines: ReadLines
) -> None:
    response = request(app, "GET", "/log", {"X-Request-ID": "log-req-1"})
    assert response.status_code == 200
    lines = json_lines()  # json.loads on every line: a plain-text line fails here
    by_event = {line["event"]: line for line in lines}
    structured = by_event["structlog line"]
    assert structured["answer"] == 42 and structured["logger"] == "hark.test"
    assert by_event["stdlib formatted line"]["logger"] == "hark.test.stdlib"
    uvicorn_line = by_event["uvicorn says hi"]
    assert uvicorn_line["logger"] == "uvicorn.error" and uvicorn_line["level"] == "warning"
    assert "ValueError: broken" in by_event["with traceback"]["exception"]
    assert any("a deprecated thing" in line["event"] for line in lines)
    # Every line the request logged carries its id (stdlib ones included). Other lines
    # can come from outside the request: httpx logs the client side after the response,
    # and threads left by earlier tests in this process may log meanwhile.
    request_loggers = {"hark.test", "hark.test.stdlib", "uvicorn.error", "py.warnings"}
    from_request = [line for line in lines if line["logger"] in request_loggers]
    assert len(from_request) >= 5
    for line in lines:
        assert {"timestamp", "level", "event", "logger"} <= line.keys()
    for line in from_request:
        assert line["request_id"] == "log-req-1", line


def test_probes_and_scrapes_are_logged_at_debug_only(
    app: FastAPI, json_lines: ReadLines
) -> None:
    for path in ("/health", "/metrics", "/health/ready", "/whoami"):
        request(app, "GET", path)
    lines = json_lines()
    assert access_lines(lines, "/health") == []
    assert access_lines(lines, "/metrics") == []
    # A failing probe is worth a line; ordinary requests are logged.
    [ready] = access_lines(lines, "/health/ready")
    assert ready["status"] == 503 and ready["level"] == "info"
    assert len(access_lines(lines, "/whoami")) == 1

    configure_logging("debug", "json")
    request(app, "GET", "/health")
    [health] = access_lines(json_lines(), "/health")
    assert health["level"] == "debug" and health["status"] == 200


def test_configure_logging_is_idempotent(
    capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    for _ in range(3):
        configure_logging("INFO", "json")
    hark_handlers = [h for h in logging.getLogger().handlers if getattr(h, "_hark_handler", 0)]
    assert len(hark_handlers) == 1
    capsys.readouterr()
    get_logger("hark.once").info("just once")
    logging.getLogger("hark.once").info("stdlib once")
    lines = capsys.readouterr().err.splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["just once", "stdlib once"]

    # Reconfiguring switches format and level for existing (cached) loggers too.
    configure_logging("WARNING", "console")
    get_logger("hark.once").info("now filtered")
    get_logger("hark.once").warning("console line")
    err = capsys.readouterr().err
    assert "now filtered" not in err
    assert "console line" in err and not err.lstrip().startswith("{")

    with pytest.raises(ValueError):
        configure_logging("LOUD", "json")
    with pytest.raises(ValueError):
        configure_logging("INFO", "xml")  # type: ignore[arg-type]


class _ServerThread:
    """The app under a real uvicorn server on an ephemeral port, as `hark serve` runs it."""

    def __init__(self, app: FastAPI) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> int:
        self.thread.start()
        wait_for(lambda: self.server.started, interval=0.01, message="uvicorn did not start")
        port: int = self.server.servers[0].sockets[0].getsockname()[1]
        return port

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def test_under_uvicorn_startup_lines_are_json_and_websockets_get_the_id(
    app: FastAPI, json_lines: ReadLines
) -> None:
    with _ServerThread(app) as port:
        response = httpx.get(f"http://127.0.0.1:{port}/whoami", headers={"X-Request-ID": "real-1"})
        assert response.headers["x-request-id"] == "real-1"
        with connect(
            f"ws://127.0.0.1:{port}/ws", additional_headers={"X-Request-ID": "ws-req-9"}
        ) as ws:
            assert json.loads(ws.recv()) == {"context": "ws-req-9"}
            assert ws.response is not None
            assert ws.response.headers["X-Request-ID"] == "ws-req-9"
    lines = json_lines()
    uvicorn_lines = [line for line in lines if line["logger"].startswith("uvicorn")]
    assert any("Uvicorn running on" in line["event"] for line in uvicorn_lines)
    assert [line["request_id"] for line in access_lines(lines, "/whoami")] == ["real-1"]
