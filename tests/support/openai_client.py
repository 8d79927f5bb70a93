"""The real app behind a real HTTP server, for clients that need one (the OpenAI SDK).

    with live_server(settings) as server:          # uvicorn in a thread, on a free port
        key = server.create_key("tenant-a")
        client = OpenAI(base_url=server.openai_url, api_key=key)

The app's lifespan runs in the server thread, so the database, storage, event bus and
worker pool (spawned worker processes) are the ones `hark serve` would have.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from hark.api.app import create_app
from hark.api.state import ServiceState
from hark.config import Settings
from tests.support.common import free_port, wait_for
from tests.support.service import create_api_key

START_SECONDS = 60.0


@dataclass
class LiveServer:
    app: FastAPI
    settings: Settings
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def state(self) -> ServiceState:
        state: ServiceState = self.app.state.hark
        return state

    def create_key(self, tenant: str, name: str = "test") -> str:
        return create_api_key(self.state, tenant, name)


@contextmanager
def live_server(settings: Settings, *, workers: bool = True) -> Iterator[LiveServer]:
    app = create_app(settings, workers=workers)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()

    def started() -> bool:
        if not thread.is_alive():
            raise RuntimeError("the server thread ended before it started serving")
        return server.started

    if not wait_for(started, START_SECONDS, interval=0.02):
        raise TimeoutError("the server did not start")
    try:
        yield LiveServer(app=app, settings=settings, port=port)
    finally:
        server.should_exit = True
        thread.join(timeout=60)
