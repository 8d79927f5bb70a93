"""The bus of embedded mode: subscribers in this process, fed from any thread.

Each subscriber owns an asyncio queue on its own loop; `publish` hands the event
to that loop with `call_soon_threadsafe`, so worker relay threads never block on a
slow client. A subscriber that falls `max_backlog` events behind is dropped (its
stream ends) rather than letting memory grow without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator

from hark.events.base import Event

_CLOSED: Event = {"type": "__closed__"}


class _MemorySubscription:
    def __init__(self, bus: InProcessBus, job_id: str, max_backlog: int) -> None:
        self._bus = bus
        self.job_id = job_id
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.max_backlog = max_backlog
        self.closed = False

    def deliver(self, event: Event) -> None:
        """Runs on the subscriber's loop."""
        if self.closed:
            return
        if self.queue.qsize() >= self.max_backlog:
            self.close()
            self.queue.put_nowait(_CLOSED)
            return
        self.queue.put_nowait(event)

    async def get(self, timeout: float | None = None) -> Event | None:
        if self.closed and self.queue.empty():
            raise StopAsyncIteration
        try:
            event = await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None
        if event is _CLOSED:
            raise StopAsyncIteration
        return event

    async def __anext__(self) -> Event:
        event = await self.get()
        assert event is not None
        return event

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._bus._remove(self)


class InProcessBus:
    def __init__(self, max_backlog: int = 10_000) -> None:
        self._subscribers: dict[str, set[_MemorySubscription]] = {}
        self._lock = threading.Lock()
        self.max_backlog = max_backlog

    def publish(self, job_id: str, event: Event) -> None:
        with self._lock:
            targets = list(self._subscribers.get(job_id, ()))
        for subscription in targets:
            try:
                subscription.loop.call_soon_threadsafe(subscription.deliver, event)
            except RuntimeError:  # its loop has shut down
                subscription.close()

    def subscribe(self, job_id: str) -> _MemorySubscription:
        subscription = _MemorySubscription(self, job_id, self.max_backlog)
        with self._lock:
            self._subscribers.setdefault(job_id, set()).add(subscription)
        return subscription

    def subscriber_count(self, job_id: str | None = None) -> int:
        with self._lock:
            if job_id is not None:
                return len(self._subscribers.get(job_id, ()))
            return sum(len(s) for s in self._subscribers.values())

    def close(self) -> None:
        self.end_subscriptions()

    def end_subscriptions(self) -> None:
        with self._lock:
            subscriptions = [s for group in self._subscribers.values() for s in group]
        for subscription in subscriptions:
            with contextlib.suppress(RuntimeError):
                subscription.loop.call_soon_threadsafe(subscription.queue.put_nowait, _CLOSED)
            subscription.close()

    def _remove(self, subscription: _MemorySubscription) -> None:
        with self._lock:
            group = self._subscribers.get(subscription.job_id)
            if group is not None:
                group.discard(subscription)
                if not group:
                    del self._subscribers[subscription.job_id]


