"""The event bus interface.

An event is a JSON-ready dict: `{"type": ..., "job_id": ..., ...}` with type one of
`status`, `progress`, `segment`, `completed`, `failed`, `canceled`, on the job's id as
channel; a tenant's job feed uses channel `tenant/<tenant_id>` (`hark.jobs.feed`), with
`created` and `purged`. Publishers (job workers, the cancel endpoint) call `publish`
from any thread; subscribers (SSE and WebSocket handlers) iterate a `Subscription` on
the event loop. A bus does not keep history: a subscriber gets what is published after
it subscribed, so the handlers send the job's current state first, read after
subscribing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

Event = dict[str, Any]
TERMINAL_EVENTS = frozenset({"completed", "failed", "canceled"})


class Subscription(Protocol):
    def __aiter__(self) -> AsyncIterator[Event]: ...

    async def get(self, timeout: float | None = None) -> Event | None:
        """The next event, or None when `timeout` seconds pass without one."""
        ...

    def close(self) -> None: ...


class EventBus(Protocol):
    def publish(self, job_id: str, event: Event) -> None: ...

    def subscribe(self, job_id: str) -> Subscription:
        """Must be called on the event loop that will consume the subscription."""
        ...

    def end_subscriptions(self) -> None:
        """End every subscription open now (the server is stopping); publishing goes on.

        Event streams never finish by themselves, so a server waiting for its open
        requests would otherwise wait out its whole grace period on them.
        """
        ...

    def close(self) -> None: ...
