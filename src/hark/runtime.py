"""The running service, composed: database, storage, event bus, job queue, the embedded
worker pool and the background threads (webhook dispatcher, storage janitor, scaled
mode's reconciler), built once from the settings and stopped in reverse.

`hark serve` builds one in its app's lifespan; request handlers and services reach it
as `ServiceState`. Nothing here knows about HTTP.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from cachetools import TTLCache

from hark import __version__
from hark.config import Settings
from hark.db import Database, display_url, open_database
from hark.events import InProcessBus
from hark.events.base import EventBus
from hark.jobs.queue import JobQueue, NoWorkers
from hark.jobs.reader import JobReader
from hark.logs import configure_logging
from hark.metrics import record_job, record_model_load
from hark.principal import Principal
from hark.storage import open_storage
from hark.storage.base import Storage
from hark.workers.pool import PoolListener, WorkerPool

log = logging.getLogger("hark.server")

# Keys recently seen, so the hot status endpoint need not hash and query each time; an
# entry lives this long, so a revoked key stops working within it.
KEY_CACHE_SECONDS = 5.0
KEY_CACHE_SIZE = 10_000


class Service(Protocol):
    """A background thread of the runtime."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")


def anonymous_allowed(settings: Settings) -> bool:
    """Anonymous access needs both the setting and a loopback-only bind address."""
    return settings.allow_anonymous and is_loopback(settings.host)


@dataclass
class ServiceState:
    settings: Settings
    db: Database
    storage: Storage
    bus: EventBus
    queue: JobQueue
    pool: WorkerPool | None
    anonymous: bool
    keys: TTLCache[str, Principal] = field(
        default_factory=lambda: TTLCache(KEY_CACHE_SIZE, KEY_CACHE_SECONDS))
    started_at: float = field(default_factory=time.time)
    services: list[Service] = field(default_factory=list)
    # How the API reads a job's status (see JobReader).
    job_reader: JobReader | None = None

    def stop(self) -> None:
        """Workers hand their running jobs back; threads, bus and database close."""
        log.info("shutting down")
        if self.pool is not None:
            self.pool.stop()
        for service in reversed(self.services):
            service.stop()
        self.bus.close()
        if self.job_reader is not None:
            self.job_reader.close()
        self.db.dispose()


def start(settings: Settings, *, workers: bool = True,
          queues: tuple[str, ...] | None = None) -> ServiceState:
    """Open everything the service needs and start its threads and workers."""
    configure_logging(settings.log_level, settings.log_format)
    db = open_database(settings.database)
    storage = open_storage(settings)
    bus = _event_bus(settings)
    pool: WorkerPool | None = None
    queue: JobQueue = NoWorkers()
    if settings.broker_url:
        from hark.workers.celery_app import CeleryQueue, make_celery

        queue = CeleryQueue(make_celery(settings), settings.max_audio_seconds)
        if workers:
            log.info("HARK_BROKER_URL is set: jobs go to `hark worker` processes, "
                     "this server runs none itself")
    elif workers:
        pool = WorkerPool(settings, db, PoolListener(
            on_event=bus.publish, on_job_finished=record_job,
            on_model_loaded=record_model_load), queues=queues)
        queue = pool
    state = ServiceState(settings=settings, db=db, storage=storage, bus=bus, queue=queue,
                         pool=pool, anonymous=anonymous_allowed(settings),
                         job_reader=JobReader(db))
    state.services = _background(state)
    if pool is not None:
        pool.start()
    for service in state.services:
        service.start()
    log.info("hark %s serving on %s:%s; database %s; storage %s; %s workers", __version__,
             settings.host, settings.port, display_url(db.url), storage.name,
             pool.expected if pool else "no")
    _log_access_mode(settings, state.anonymous)
    return state


def _background(state: ServiceState) -> list[Service]:
    from hark.jobs.janitor import janitor
    from hark.jobs.reconcile import reconciler
    from hark.organisations.retention import retention_sweeper
    from hark.webhooks.dispatch import WebhookDispatcher

    services: list[Service] = [WebhookDispatcher(state.settings, state.db),
                               janitor(state.db, state.storage),
                               retention_sweeper(state.db, state.storage,
                                                 state.settings.retention_sweep_seconds)]
    if state.settings.broker_url:
        services.append(reconciler(state.settings, state.db, state.queue, state.bus))
    return services


def _event_bus(settings: Settings) -> EventBus:
    url = settings.events_redis_url
    if url is None:
        return InProcessBus()
    from hark.events.redis import RedisBus

    return RedisBus(url)


def _log_access_mode(settings: Settings, anonymous: bool) -> None:
    if anonymous:
        log.warning("anonymous access is ON: requests without an API key act as tenant "
                    "'local' (allowed because the server is bound to loopback %s)",
                    settings.host)
    elif settings.allow_anonymous:
        log.warning("HARK_ALLOW_ANONYMOUS is set but ignored: the server is bound to %s, "
                    "not a loopback address; every request needs an API key", settings.host)
    else:
        log.info("every request needs an API key (create one with `hark keys create`)")
