"""Prometheus metrics (`GET /metrics`) and the JSON summary (`GET /api/v1/metrics`).

The HTTP layer's part of `hark.metrics.REGISTRY`: `MetricsMiddleware` (pure ASGI)
counts requests and times them by route *template* (`/api/v1/jobs/{job_id}`), never
the raw path, so the number of series stays bounded; requests that match no route are
labelled `unmatched`. The JSON summary is read back from the registry.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from prometheus_client import Counter, Histogram
from starlette.responses import Response
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from hark.api.asgi import call_observed
from hark.api.auth import require_operator
from hark.api.openapi import ERRORS
from hark.metrics import (
    AUDIO_SECONDS,
    JOB_STATUSES,
    MODEL_LOADS,
    REGISTRY,
    JobCounts,
    current_job_counts,
    realtime_factors,
    render_latest,
    totals,
)

UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


HTTP_REQUESTS = Counter(
    "hark_http_requests",
    "HTTP requests handled, by method, route template and status code.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "hark_http_request_duration_seconds",
    "Time from request start to the end of the response, by method and route template.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)


def summary(job_counts: JobCounts | None = None) -> dict[str, Any]:
    """The `/api/v1/metrics` document, read from the registry; `job_counts` defaults
    to the installed source."""
    counts = job_counts if job_counts is not None else current_job_counts()
    counts = counts or JobCounts()
    queue_depth: dict[str, int] = dict(sorted(counts.queued_by_queue.items()))
    queue_depth["total"] = sum(counts.queued_by_queue.values())
    return {
        "jobs": {status: 0 for status in JOB_STATUSES} | counts.by_status,
        "queue_depth": queue_depth,
        "audio_seconds_processed": round(sum(totals(AUDIO_SECONDS).values()), 3),
        "realtime_factor": {
            model: {stage: round(value, 3) for stage, value in sorted(stages.items())}
            for model, stages in sorted(realtime_factors().items())},
        "model_loads": {model: int(n) for (model,), n in sorted(totals(MODEL_LOADS).items())},
        "http_requests": int(sum(totals(HTTP_REQUESTS).values())),
    }


def prometheus_endpoint() -> Response:
    """`GET /metrics`. Sync on purpose: the job-counts callback may block on the DB."""
    body, content_type = render_latest()
    return Response(content=body, media_type=content_type)


def summary_endpoint() -> dict[str, Any]:
    """`GET /api/v1/metrics`."""
    return summary()


def metrics_router(
    *, prometheus_path: str = "/metrics", summary_path: str = "/api/v1/metrics",
    summary_for_operators: bool = True,
) -> APIRouter:
    """Both endpoints; include with `app.include_router`.

    `/metrics` is open (Prometheus scrapes it without credentials). The JSON summary
    needs an operator's key (`require_operator`, which reads the app's ServiceState);
    `summary_for_operators=False` leaves it open, for apps without one.
    """
    router = APIRouter(tags=["operations"], responses=ERRORS)
    router.add_api_route(
        prometheus_path, prometheus_endpoint, methods=["GET"],
        summary="Prometheus metrics", response_class=Response,
    )
    router.add_api_route(
        summary_path, summary_endpoint, methods=["GET"],
        summary="Metrics summary (JSON; operators)",
        dependencies=[Depends(require_operator)] if summary_for_operators else None,
    )
    return router


def route_template(scope: Scope, entry_root_path: str = "") -> str:
    """The matched route's path template, or `unmatched`; call after the app ran.

    FastAPI >= 0.16x keeps included routers unflattened: `scope["route"]` is then the
    router's own `APIRoute` (path without the include prefix) and the full template is
    on the effective route context FastAPI stores in `scope["fastapi"]`. Mounted apps
    extend `root_path`; the part added below this middleware is the mount prefix.
    """
    mount_prefix: str = scope.get("root_path", "")[len(entry_root_path):]
    route = scope.get("route")
    template: Any = None
    if route is not None and not isinstance(route, Mount):
        fastapi_scope = scope.get("fastapi")
        if isinstance(fastapi_scope, dict):
            context = fastapi_scope.get("effective_route_context")
            template = getattr(context, "path_format", None)
        if not isinstance(template, str) or not template:
            template = getattr(route, "path_format", None)
    if isinstance(template, str) and template:
        return mount_prefix + template
    if mount_prefix:  # a mounted app (static files, a sub-app) that matched no route
        return mount_prefix + "/{path}"
    return UNMATCHED


class MetricsMiddleware:
    """Count and time HTTP requests by method, route template and status (pure ASGI).

    Label children are cached per label tuple: `Counter.labels()` validates and locks on
    every call, which is measurable at thousands of requests per second.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._counters: dict[tuple[str, str, str], Any] = {}
        self._histograms: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        entry_root_path = scope.get("root_path", "")
        await call_observed(
            self.app, scope, receive, send,
            lambda status, elapsed: self._observe(scope, entry_root_path, status, elapsed))

    def _observe(self, scope: Scope, entry_root_path: str, status: int, elapsed: float) -> None:
        method = scope.get("method", "")
        if method not in _METHODS:
            method = "other"  # arbitrary verbs from clients must not create series
        route = route_template(scope, entry_root_path)
        key = (method, route, str(status))
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = HTTP_REQUESTS.labels(*key)
        counter.inc()
        hkey = (method, route)
        histogram = self._histograms.get(hkey)
        if histogram is None:
            histogram = self._histograms[hkey] = HTTP_DURATION.labels(*hkey)
        histogram.observe(elapsed)
