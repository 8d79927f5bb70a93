"""The FastAPI application of `hark serve`, with its adapters built at startup.

`create_app(settings)` returns the app; its lifespan opens the database (running
pending migrations), the storage and the event bus, starts the worker pool and the
webhook dispatcher, and on shutdown stops the workers so that their running jobs
go back to the queue.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from hark import __version__
from hark.api import metrics
from hark.api.auth import is_loopback
from hark.api.errors import install_error_handlers
from hark.api.logging import AccessLogMiddleware, configure_logging
from hark.api.request_id import RequestIdMiddleware
from hark.api.security import SecurityMiddleware
from hark.api.state import ServiceState
from hark.config import Settings
from hark.db import display_url, open_database
from hark.events import InProcessBus
from hark.events.base import EventBus
from hark.jobs.janitor import janitor as make_janitor
from hark.jobs.queue import JobQueue, NoWorkers
from hark.jobs.reader import JobRowReader
from hark.jobs.reconcile import reconciler as make_reconciler
from hark.jobs.repository import JobRepository
from hark.storage import open_storage
from hark.webhooks.dispatch import WebhookDispatcher
from hark.workers.pool import PoolListener, WorkerPool

log = logging.getLogger("hark.server")


def anonymous_allowed(settings: Settings) -> bool:
    """Anonymous access needs both the setting and a loopback-only bind address."""
    return settings.allow_anonymous and is_loopback(settings.host)


def create_app(
    settings: Settings, *, workers: bool = True, queues: tuple[str, ...] | None = None,
) -> FastAPI:
    """The app; `workers=False` serves the API only, `queues` limits what workers take."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = _start(settings, workers=workers, queues=queues)
        app.state.hark = state
        dispatcher = WebhookDispatcher(settings, state.db)
        janitor = make_janitor(state.db, state.storage)
        reconciler = make_reconciler(settings, state.db, state.queue, state.bus) \
            if settings.broker_url else None
        for service_thread in (dispatcher, janitor, reconciler):
            if service_thread is not None:
                service_thread.start()
        try:
            yield
        finally:
            log.info("shutting down")
            if state.pool is not None:
                state.pool.stop()
            for service_thread in (dispatcher, janitor, reconciler):
                if service_thread is not None:
                    service_thread.stop()
            state.bus.close()
            metrics.set_job_counts_source(None)
            if state.job_reader is not None:
                state.job_reader.close()
            state.db.dispose()

    app = FastAPI(title="Hark", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  description="Self-hosted speech-to-text: transcripts with word "
                              "timestamps, language and speakers.")
    install_error_handlers(app)
    from hark.health.endpoints import router as health_router
    from hark.jobs.endpoints import router as jobs_router
    from hark.jobs.events_endpoints import router as events_router
    from hark.jobs.feed_endpoints import router as feed_router
    from hark.jobs.retry import router as retry_router
    from hark.openai_api.endpoints import router as openai_router
    from hark.speakers.endpoints import router as speakers_router
    from hark.transcripts.endpoints import router as transcripts_router
    from hark.web import install as install_web
    from hark.web.docs import install_docs

    for router in (health_router, jobs_router, events_router, speakers_router, openai_router,
                   retry_router, transcripts_router, feed_router):
        app.include_router(router)
    app.include_router(metrics.metrics_router())
    install_web(app)  # the page at / and its files under /static/
    install_docs(app)  # /docs and /redoc, with their viewers served from a package
    if settings.allowed_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.allowed_origins,
                           allow_methods=["*"], allow_headers=["*"],
                           expose_headers=["X-Request-ID", "Content-Disposition"])
    app.add_middleware(SecurityMiddleware, settings=settings)  # Host, cross-site, headers
    app.add_middleware(metrics.MetricsMiddleware)
    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(RequestIdMiddleware)  # outermost: everything below sees the id
    return app


def _event_bus(settings: Settings) -> EventBus:
    url = settings.events_redis_url
    if url is None:
        return InProcessBus()
    from hark.events.redis import RedisBus

    return RedisBus(url)


def _start(settings: Settings, *, workers: bool,
           queues: tuple[str, ...] | None) -> ServiceState:
    configure_logging(settings.log_level, settings.log_format)
    db = open_database(settings.database)
    storage = open_storage(settings)
    bus = _event_bus(settings)
    pool: WorkerPool | None = None
    queue: JobQueue = NoWorkers()
    if settings.broker_url:
        from hark.workers.celery_app import CeleryQueue, make_celery

        queue = CeleryQueue(make_celery(settings))
        if workers:
            log.info("HARK_BROKER_URL is set: jobs go to `hark worker` processes, "
                     "this server runs none itself")
    elif workers:
        pool = WorkerPool(settings, db, PoolListener(
            on_event=bus.publish, on_job_finished=metrics.record_job,
            on_model_loaded=metrics.record_model_load), queues=queues)
        queue = pool
    anonymous = anonymous_allowed(settings)
    state = ServiceState(settings=settings, db=db, storage=storage, bus=bus, queue=queue,
                         pool=pool, anonymous=anonymous,
                         job_reader=JobRowReader(db.engine) if db.local else None)
    metrics.set_job_counts_source(lambda: _job_counts(state))
    if pool is not None:
        pool.start()
    log.info("hark %s serving on %s:%s; database %s; storage %s; %s workers", __version__,
             settings.host, settings.port, display_url(db.url), storage.name,
             pool.expected if pool else "no")
    if anonymous:
        log.warning("anonymous access is ON: requests without an API key act as tenant "
                    "'local' (allowed because the server is bound to loopback %s)",
                    settings.host)
    elif settings.allow_anonymous:
        log.warning("HARK_ALLOW_ANONYMOUS is set but ignored: the server is bound to %s, "
                    "not a loopback address; every request needs an API key", settings.host)
    else:
        log.info("every request needs an API key (create one with `hark keys create`)")
    return state


def _job_counts(state: ServiceState) -> metrics.JobCounts:
    with state.db.session() as session:
        repository = JobRepository(session)
        return metrics.JobCounts(by_status=repository.counts_by_status(),
                                 queued_by_queue=repository.queued_by_queue())


