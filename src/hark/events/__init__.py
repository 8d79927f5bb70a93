"""Live job events: one small bus interface, an in-process implementation, and the
Redis pub/sub one of scaled mode (imported on first use: it needs the `redis` package)."""

from typing import TYPE_CHECKING, Any

from hark.events.base import Event, EventBus, Subscription
from hark.events.memory import InProcessBus

if TYPE_CHECKING:
    from hark.events.redis import RedisBus, RedisWorkerChannel

__all__ = ["Event", "EventBus", "InProcessBus", "RedisBus", "RedisWorkerChannel",
           "Subscription"]


def __getattr__(name: str) -> Any:
    if name in ("RedisBus", "RedisWorkerChannel"):
        from hark.events import redis as redis_events

        return getattr(redis_events, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
