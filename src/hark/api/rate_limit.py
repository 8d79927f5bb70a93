"""Request rates per API key and per signed-in user: `limits`' sliding-window counters,
kept in memory in one process or in Redis, where every API replica counts against the
same window.

Every authenticated request is one hit on its key's rate (HARK_RATE_LIMIT, or the key's
own, in `limits`' notation: "600/minute", "10/second;1000/hour"). Responses carry
`X-RateLimit-Limit`, `-Remaining` and `-Reset` (epoch seconds) of the tightest window;
past it the request is refused with 429 RATE_LIMITED and `Retry-After`. The person at
the machine (anonymous access on loopback) is not limited.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem
from limits.storage import MemoryStorage, StorageTypes, storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hark.config import Settings
from hark.errors import RateLimitedError
from hark.keys.service import parse_rate
from hark.principal import Principal

STATE_KEY = "rate_limit"


@dataclass(frozen=True)
class RateDecision:
    limit: int
    remaining: int
    reset: float  # epoch seconds when the window has room again
    allowed: bool = True

    def headers(self) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(self.limit),
                "X-RateLimit-Remaining": str(self.remaining),
                "X-RateLimit-Reset": str(math.ceil(self.reset))}

    def refusal(self, message: str = "This rate of {limit} requests is used up; retry in "
                                      "{wait} s") -> RateLimitedError:
        wait = max(1, math.ceil(self.reset - time.time()))
        return RateLimitedError(message.format(limit=self.limit, wait=wait),
                                limit=self.limit, retry_after=wait)


class SweptMemoryStorage(MemoryStorage):
    """`limits`' memory storage, sweeping expired counters at most once a second.

    The library starts a sweeper thread 10 ms after every hit whose previous sweeper
    has ended, and `Thread.start` waits for the thread to run: under load that is a
    thread started on the event loop every 10 ms, about a seventh of a status poll's
    cost. The sweep only returns memory (reads drop an expired counter themselves),
    so sweeping less often changes no count.
    """

    SWEEP_EVERY = 1.0

    def __init__(self) -> None:
        self._next_sweep = 0.0
        super().__init__()

    # The library calls this hook by its private (name-mangled) name.
    def _MemoryStorage__schedule_expiry(self) -> None:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_EVERY
            super()._MemoryStorage__schedule_expiry()  # type: ignore[misc]


def rate_storage(url: str) -> StorageTypes:
    """The counters' storage for a `limits` storage URL."""
    return SweptMemoryStorage() if url == "memory://" else storage_from_string(url)


class RequestRates:
    """Counts each key's requests against its rate."""

    def __init__(self, settings: Settings) -> None:
        url = settings.rate_limit_storage_url or settings.events_redis_url or "memory://"
        self._limiter = SlidingWindowCounterRateLimiter(rate_storage(url))
        self._default = parse_rate(settings.rate_limit, "HARK_RATE_LIMIT")
        self._parsed: dict[str, list[RateLimitItem]] = {}

    def hit(self, principal: Principal) -> RateDecision | None:
        """Count one request: the refused window if any, else the tightest one (None:
        not limited)."""
        if principal.api_key_id is not None:
            kind, who = "key", principal.api_key_id
        elif principal.user_id is not None:
            kind, who = "user", principal.user_id
        else:
            return None
        return self.count(self._items(principal.rate_limit), kind, who)

    def attempt(self, rate: str, kind: str, who: str) -> None:
        """Count an attempt at something guarded (signing in, say); refuse it past `rate`."""
        decision = self.count(self._items(rate), kind, who)
        if decision is not None and not decision.allowed:
            raise decision.refusal("Too many attempts; retry in {wait} s")

    def count(self, items: list[RateLimitItem], kind: str, who: str) -> RateDecision | None:
        decision: RateDecision | None = None
        for item in items:
            allowed = self._limiter.hit(item, kind, who)
            stats = self._limiter.get_window_stats(item, kind, who)
            state = RateDecision(item.amount, stats.remaining, stats.reset_time, allowed)
            if not allowed:
                return state
            if decision is None or state.remaining < decision.remaining:
                decision = state
        return decision

    def _items(self, own: str | None) -> list[RateLimitItem]:
        """A rate's items, parsed once (None: the server's default)."""
        if own is None:
            return self._default
        items = self._parsed.get(own)
        if items is None:
            items = self._parsed[own] = parse_rate(own)
        return items


class RateLimitHeadersMiddleware:
    """Puts the request's rate state (left in `request.state` by authentication) on the
    response, refusals included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                decision = scope.get("state", {}).get(STATE_KEY)
                if isinstance(decision, RateDecision):
                    headers = MutableHeaders(scope=message)
                    for name, value in decision.headers().items():
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
