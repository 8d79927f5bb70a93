"""Event streams end within seconds of their key being revoked by `hark keys revoke`,
or of their sign-in being ended (signed out, the person disabled).

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

from hark.accounts.service import create_user, disable, find_user
from hark.audit.actor import COMMAND_LINE
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
GONE = "the API key was revoked or the sign-in ended"
REVOKED = {"type": "error", "error": GONE, "error_code": "UNAUTHORIZED"}


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
            assert closed.value.reason == GONE, name


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


@pytest.mark.services  # PostgreSQL and a redis-server (the `replicas` fixture)
def test_scaled_streams_on_every_replica_end_when_their_key_is_revoked(
        replicas: tuple[Service, Service, Path, str]) -> None:
    first, second, data_dir, database_url = replicas
    # Submitted through one replica; SSE held by it, WebSockets by the other.
    assert_streams_end_on_revocation(data_dir, first, first, second, database_url)


def login(svc: Service, email: str) -> dict[str, Any]:
    answer = svc.client.post(f"{API}/auth/login",
                             json={"email": email, "password": "correct horse battery"})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_streams_end_when_their_sign_in_ends_or_their_person_is_disabled(
        tmp_path: Path) -> None:
    settings = service_settings(tmp_path / "data", allow_anonymous=False)
    with serve(settings, workers=False) as svc:
        with svc.state.db.session(write=True) as session:
            for email in ("ana@acme.test", "bo@acme.test"):
                create_user(session, email=email, organisation="acme", role="member",
                            password="correct horse battery", actor=COMMAND_LINE)
        ana, other_sign_in = login(svc, "ana@acme.test"), login(svc, "ana@acme.test")
        with svc.state.db.session() as session:
            bo_id = find_user(session, "bo@acme.test").id
        bo_key = svc.create_key("acme", scopes="jobs:read", user_id=bo_id)
        job = svc.submit(sine_wav(0.5), "waiting.wav",
                         headers=bearer(ana["access_token"]))
        with ExitStack() as stack:
            streams = Streams(stack, ana["access_token"], job["id"], svc, svc)
            second = stack.enter_context(svc.client.websocket_connect(
                f"{API}/ws", headers=bearer(other_sign_in["access_token"])))
            assert second.receive_json() == {"type": "ready"}
            bo = stack.enter_context(svc.client.websocket_connect(
                f"{API}/ws", headers=bearer(bo_key)))
            assert bo.receive_json() == {"type": "ready"}

            # Signing out ends that sign-in's streams; her other sign-in goes on.
            out = svc.client.post(f"{API}/auth/logout",
                                  json={"refresh_token": ana["refresh_token"]})
            assert out.status_code == 204, out.text
            returns_within(streams.assert_all_end, ENDS_WITHIN,
                           "the streams stayed open after their sign-in ended")
            later = svc.submit(sine_wav(0.5), "later.wav",
                               headers=bearer(other_sign_in["access_token"]))
            assert second.receive_json()["job_id"] == later["id"]

            # A disabled person's key ends its streams too.
            with svc.state.db.session(write=True) as session:
                disable(session, find_user(session, "bo@acme.test"), actor=COMMAND_LINE)

            def bo_ends() -> None:
                with pytest.raises(WebSocketDisconnect) as closed:
                    while True:
                        bo.receive_json()
                assert closed.value.code == 4401

            returns_within(bo_ends, ENDS_WITHIN, "a disabled person's key kept its stream")
