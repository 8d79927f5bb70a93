"""The tenant's job feed (`GET /api/v1/events`, `WS /api/v1/ws`) against the real app.

Jobs are submitted every way the service takes them (multipart upload, the
OpenAI-compatible endpoint, a retry) while subscribers of two tenants listen; a
subscriber's stream has no end, so "heard nothing of it" is shown by the next event
it hears being one published later (events of one process keep their order). Last,
two app instances that share a database and a redis-server stand for two API
replicas: a job submitted through one is announced to the feed of the other.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from hark.events.memory import InProcessBus
from hark.events.redis import RedisBus
from hark.jobs import feed, feed_endpoints
from tests.support.common import wait_for
from tests.support.redis_server import RedisServer
from tests.support.service import (
    API,
    JOBS,
    Service,
    assert_error,
    bearer,
    fixture_bytes,
    serve,
    service_fixture,
    service_settings,
    speech_wav,
)

# A missing event would otherwise block a read until the suite's own, much longer limit.
pytestmark = pytest.mark.timeout(180)

FEED_WS = f"{API}/ws"
FEED_SSE = f"{API}/events"
WAIT = 10.0


svc = service_fixture("feed", allow_anonymous=False)


@pytest.fixture(scope="module")
def alpha(svc: Service) -> str:
    return svc.create_key("alpha")


@pytest.fixture(scope="module")
def beta(svc: Service) -> str:
    return svc.create_key("beta")


def ready(socket: WebSocketTestSession) -> WebSocketTestSession:
    """The socket, once its feed listens."""
    assert socket.receive_json() == {"type": "ready"}
    return socket


class SseFeed:
    """Events read from an open `GET /api/v1/events` stream."""

    def __init__(self, lines: Iterator[str]) -> None:
        self.lines = lines

    def next(self) -> dict[str, Any]:
        """The next event (keep-alive comments skipped); its `event:` line is its type."""
        kind = None
        for line in self.lines:
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                event: dict[str, Any] = json.loads(line.removeprefix("data: "))
                assert event["type"] == kind, (kind, event)
                return event
        raise AssertionError("the feed ended")


def wait_unsubscribed(svc: Service, tenant: str) -> None:
    """The server let go of every feed subscription of `tenant`."""
    bus = svc.state.bus
    assert isinstance(bus, InProcessBus)
    wait_for(lambda: bus.subscriber_count(feed.channel(tenant)) == 0, WAIT, interval=0.02,
             message="a feed subscription outlived its client")


# --- who may listen -----------------------------------------------------------------------

@pytest.mark.parametrize("headers, query", [
    ({}, ""),
    ({"Authorization": "Bearer hark_not-a-real-key"}, ""),
    ({"X-API-Key": "hark_not-a-real-key"}, ""),
    ({}, "?api_key=hark_not-a-real-key"),
], ids=["none", "bad-bearer", "bad-x-api-key", "bad-query-key"])
def test_a_feed_without_a_valid_key_is_refused(svc: Service, headers: dict[str, str],
                                               query: str) -> None:
    with pytest.raises(WebSocketDisconnect) as closed, \
            svc.client.websocket_connect(FEED_WS + query, headers=headers) as socket:
        socket.receive_json()
    assert closed.value.code == 4401
    assert "key" in closed.value.reason
    response = svc.client.get(FEED_SSE + query, headers=headers)
    assert_error(response, 401, "UNAUTHORIZED")
    assert response.headers["www-authenticate"] == "Bearer"


def test_a_key_in_the_url_opens_the_websocket_feed(svc: Service, alpha: str) -> None:
    # Browsers cannot set headers on a WebSocket.
    with svc.client.websocket_connect(f"{FEED_WS}?api_key={alpha}") as socket:
        ready(socket)
    wait_unsubscribed(svc, "alpha")


def test_the_sse_feed_sends_keep_alives(svc: Service, alpha: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feed_endpoints, "KEEPALIVE_SECONDS", 0.05)
    with svc.client.stream("GET", FEED_SSE, headers=bearer(alpha)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        lines = response.iter_lines()
        assert [next(lines), next(lines), next(lines)] == [
            "event: ready", 'data: {"type": "ready"}', ""]
        assert next(lines) == ": keep-alive"
    wait_unsubscribed(svc, "alpha")


# --- what is heard ----------------------------------------------------------------------------

def test_an_upload_is_announced_to_its_tenant_only(svc: Service, alpha: str,
                                                   beta: str) -> None:
    with svc.client.websocket_connect(FEED_WS, headers=bearer(alpha)) as alpha_ws, \
            svc.client.websocket_connect(FEED_WS, headers=bearer(beta)) as beta_ws, \
            svc.client.stream("GET", FEED_SSE, headers=bearer(alpha)) as response:
        ready(alpha_ws)
        ready(beta_ws)
        alpha_sse = SseFeed(response.iter_lines())
        assert alpha_sse.next() == {"type": "ready"}

        job = svc.submit(speech_wav(1.0), "alpha.wav", headers=bearer(alpha))
        expected = {"type": "created", "job_id": job["id"], "job": job}
        # The job as the API answered it: a client can add it to its list as it is.
        assert alpha_ws.receive_json() == expected
        assert alpha_sse.next() == expected

        # Beta's feed heard nothing of alpha's job: its next event is its own job.
        beta_job = svc.submit(speech_wav(1.0), "beta.wav", headers=bearer(beta))
        assert beta_ws.receive_json() == {"type": "created", "job_id": beta_job["id"],
                                          "job": beta_job}
        # ...and alpha's feeds heard nothing of beta's: theirs is the next alpha job.
        second = svc.submit(speech_wav(1.0), "alpha-2.wav", headers=bearer(alpha))
        assert alpha_ws.receive_json()["job_id"] == second["id"]
        assert alpha_sse.next()["job_id"] == second["id"]
    wait_unsubscribed(svc, "alpha")
    wait_unsubscribed(svc, "beta")
    for job_id, key in ((job["id"], alpha), (beta_job["id"], beta), (second["id"], alpha)):
        assert svc.wait(job_id, headers=bearer(key))["status"] == "completed"


def test_an_openai_request_is_announced(svc: Service, alpha: str) -> None:
    with svc.client.websocket_connect(FEED_WS, headers=bearer(alpha)) as socket:
        ready(socket)
        # The request waits for its job, which the feed announced as soon as it existed.
        response = svc.client.post(
            "/v1/audio/transcriptions", headers=bearer(alpha),
            files={"file": ("call.ogg", fixture_bytes(), "audio/ogg")},
            data={"model": "whisper-1", "response_format": "json"})
        assert response.status_code == 200, response.text
        event = socket.receive_json()
    assert event["type"] == "created"
    job = event["job"]
    assert event["job_id"] == job["id"]
    assert job["filename"] == "call.ogg" and job["status"] == "queued"
    assert job["links"]["self"] == f"{JOBS}/{job['id']}"
    listed = svc.job(job["id"], bearer(alpha))
    assert listed["status"] == "completed"
    assert (listed["created_at"], listed["options"]) == (job["created_at"], job["options"])


def test_a_retry_and_a_purge_are_announced(svc: Service, alpha: str) -> None:
    headers = bearer(alpha)
    with svc.client.websocket_connect(FEED_WS, headers=headers) as socket:
        ready(socket)
        original = svc.submit(speech_wav(6.0), "retried.wav", headers=headers)
        canceled = svc.client.delete(f"{JOBS}/{original['id']}", headers=headers).json()
        assert canceled["status"] == "canceled", canceled
        response = svc.client.post(f"{JOBS}/{original['id']}/retry", headers=headers)
        assert response.status_code == 202, response.text
        retried = response.json()
        purged = svc.client.delete(f"{JOBS}/{original['id']}", params={"purge": "true"},
                                   headers=headers).json()
        svc.client.delete(f"{JOBS}/{retried['id']}", headers=headers)
        # A plain cancel changes no list (the job's own stream tells of it): nothing here.
        assert socket.receive_json() == {"type": "created", "job_id": original["id"],
                                         "job": original}
        assert socket.receive_json() == {"type": "created", "job_id": retried["id"],
                                         "job": retried}
        # Purged jobs stay listed, marked purged.
        assert socket.receive_json() == {"type": "purged", "job_id": original["id"],
                                         "job": purged}
    assert purged["purged"] is True
    assert original["id"] in svc.job_ids(headers)


# --- across replicas --------------------------------------------------------------------------

@pytest.mark.services  # a redis-server of its own
def test_replicas_share_the_feed_through_redis(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as redis:
        settings = service_settings(tmp_path / "data", allow_anonymous=False,
                                    events_url=redis.url)
        with serve(settings, workers=False) as listening, \
                serve(settings, workers=False) as submitting:
            for replica in (listening, submitting):
                bus = replica.state.bus
                assert isinstance(bus, RedisBus) and bus.wait_connected(WAIT)
            alpha = listening.create_key("alpha")
            beta = listening.create_key("beta")
            with listening.client.websocket_connect(FEED_WS, headers=bearer(alpha)) as alpha_ws, \
                    listening.client.websocket_connect(FEED_WS,
                                                       headers=bearer(beta)) as beta_ws:
                ready(alpha_ws)
                ready(beta_ws)
                job = submitting.submit(speech_wav(1.0), "elsewhere.wav",
                                        headers=bearer(alpha))
                assert alpha_ws.receive_json() == {"type": "created", "job_id": job["id"],
                                                   "job": job}
                beta_job = submitting.submit(speech_wav(1.0), "beta.wav",
                                             headers=bearer(beta))
                assert beta_ws.receive_json()["job_id"] == beta_job["id"]
