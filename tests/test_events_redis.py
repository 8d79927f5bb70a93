"""Live events across processes through a real redis-server (tests/support/redis_server.py).

Two `RedisBus` instances stand for two API processes and a `RedisWorkerChannel` for a
worker; each has its own Redis connections and threads, exactly as separate processes
would.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hark.events.base import Subscription
from hark.events.redis import RedisBus, RedisWorkerChannel
from tests.support.common import free_port, returns_within, wait_for, wait_for_async
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.services]

WAIT = 10.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as running:
        yield running


@pytest.fixture
def closing() -> Iterator[list[Any]]:
    """Buses and channels to close after the test, even a failed one."""
    opened: list[Any] = []
    yield opened
    for item in opened:
        item.close()


def make_bus(url: str, closing: list[Any], **options: Any) -> RedisBus:
    bus = RedisBus(url, **options)
    closing.append(bus)
    return bus


def make_channel(url: str, closing: list[Any]) -> RedisWorkerChannel:
    channel = RedisWorkerChannel(url)
    closing.append(channel)
    return channel


def event(job_id: str, seq: int, kind: str = "progress") -> dict[str, Any]:
    return {"type": kind, "job_id": job_id, "seq": seq, "progress": seq / 1000}


async def collect(subscription: Subscription, count: int, timeout: float = WAIT) -> list[Any]:
    """Up to `count` events, as many as arrive within `timeout` s."""
    received: list[Any] = []

    async def enough() -> bool:
        item = await subscription.get(0.1)
        if item is not None:
            received.append(item)
        return len(received) >= count

    await wait_for_async(enough, timeout, interval=0)
    return received


def returns_at_once(call: Callable[[], None], what: str) -> None:
    """`publish` and `close` never wait on Redis. The bound is the behaviour, and
    generous: a call that waited for an unreachable or frozen server would pay a 1 s
    connect or command timeout per event (or hang), not finish within it."""
    returns_within(call, WAIT, f"{what} waited on Redis")


async def heard_again(watch: Subscription, publish: Callable[[int], None], first: int) -> Any:
    """Publish numbered probes until one comes back through Redis; that event."""
    probe = first

    async def heard() -> Any:
        nonlocal probe
        publish(probe)
        probe += 1
        return await watch.get(0.2)

    return await wait_for_async(heard, WAIT, interval=0)


def hark_threads() -> list[str]:
    return [t.name for t in threading.enumerate()
            if t.name.startswith("hark-events") and t.is_alive()]


def test_worker_events_reach_every_api_process_in_order(server: RedisServer,
                                                        closing: list[Any]) -> None:
    api_a = make_bus(server.url, closing)
    api_b = make_bus(server.url, closing)
    worker = make_channel(server.url, closing)
    assert api_a.wait_connected(WAIT) and api_b.wait_connected(WAIT)

    async def scenario() -> None:
        on_a, on_b = api_a.subscribe("job-1"), api_b.subscribe("job-1")
        # The worker publishes from its own thread, as the job runner does.
        def run_job() -> None:
            for i in range(200):
                worker.publish("job-1", event("job-1", i))

        sender = threading.Thread(target=run_job)
        sender.start()
        got_a, got_b = await asyncio.gather(collect(on_a, 200), collect(on_b, 200))
        sender.join()
        expected = [event("job-1", i) for i in range(200)]
        assert got_a == expected
        assert got_b == expected

        # An API process's own publish (a cancel) reaches both, and its own
        # subscribers once: it comes back through Redis, not also directly.
        api_a.publish("job-1", event("job-1", 200, "canceled"))
        assert await collect(on_a, 1) == [event("job-1", 200, "canceled")]
        assert await collect(on_b, 1) == [event("job-1", 200, "canceled")]
        assert await on_a.get(0.3) is None
        on_a.close()
        on_b.close()

    asyncio.run(scenario())
    assert api_a.dropped == api_b.dropped == 0


def test_a_subscriber_hears_only_its_job(server: RedisServer, closing: list[Any]) -> None:
    bus = make_bus(server.url, closing)
    worker = make_channel(server.url, closing)
    assert bus.wait_connected(WAIT)

    async def scenario() -> None:
        job_a, job_b = bus.subscribe("job-a"), bus.subscribe("job-b")
        for i in range(5):
            worker.publish("job-b", event("job-b", i))
        worker.publish("job-a", event("job-a", 0))
        assert await collect(job_a, 1) == [event("job-a", 0)]
        assert await job_a.get(0.3) is None
        assert [e["seq"] for e in await collect(job_b, 5)] == [0, 1, 2, 3, 4]
        assert await job_b.get(0.1) is None

    asyncio.run(scenario())


def test_ending_subscriptions_keeps_the_bus_working(server: RedisServer,
                                                   closing: list[Any]) -> None:
    """What a stopping server does: open streams end, events still flow."""
    bus = make_bus(server.url, closing)
    worker = make_channel(server.url, closing)
    assert bus.wait_connected(WAIT)

    async def scenario() -> None:
        first, second = bus.subscribe("job-a"), bus.subscribe("job-b")
        worker.publish("job-a", event("job-a", 0))
        assert await collect(first, 1) == [event("job-a", 0)]
        bus.end_subscriptions()
        for ended in (first, second):
            with pytest.raises(StopAsyncIteration):
                await ended.get(WAIT)
        assert bus.subscriber_count() == 0
        later = bus.subscribe("job-a")
        worker.publish("job-a", event("job-a", 1))
        assert await collect(later, 1) == [event("job-a", 1)]

    asyncio.run(scenario())


def test_500_subscribers_share_one_redis_connection(server: RedisServer,
                                                    closing: list[Any]) -> None:
    bus = make_bus(server.url, closing)
    worker = make_channel(server.url, closing)
    assert bus.wait_connected(WAIT)

    async def scenario() -> None:
        subscriptions = [bus.subscribe(f"job-{i % 50}") for i in range(500)]
        assert bus.subscriber_count() == 500
        for job in range(50):
            worker.publish(f"job-{job}", event(f"job-{job}", job))
        results = await asyncio.gather(*(collect(s, 1) for s in subscriptions))
        for i, got in enumerate(results):
            assert got == [event(f"job-{i % 50}", i % 50)]
        names = server.client_names()
        # One listener and one publisher for the bus, one publisher for the worker.
        assert names.count("hark-events-listener") == 1
        assert len(names) <= 3, names
        for subscription in subscriptions:
            subscription.close()
        assert bus.subscriber_count() == 0

    asyncio.run(scenario())


def test_redis_restart_is_survived_without_restarting_the_process(
        server: RedisServer, closing: list[Any]) -> None:
    bus = make_bus(server.url, closing)
    worker = make_channel(server.url, closing)
    assert bus.wait_connected(WAIT)

    async def scenario() -> None:
        watch = bus.subscribe("job-r")
        worker.publish("job-r", event("job-r", 0))
        assert await collect(watch, 1) == [event("job-r", 0)]

        server.stop(hard=True)

        # During the outage, publishing neither blocks nor raises, worker or API.
        def publish_in_outage() -> None:
            for i in range(100):
                worker.publish("job-r", event("job-r", 1000 + i))
                bus.publish("job-r", event("job-r", 2000 + i))

        returns_at_once(publish_in_outage, "publishing during the outage")
        await wait_for_async(lambda: not bus.connected, WAIT,
                             message="the listener did not notice Redis going away")

        server.start()  # same port, empty server: the listener must subscribe again
        heard = await heard_again(
            watch, lambda seq: worker.publish("job-r", event("job-r", seq)), 10_000)
        assert heard is not None, "no event got through after Redis came back"
        assert bus.reconnects >= 1
        # The outage's events were dropped, not delivered late.
        assert heard["seq"] >= 10_000

        async def quiet() -> bool:  # the probes still in flight have arrived
            return await watch.get(0.3) is None

        await wait_for_async(quiet, WAIT, interval=0, message="probes kept arriving")

        # Both publishers (worker and API process) work again, each in order. Two
        # publishers on their own connections are not ordered between themselves, so
        # the API process publishes once the worker's events are in.
        for i in range(20):
            worker.publish("job-r", event("job-r", 20_000 + i))
        got = await collect(watch, 20)
        assert [e["seq"] for e in got] == list(range(20_000, 20_020))
        bus.publish("job-r", event("job-r", 30_000, "canceled"))
        assert [e["seq"] for e in await collect(watch, 1)] == [30_000]

    asyncio.run(scenario())
    assert worker._publisher.dropped > 0  # the outage's events, counted


def test_a_hung_redis_is_noticed_and_reconnected(server: RedisServer,
                                                 closing: list[Any]) -> None:
    """A server that stops answering without closing its sockets (SIGSTOP) is detected by
    the listener's liveness PING, not left as a silent, dead subscription."""
    bus = make_bus(server.url, closing, health_check_interval=0.3)
    worker = make_channel(server.url, closing)
    assert bus.wait_connected(WAIT)

    async def scenario() -> None:
        watch = bus.subscribe("job-h")
        # Idle but healthy: the PINGs are answered, so the connection is kept.
        await asyncio.sleep(5 * 0.3)
        assert bus.connected and bus.reconnects == 0
        server.pause()
        try:
            def publish_to_frozen() -> None:
                for i in range(50):
                    worker.publish("job-h", event("job-h", i))

            returns_at_once(publish_to_frozen, "publishing to a frozen server")
            await wait_for_async(lambda: not bus.connected, WAIT,
                                 message="a frozen Redis went unnoticed")
        finally:
            server.resume()
        assert await asyncio.to_thread(bus.wait_connected, WAIT)
        heard = await heard_again(
            watch, lambda seq: worker.publish("job-h", event("job-h", seq)), 1000)
        assert heard is not None, "no event got through after Redis was resumed"

    asyncio.run(scenario())


