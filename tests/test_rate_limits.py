"""Request rates per key: counted on every authenticated route, told in X-RateLimit-*
headers, refused past the rate with 429 RATE_LIMITED and Retry-After; a key's own rate
overrides the server's; the person at the machine is not limited."""

from __future__ import annotations

import json
import time

import pytest
from limits.strategies import SlidingWindowCounterRateLimiter
from starlette.websockets import WebSocketDisconnect
from typer.testing import CliRunner

from hark.api.rate_limit import SweptMemoryStorage, rate_storage
from hark.cli import app as cli
from hark.keys.service import parse_rate
from tests.support.service import (
    API,
    JOBS,
    Service,
    assert_error,
    bearer,
    commands_on,
    service_fixture,
)

svc = service_fixture("rates", workers=False, rate_limit="5/minute")
runner = CliRunner()


def test_a_key_is_refused_past_its_rate_and_told_how_long_to_wait(svc: Service) -> None:
    key, other = svc.create_key("rates-a"), svc.create_key("rates-b")
    remaining = []
    for _ in range(5):
        answer = svc.client.get(JOBS, headers=bearer(key))
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-ratelimit-limit"] == "5"
        remaining.append(int(answer.headers["x-ratelimit-remaining"]))
        assert int(answer.headers["x-ratelimit-reset"]) > time.time()
    assert remaining == [4, 3, 2, 1, 0]
    refused = svc.client.get(f"{JOBS}/no-such-job", headers=bearer(key))
    body = assert_error(refused, 429, "RATE_LIMITED")
    assert body["details"]["limit"] == 5
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-remaining"] == "0"
    # Every route counts, the OpenAI API too (in its own error shape).
    openai = svc.client.get("/v1/models", headers=bearer(key))
    assert openai.status_code == 429 and openai.json()["error"]["message"]
    # Another key has its own window.
    assert svc.client.get(JOBS, headers=bearer(other)).status_code == 200


def test_a_keys_own_rate_overrides_the_servers(svc: Service) -> None:
    tight = svc.create_key("rates-c", rate_limit="2/minute")
    loose = svc.create_key("rates-d", rate_limit="unlimited")
    codes = [svc.client.get(JOBS, headers=bearer(tight)).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    for _ in range(12):
        answer = svc.client.get(JOBS, headers=bearer(loose))
        assert answer.status_code == 200 and "x-ratelimit-limit" not in answer.headers


def test_the_usage_endpoint_tells_the_keys_window(svc: Service) -> None:
    key = svc.create_key("rates-e")
    usage = svc.client.get(f"{API}/usage", headers=bearer(key)).json()
    assert usage["requests"]["rate"] == "5/minute"
    assert usage["requests"]["remaining"] == 4 and usage["requests"]["reset"] > time.time()


def test_the_local_person_and_open_paths_are_not_counted(svc: Service) -> None:
    for _ in range(8):
        answer = svc.client.get(JOBS)  # anonymous on loopback
        assert answer.status_code == 200 and "x-ratelimit-limit" not in answer.headers
        assert svc.client.get("/health/live").status_code == 200


def test_a_socket_past_the_rate_is_closed_with_4429(svc: Service) -> None:
    key = svc.create_key("rates-f", rate_limit="1/minute")
    assert svc.client.get(JOBS, headers=bearer(key)).status_code == 200
    with pytest.raises(WebSocketDisconnect) as closed, \
            svc.client.websocket_connect(f"{API}/live", headers=bearer(key)) as socket:
        socket.receive_json()
    assert closed.value.code == 4429


@pytest.mark.parametrize("rate", ["abc", "5/fortnight", "-3/minute", "1/second;x"])
def test_a_rate_that_is_not_one_is_refused_by_the_command(svc: Service, rate: str,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    with commands_on(svc, monkeypatch):
        made = runner.invoke(cli, ["keys", "create", "--rate-limit", rate, "--json"])
        assert made.exit_code == 1 and "INVALID_OPTION" in made.output, made.output
        good = runner.invoke(cli, ["keys", "create", "--rate-limit", "30/minute", "--json"])
        assert good.exit_code == 0, good.output
        created = json.loads(good.stdout)
        assert created["rate_limit"] == "30/minute"
        changed = runner.invoke(cli, ["keys", "rate", created["id"], "--", rate])
        assert changed.exit_code == 1 and "INVALID_OPTION" in changed.output
        reset = runner.invoke(cli, ["keys", "rate", created["id"]])
        assert reset.exit_code == 0 and "the server's rate" in reset.stdout


def test_memory_counters_start_no_sweeper_thread_per_hit_and_still_expire() -> None:
    # limits' memory storage would start a sweeper thread every 10 ms under load; ours
    # sweeps at most once a second, and a counter's window still ends on time.
    storage = rate_storage("memory://")
    assert isinstance(storage, SweptMemoryStorage)
    limiter = SlidingWindowCounterRateLimiter(storage)
    item = parse_rate("3/second")[0]
    sweepers = set()
    for _ in range(3):
        assert limiter.hit(item, "key", "k1")
        time.sleep(0.03)  # longer than the library's 10 ms sweeper delay
        sweepers.add(id(storage.timer))
    assert not limiter.hit(item, "key", "k1")
    assert len(sweepers) == 1
    time.sleep(2.1)  # the window and the one before it have passed
    assert limiter.hit(item, "key", "k1")
    assert limiter.hit(item, "key", "k2")
