"""The FastAPI application of `hark serve`.

`create_app(settings)` returns the app; its lifespan starts the service's runtime
(`hark.runtime`: database with pending migrations, storage, event bus, workers and
background threads) and stops it on shutdown, so that running jobs go back to the queue.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from hark import __version__, metrics, runtime
from hark.api import metrics as api_metrics
from hark.api.errors import install_error_handlers
from hark.api.logging import AccessLogMiddleware
from hark.api.openapi import install as install_openapi
from hark.api.rate_limit import RateLimitHeadersMiddleware, RequestRates
from hark.api.request_id import RequestIdMiddleware
from hark.api.security import SecurityMiddleware
from hark.audit.actor import ClientAddressMiddleware
from hark.config import Settings
from hark.jobs.repository import JobRepository


def create_app(
    settings: Settings, *, workers: bool = True, queues: tuple[str, ...] | None = None,
) -> FastAPI:
    """The app; `workers=False` serves the API only, `queues` limits what workers take."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = runtime.start(settings, workers=workers, queues=queues)
        app.state.hark = state
        metrics.set_job_counts_source(lambda: _job_counts(state))
        try:
            yield
        finally:
            metrics.set_job_counts_source(None)
            state.stop()

    app = FastAPI(title="Hark", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  description="Self-hosted speech-to-text: transcripts with word "
                              "timestamps, language and speakers.")
    install_error_handlers(app)
    app.state.request_rates = RequestRates(settings)
    from hark.accounts.endpoints import router as accounts_router
    from hark.accounts.people_endpoints import router as people_router
    from hark.audit.endpoints import router as audit_router
    from hark.health.endpoints import router as health_router
    from hark.jobs.endpoints import router as jobs_router
    from hark.jobs.events_endpoints import router as events_router
    from hark.jobs.feed_endpoints import router as feed_router
    from hark.keys.endpoints import router as keys_router
    from hark.live.endpoints import router as live_router
    from hark.openai_api.endpoints import router as openai_router
    from hark.openai_api.realtime_endpoints import router as realtime_router
    from hark.organisations.endpoints import router as organisations_router
    from hark.speakers.endpoints import router as speakers_router
    from hark.transcripts.endpoints import router as transcripts_router
    from hark.web import install as install_web
    from hark.web.docs import install_docs

    for router in (health_router, jobs_router, events_router, speakers_router, openai_router,
                   transcripts_router, feed_router, live_router, realtime_router,
                   organisations_router, accounts_router, people_router, audit_router,
                   keys_router):
        app.include_router(router)
    app.include_router(api_metrics.metrics_router())
    install_web(app)  # the page at / and its files under /static/
    install_docs(app)  # /docs and /redoc, with their viewers served from a package
    install_openapi(app)  # how to present a key, in the OpenAPI document
    if settings.allowed_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.allowed_origins,
                           allow_methods=["*"], allow_headers=["*"],
                           expose_headers=["X-Request-ID", "Content-Disposition"])
    app.add_middleware(SecurityMiddleware, settings=settings)  # Host, cross-site, headers
    app.add_middleware(RateLimitHeadersMiddleware)
    app.add_middleware(api_metrics.MetricsMiddleware)
    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(ClientAddressMiddleware)  # for the audit log's events
    app.add_middleware(RequestIdMiddleware)  # outermost: everything below sees the id
    return app


def _job_counts(state: runtime.ServiceState) -> metrics.JobCounts:
    with state.db.session() as session:
        repository = JobRepository(session)
        return metrics.JobCounts(by_status=repository.counts_by_status(),
                                 queued_by_queue=repository.queued_by_queue())
