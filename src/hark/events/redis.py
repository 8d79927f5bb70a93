"""The bus of scaled mode: events cross processes and machines through Redis pub/sub.

Each job's events go to the channel `hark:events:<job_id>`. Every API process holds
ONE pub/sub connection, PSUBSCRIBEd to `hark:events:*` by a listener thread, and fans
what arrives out to its own subscribers through an `InProcessBus`; so 500 SSE clients
cost one Redis connection, not 500. `publish` only sends to Redis: the event comes
back through the listener like anyone else's, so a local subscriber gets it once.

Events are best-effort. The job's row in the database is the truth, and SSE/WebSocket
handlers send the current state first, so a client that reconnects after a gap is
whole again. Hence, when Redis is away:
- `publish` never blocks or raises: it queues the serialized event for a sender thread
  and returns; the sender drops what it cannot deliver (logging once per outage) and
  backs off (0.1 s doubling to 2 s) rather than holding a worker or a request;
- the listener reconnects with the same backoff and subscribes again, without a
  restart. Events published while it was away are lost (pub/sub keeps no history).
A connection that dies without a reset (a vanished host, a frozen server) is noticed by
a PING on the pub/sub connection every `health_check_interval` seconds: no reply at all
for two intervals means dead, and the listener reconnects. Socket timeouts bound every
connect and command.

Per publishing process, events keep their order (one sender thread, one connection);
events of one job from two processes (a worker and the API's cancel) have no common
order, as with any two publishers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from hark import metrics
from hark.errors import MissingDependencyError
from hark.events.base import Event, Subscription
from hark.events.memory import InProcessBus

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError as exc:  # embedded mode does not need it
    raise MissingDependencyError("redis", extra="scaled") from exc

log = logging.getLogger("hark.events")

DEFAULT_CHANNEL_PREFIX = "hark:events:"
BACKOFF_INITIAL_SECONDS = 0.1
BACKOFF_MAX_SECONDS = 2.0
# Bounds on each connect and each command; a publish is tiny, so 1 s is generous.
CONNECT_TIMEOUT_SECONDS = 1.0
COMMAND_TIMEOUT_SECONDS = 1.0
# The listener wakes this often to check for close() and for a due PING. (redis-py also
# uses it as the time allowed to read the rest of a message that has begun to arrive.)
LISTEN_POLL_SECONDS = 0.5
# Events waiting for the sender beyond this many are dropped (Redis is slow or away).
MAX_PENDING = 10_000
# Events sent in one pipelined round trip.
SEND_BATCH = 200
CLOSE_FLUSH_SECONDS = 2.0

_STOP = object()

_REDIS_ERRORS = (redis.RedisError, OSError)


def _client(url: str, name: str, health_check_interval: float) -> redis.Redis:
    # Our own loops back off; redis-py's default retries (with backoff) would stall them.
    # One immediate retry on a broken connection replaces a pooled connection that died
    # with a restarted server; none on a timeout, where the command may have run.
    return redis.Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_timeout=COMMAND_TIMEOUT_SECONDS, socket_keepalive=True,
        health_check_interval=health_check_interval,
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        client_name=name)


class _Backoff:
    def __init__(self) -> None:
        self.delay = BACKOFF_INITIAL_SECONDS

    def next(self) -> float:
        delay = self.delay
        self.delay = min(self.delay * 2, BACKOFF_MAX_SECONDS)
        return delay

    def reset(self) -> None:
        self.delay = BACKOFF_INITIAL_SECONDS


class RedisPublisher:
    """PUBLISH from any thread without waiting: a bounded queue and one sender thread.

    The thread starts on first use and again after a fork (a Celery prefork child
    inherits the object but not the thread).
    """

    def __init__(self, url: str, *, health_check_interval: float = 5.0,
                 client_name: str = "hark-events-publisher") -> None:
        self.url = url
        self.health_check_interval = health_check_interval
        self.client_name = client_name
        self.dropped = 0  # events lost to a full queue or an unreachable Redis
        self._lock = threading.Lock()
        self._pid = -1
        self._queue: queue.Queue[Any] = queue.Queue(MAX_PENDING)
        self._thread: threading.Thread | None = None
        self._closed = False

    def send(self, channel: str, message: dict[str, Any]) -> None:
        """Queue `message` (serialized now, so later changes to the dict do not leak)."""
        if self._closed:
            return
        try:
            data = json.dumps(message)
        except (TypeError, ValueError) as exc:
            log.warning("event on %s not sent, not JSON-serializable: %s", channel, exc)
            return
        self._ensure_thread()
        try:
            self._queue.put_nowait((channel, data))
        except queue.Full:
            self.dropped += 1

    def flush(self, timeout: float = CLOSE_FLUSH_SECONDS) -> bool:
        """Wait until everything queued so far was sent (or dropped); False on timeout."""
        if self._thread is None or self._pid != os.getpid():
            return True
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout: float = CLOSE_FLUSH_SECONDS) -> None:
        """Send what is queued (for up to `timeout` s), then stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread if self._pid == os.getpid() else None
        if thread is not None:
            self.flush(timeout)
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(_STOP)
            thread.join(timeout)

    def _ensure_thread(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid() or self._closed:
                return
            # A fresh queue: one inherited through fork may hold a lock taken mid-put.
            self._queue = queue.Queue(MAX_PENDING)
            self._thread = threading.Thread(target=self._run, name="hark-events-publisher",
                                            daemon=True)
            self._pid = os.getpid()
            self._thread.start()

    def _run(self) -> None:
        client = _client(self.url, self.client_name, self.health_check_interval)
        backoff = _Backoff()
        retry_at = 0.0
        failing = False
        dropped_in_outage = 0
        try:
            while True:
                batch = [self._queue.get()]
                while len(batch) < SEND_BATCH:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = any(item is _STOP for item in batch)
                items = [item for item in batch if item is not _STOP]
                try:
                    if items and time.monotonic() < retry_at:
                        dropped_in_outage += len(items)
                        self.dropped += len(items)
                    elif items:
                        try:
                            pipe = client.pipeline(transaction=False)
                            for channel, data in items:
                                pipe.publish(channel, data)
                            pipe.execute()
                        except _REDIS_ERRORS as exc:
                            dropped_in_outage += len(items)
                            self.dropped += len(items)
                            retry_at = time.monotonic() + backoff.next()
                            if not failing:
                                failing = True
                                log.warning("Redis unreachable at %s, dropping live events "
                                            "until it is back: %s", _display(self.url), exc)
                        else:
                            if failing:
                                log.info("Redis reachable again; %d live events were dropped",
                                         dropped_in_outage)
                            failing, dropped_in_outage = False, 0
                            backoff.reset()
                finally:
                    for _ in batch:
                        self._queue.task_done()
                if stop:
                    return
        finally:
            client.close()


class RedisBus:
    """An `EventBus` whose subscribers, in any process, hear publishers in any process."""

    def __init__(self, url: str, *, channel_prefix: str = DEFAULT_CHANNEL_PREFIX,
                 health_check_interval: float = 5.0, max_backlog: int = 10_000) -> None:
        self.url = url
        self.channel_prefix = channel_prefix
        self.health_check_interval = health_check_interval
        self.reconnects = 0  # times the listener subscribed again after losing Redis
        self._local = InProcessBus(max_backlog)
        self._publisher = RedisPublisher(url, health_check_interval=health_check_interval)
        self._subscriptions = 0
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._listener = threading.Thread(target=self._listen, name="hark-events-listener",
                                          daemon=True)
        self._listener.start()

    # -- EventBus ---------------------------------------------------------------------
    def publish(self, job_id: str, event: Event) -> None:
        self._publisher.send(self.channel_prefix + job_id, event)

    def subscribe(self, job_id: str) -> Subscription:
        return self._local.subscribe(job_id)

    def close(self) -> None:
        self._stop.set()
        self._publisher.close()
        self._listener.join(CONNECT_TIMEOUT_SECONDS + COMMAND_TIMEOUT_SECONDS + 1.0)
        self._local.close()

    # -- for readiness checks and tests -------------------------------------------------
    @property
    def connected(self) -> bool:
        """Whether the listener is subscribed now (events from elsewhere arrive)."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def end_subscriptions(self) -> None:
        self._local.end_subscriptions()

    def subscriber_count(self, job_id: str | None = None) -> int:
        return self._local.subscriber_count(job_id)

    @property
    def dropped(self) -> int:
        return self._publisher.dropped

    def flush(self, timeout: float = CLOSE_FLUSH_SECONDS) -> bool:
        return self._publisher.flush(timeout)

    # -- the listener thread ------------------------------------------------------------
    def _listen(self) -> None:
        backoff = _Backoff()
        failing = False
        while not self._stop.is_set():
            client = _client(self.url, "hark-events-listener", 0)
            # (through a typed name: redis-py leaves pubsub() unannotated)
            open_pubsub: Callable[[], Any] = client.pubsub
            pubsub = open_pubsub()
            try:
                pubsub.psubscribe(self.channel_prefix + "*")
                self._pump(pubsub)
            except _REDIS_ERRORS as exc:
                if not failing:
                    log.warning("lost the Redis event listener connection at %s, "
                                "reconnecting: %s", _display(self.url), exc)
                failing = True
            finally:
                if self._connected.is_set():
                    # Only a connection that got as far as subscribing ends an outage.
                    failing = False
                    backoff.reset()
                self._connected.clear()
                with contextlib.suppress(*_REDIS_ERRORS):
                    pubsub.close()
                with contextlib.suppress(*_REDIS_ERRORS):
                    client.close()
            self._stop.wait(backoff.next())

    def _pump(self, pubsub: Any) -> None:
        """Read messages until close() or a connection error (raised)."""
        prefix_length = len(self.channel_prefix)
        last_seen = time.monotonic()
        last_ping = last_seen
        interval = self.health_check_interval
        while not self._stop.is_set():
            message = pubsub.get_message(timeout=LISTEN_POLL_SECONDS)
            now = time.monotonic()
            if message is None:
                if interval > 0 and now - last_seen > 2 * interval:
                    raise redis.TimeoutError(f"no reply from Redis for {now - last_seen:.1f} s")
                if interval > 0 and now - last_ping >= interval:
                    pubsub.ping("hark-liveness")
                    last_ping = now
                continue
            last_seen = now
            kind = message["type"]
            if kind == "pmessage":
                job_id = _text(message["channel"])[prefix_length:]
                # Every process hears every job: decode only what someone here watches.
                if self._local.subscriber_count(job_id) == 0:
                    continue
                try:
                    event = json.loads(message["data"])
                except ValueError:
                    log.warning("ignored a malformed event on %s", _text(message["channel"]))
                    continue
                self._local.publish(job_id, event)
            elif kind == "psubscribe":
                self._subscriptions += 1
                if self._subscriptions > 1:
                    self.reconnects += 1
                    log.info("Redis event listener subscribed again")
                self._connected.set()


class RedisWorkerChannel:
    """The `WorkerChannel` of scaled-mode workers: events go to the job's Redis channel,
    where every API process's `RedisBus` hears them; metrics are counted in this worker
    process, whose own Prometheus endpoint `hark worker` serves (multiprocess mode adds
    up its pool's processes)."""

    def __init__(self, url: str, *, channel_prefix: str = DEFAULT_CHANNEL_PREFIX) -> None:
        self.channel_prefix = channel_prefix
        self._publisher = RedisPublisher(url, client_name="hark-worker-publisher")

    def publish(self, job_id: str, event: Event) -> None:
        self._publisher.send(self.channel_prefix + job_id, event)

    def job_finished(self, model: str, status: str, audio_seconds: float,
                     timings: dict[str, float]) -> None:
        metrics.record_job(model, status, audio_seconds, timings)

    def model_loaded(self, model: str) -> None:
        metrics.record_model_load(model)

    def flush(self, timeout: float = CLOSE_FLUSH_SECONDS) -> bool:
        return self._publisher.flush(timeout)

    def close(self) -> None:
        self._publisher.close()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _display(url: str) -> str:
    """The URL without its password, for logs."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
