"""What every request handler can reach: the service's adapters, built once at startup."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from fastapi import Request

from hark.config import Settings
from hark.db import Database
from hark.events.base import EventBus
from hark.jobs.queue import JobQueue
from hark.jobs.reader import JobRowReader
from hark.storage.base import Storage
from hark.workers.pool import WorkerPool


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant, through an API key (or anonymously, when allowed)."""

    tenant_id: str
    api_key_id: str | None
    # The highest job priority this caller may ask for (0: normal).
    max_priority: int = 0


@dataclass
class KeyCache:
    """Recently seen keys, so the hot status endpoint does not hash-and-query each time.

    Entries live `ttl` seconds: a revoked key stops working within that time.
    """

    ttl: float = 5.0
    _entries: dict[str, tuple[float, Principal]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, digest: str) -> Principal | None:
        with self._lock:
            entry = self._entries.get(digest)
        if entry is None or time.monotonic() - entry[0] > self.ttl:
            return None
        return entry[1]

    def put(self, digest: str, principal: Principal) -> None:
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[digest] = (time.monotonic(), principal)


@dataclass
class ServiceState:
    settings: Settings
    db: Database
    storage: Storage
    bus: EventBus
    queue: JobQueue
    pool: WorkerPool | None
    anonymous: bool
    job_reader: JobRowReader | None = None
    """Status reads on the event loop's own connection (SQLite only)."""
    keys: KeyCache = field(default_factory=KeyCache)
    started_at: float = field(default_factory=time.time)


async def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.hark
    return state