def test_close_stops_threads_and_connections(server: RedisServer) -> None:
    bus = RedisBus(server.url)
    worker = RedisWorkerChannel(server.url)
    assert bus.wait_connected(WAIT)
    ended: list[bool] = []

    async def scenario() -> None:
        watch = bus.subscribe("job-c")
        worker.publish("job-c", event("job-c", 0))
        worker.job_finished("pocketsphinx", "completed", 1.5, {"decode": 0.1})
        assert await collect(watch, 1) == [event("job-c", 0)]
        assert "hark-events-listener" in hark_threads()
        worker.close()
        bus.close()
        # A subscriber's stream ends when its bus closes.
        async for _ in watch:
            pass
        ended.append(True)

    asyncio.run(scenario())
    assert ended == [True]
    assert hark_threads() == []
    wait_for(lambda: server.client_names() == [], message=lambda: (
        f"connections left open after close: {server.client_names()}"))
    bus.publish("job-c", event("job-c", 1))  # after close: ignored, no thread revived
    assert hark_threads() == []


def test_no_redis_at_all_costs_callers_nothing() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    bus = RedisBus(url)
    worker = RedisWorkerChannel(url)
    def publish_all() -> None:
        for i in range(200):
            bus.publish("job-x", event("job-x", i))
            worker.publish("job-x", event("job-x", i))

    def close_both() -> None:
        worker.close()
        bus.close()

    try:
        returns_at_once(publish_all, "publishing with no Redis")
        assert not bus.wait_connected(0.5)
    finally:
        returns_at_once(close_both, "closing with no Redis")
    assert hark_threads() == []
    assert bus.dropped + worker._publisher.dropped == 400  # counted, none sent
