"""Event streams end within seconds of their key being revoked by `hark keys revoke`.

A job's Server-Sent Events and WebSocket and the tenant feed's two are held open with
a key, then `hark keys revoke` runs as a process of its own against the same
database: every one of them ends (SSE with a last `error` event, WebSockets with close
code 4401) within seconds, while a stream of another key goes on. Embedded: one app on a
SQLite data directory. Scaled: two API replicas on PostgreSQL and a redis-server,
with streams held by both. No workers: the jobs stay queued, so their streams would
otherwise stay open.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect

from hark.events.redis import RedisBus
from tests.support.common import returns_within
from tests.support.redis_server import RedisServer
from tests.support.server import clean_env, hark_command
from tests.support.service import (
    API,
    JOBS,
    Service,
    assert_error,
    bearer,
    serve,
    service_settings,
    sine_wav,
)
from tests.test_db import throwaway_postgres

pytestmark = pytest.mark.timeout(120)

# Streams recheck their key every RECHECK_SECONDS (2 s). Without revocation they would
# stay open for good (no worker runs the job), so a generous bound tells the two apart.
ENDS_WITHIN = 30.0
REVOKED = {"type": "error", "error": "the API key was revoked", "error_code": "UNAUTHORIZED"}


def revoke_with_the_cli(data_dir: Path, key: str, database_url: str | None = None) -> None:
    env = clean_env(data_dir, {"HARK_DATABASE_URL": database_url} if database_url else None)
    done = subprocess.run(hark_command("keys", "revoke", key[:12]), env=env, cwd=data_dir,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


class Streams:
    """A key's four streams, opened on one or two replicas, and how they ended."""

    def __init__(self, stack: ExitStack, key: str, job_id: str,
                 sse_on: Service, ws_on: Service) -> None:
        headers = bearer(key)
        self.sse = {
            "job events": stack.enter_context(sse_on.client.stream(
                "GET", f"{JOBS}/{job_id}/events", headers=headers)).iter_lines(),
            "feed": stack.enter_context(sse_on.client.stream(
                "GET", f"{API}/events", headers=headers)).iter_lines(),
        }
        self.ws = {
            "job socket": stack.enter_context(ws_on.client.websocket_connect(
                f"{JOBS}/{job_id}/ws", headers=headers)),
            "feed socket": stack.enter_context(ws_on.client.websocket_connect(
                f"{API}/ws", headers=headers)),
        }
        # Each is open: it has sent what it sends first.
        assert next(self.sse["job events"]) == "event: status"
        assert next(self.sse["feed"]) == "event: ready"
        assert self.ws["job socket"].receive_json()["type"] == "status"
        assert self.ws["feed socket"].receive_json() == {"type": "ready"}

    def assert_all_end(self) -> None:
        for name, lines in self.sse.items():
            rest = list(lines)  # returns once the server ends the stream
            events = [json.loads(line.removeprefix("data: ")) for line in rest
                      if line.startswith("data: ")]
            assert events and events[-1] == REVOKED, (name, rest)
            assert "event: error" in rest, (name, rest)
        for name, socket in self.ws.items():
            with pytest.raises(WebSocketDisconnect) as closed:
                while True:
                    socket.receive_json()
            assert closed.value.code == 4401, name
            assert closed.value.reason == "the API key was revoked", name


def assert_streams_end_on_revocation(data_dir: Path, submit_on: Service, sse_on: Service,
                                     ws_on: Service, database_url: str | None = None) -> None:
    key = submit_on.create_key("alpha", "revoked")
    bystander = submit_on.create_key("alpha", "bystander")
    job = submit_on.submit(sine_wav(0.5), "waiting.wav", headers=bearer(key))
    with ExitStack() as stack:
        streams = Streams(stack, key, job["id"], sse_on, ws_on)
        other = stack.enter_context(ws_on.client.websocket_connect(
            f"{API}/ws", headers=bearer(bystander)))
        assert other.receive_json() == {"type": "ready"}

        revoke_with_the_cli(data_dir, key, database_url)
        # Ending within seconds is the promise under test; see ENDS_WITHIN.
        returns_within(streams.assert_all_end, ENDS_WITHIN,
                       "the streams stayed open after their key was revoked")
        # The revoked key is refused at once, not after its cache entry expires.
        assert_error(sse_on.client.get(JOBS, headers=bearer(key)), 401, "UNAUTHORIZED")
        # Another key of the same tenant still hears its feed.
        later = submit_on.submit(sine_wav(0.5), "later.wav", headers=bearer(bystander))
        assert other.receive_json()["job_id"] == later["id"]


def test_embedded_streams_end_when_their_key_is_revoked(tmp_path: Path) -> None:
    settings = service_settings(tmp_path / "data", allow_anonymous=False)
    with serve(settings, workers=False) as svc:
        assert_streams_end_on_revocation(settings.data_dir, svc, svc, svc)


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[Service, Service, Path, str]]:
    with throwaway_postgres() as database_url, RedisServer(tmp_path / "redis") as redis:
        settings = service_settings(tmp_path / "data", allow_anonymous=False,
                                    database_url=database_url, events_url=redis.url)
        with serve(settings, workers=False) as first, serve(settings, workers=False) as second:
            for replica in (first, second):
                bus: Any = replica.state.bus
                assert isinstance(bus, RedisBus) and bus.wait_connected(10.0)
            yield first, second, settings.data_dir, database_url


def test_scaled_streams_on_every_replica_end_when_their_key_is_revoked(
        replicas: tuple[Service, Service, Path, str]) -> None:
    first, second, data_dir, database_url = replicas
    # Submitted through one replica; SSE held by it, WebSockets by the other.
    assert_streams_end_on_revocation(data_dir, first, first, second, database_url)
