"""Prometheus metrics (`GET /metrics`) and the JSON summary (`GET /api/v1/metrics`).

Everything lives in `REGISTRY`, a registry of this module rather than prometheus'
global default, so any number of apps can be built in one process (tests) without
"duplicated timeseries" errors.

- HTTP: `MetricsMiddleware` (pure ASGI) counts requests and times them by route
  *template* (`/api/v1/jobs/{job_id}`), never the raw path, so the number of series
  stays bounded; requests that match no route are labelled `unmatched`.
- Jobs and queue depth are read at scrape time from the app's `job_counts()` callback
  (`set_job_counts_source`), i.e. from the database, which is the truth.
- Work done: `record_job` / `record_model_load` are called when a job finishes or an
  engine is loaded. They count in *this* process: call them in the process that serves
  `/metrics` (the API server), e.g. when it learns that a job finished.
- The real-time factor per model and stage (audio seconds / processing seconds, so 10
  means ten times faster than real time) is derived from those totals at scrape time.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.responses import Response
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from hark.api.asgi import call_observed

logger = logging.getLogger(__name__)

JOB_STATUSES = ("queued", "running", "completed", "failed", "canceled")
STAGES = ("decode", "vad", "transcribe", "diarize")
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@dataclass(frozen=True)
class JobCounts:
    """What the app reports at scrape time: jobs per status, queued jobs per queue."""

    by_status: dict[str, int] = field(default_factory=dict)
    queued_by_queue: dict[str, int] = field(default_factory=dict)


JobCountsSource = Callable[[], JobCounts]

REGISTRY = CollectorRegistry()

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
AUDIO_SECONDS = Counter(
    "hark_audio_seconds_processed",
    "Seconds of audio in completed jobs, by model.",
    ["model"],
    registry=REGISTRY,
)
PROCESSING_SECONDS = Counter(
    "hark_processing_seconds",
    "Wall-clock seconds spent per pipeline stage in completed jobs, by model and stage.",
    ["model", "stage"],
    registry=REGISTRY,
)
JOBS_FINISHED = Counter(
    "hark_jobs_finished",
    "Jobs that reached a final status, by model and status.",
    ["model", "status"],
    registry=REGISTRY,
)
MODEL_LOADS = Counter(
    "hark_model_loads",
    "Speech-recognition models loaded into memory, by model.",
    ["model"],
    registry=REGISTRY,
)


class _WorkTotals:
    """Running sums behind the real-time factor and the JSON summary (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.audio: dict[str, float] = {}
        # Per stage, the audio that went through it: diarize only runs for some jobs, so
        # dividing all audio by diarize time would overstate its speed.
        self.stage_audio: dict[tuple[str, str], float] = {}
        self.stage_seconds: dict[tuple[str, str], float] = {}
        self.timed_audio: dict[str, float] = {}  # audio of jobs that reported timings
        self.timed_seconds: dict[str, float] = {}
        self.model_loads: dict[str, int] = {}

    def realtime_factors(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        with self.lock:
            for (model, stage), seconds in self.stage_seconds.items():
                if seconds > 0:
                    rtf = self.stage_audio[(model, stage)] / seconds
                    out.setdefault(model, {})[stage] = rtf
            for model, seconds in self.timed_seconds.items():
                if seconds > 0:
                    out.setdefault(model, {})["overall"] = self.timed_audio[model] / seconds
        return out


_totals = _WorkTotals()
_job_counts_source: JobCountsSource | None = None


def set_job_counts_source(source: JobCountsSource | None) -> None:
    """Install the callback that counts jobs at scrape time (None removes it).

    It is called from `/metrics` and `/api/v1/metrics` in a worker thread (both are
    sync endpoints), so a blocking database query is fine.
    """
    global _job_counts_source
    _job_counts_source = source


def _current_job_counts() -> JobCounts | None:
    source = _job_counts_source
    if source is None:
        return None
    try:
        return source()
    except Exception:
        # A scrape must still answer (HTTP metrics, totals) when the database does not.
        logger.warning("job counts unavailable for metrics", exc_info=True)
        return None


def _finite_non_negative(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value >= 0


def record_job(
    model: str, status: str, audio_seconds: float, timings: Mapping[str, float]
) -> None:
    """Count a finished job. Audio and stage times count only for completed jobs.

    `timings` is the transcript's `{"decode": s, "vad": s, "transcribe": s, "diarize": s}`;
    a `total` key, negative or non-finite values are ignored.
    """
    JOBS_FINISHED.labels(model=model, status=status).inc()
    if status != "completed" or not _finite_non_negative(audio_seconds):
        return
    stages = {
        stage: float(seconds)
        for stage, seconds in timings.items()
        if stage != "total" and _finite_non_negative(seconds)
    }
    AUDIO_SECONDS.labels(model=model).inc(audio_seconds)
    for stage, seconds in stages.items():
        PROCESSING_SECONDS.labels(model=model, stage=stage).inc(seconds)
    with _totals.lock:
        _totals.audio[model] = _totals.audio.get(model, 0.0) + audio_seconds
        for stage, seconds in stages.items():
            key = (model, stage)
            _totals.stage_audio[key] = _totals.stage_audio.get(key, 0.0) + audio_seconds
            _totals.stage_seconds[key] = _totals.stage_seconds.get(key, 0.0) + seconds
        if stages:
            _totals.timed_audio[model] = _totals.timed_audio.get(model, 0.0) + audio_seconds
            _totals.timed_seconds[model] = (
                _totals.timed_seconds.get(model, 0.0) + sum(stages.values())
            )


def record_model_load(model: str) -> None:
    MODEL_LOADS.labels(model=model).inc()
    with _totals.lock:
        _totals.model_loads[model] = _totals.model_loads.get(model, 0) + 1


class _ScrapeTimeCollector(Collector):
    """Gauges computed when scraped: jobs by status, queue depth, real-time factor."""

    def describe(self) -> Iterable[Metric]:
        # Declared without calling the job-counts callback at registration time.
        return [
            GaugeMetricFamily("hark_jobs", "", labels=["status"]),
            GaugeMetricFamily("hark_queue_depth", "", labels=["queue"]),
            GaugeMetricFamily("hark_realtime_factor", "", labels=["model", "stage"]),
        ]

    def collect(self) -> Iterable[Metric]:
        counts = _current_job_counts()
        if counts is not None:
            jobs = GaugeMetricFamily("hark_jobs", "Jobs by status.", labels=["status"])
            by_status = {status: 0 for status in JOB_STATUSES} | counts.by_status
            for status, n in sorted(by_status.items()):
                jobs.add_metric([status], n)
            yield jobs
            depth = GaugeMetricFamily(
                "hark_queue_depth", "Queued jobs waiting, by queue.", labels=["queue"]
            )
            for queue, n in sorted(counts.queued_by_queue.items()):
                depth.add_metric([queue], n)
            yield depth
        rtf = GaugeMetricFamily(
            "hark_realtime_factor",
            "Audio seconds processed per second of processing, by model and stage "
            "(stage 'overall': all stages together).",
            labels=["model", "stage"],
        )
        for model, stages in sorted(_totals.realtime_factors().items()):
            for stage, value in sorted(stages.items()):
                rtf.add_metric([model, stage], value)
        yield rtf


REGISTRY.register(_ScrapeTimeCollector())


def render_latest() -> tuple[bytes, str]:
    """The Prometheus text exposition of `REGISTRY` and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def _http_request_total() -> int:
    total = 0.0
    for family in HTTP_REQUESTS.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                total += sample.value
    return int(total)


def summary(job_counts: JobCounts | None = None) -> dict[str, Any]:
    """The `/api/v1/metrics` document; `job_counts` defaults to the installed source."""
    counts = job_counts if job_counts is not None else _current_job_counts()
    counts = counts or JobCounts()
    queue_depth: dict[str, int] = dict(sorted(counts.queued_by_queue.items()))
    queue_depth["total"] = sum(counts.queued_by_queue.values())
    with _totals.lock:
        audio = sum(_totals.audio.values())
        loads = dict(sorted(_totals.model_loads.items()))
    rtf = {
        model: {stage: round(value, 3) for stage, value in sorted(stages.items())}
        for model, stages in sorted(_totals.realtime_factors().items())
    }
    return {
        "jobs": {status: 0 for status in JOB_STATUSES} | counts.by_status,
        "queue_depth": queue_depth,
        "audio_seconds_processed": round(audio, 3),
        "realtime_factor": rtf,
        "model_loads": loads,
        "http_requests": _http_request_total(),
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
    # Imported here: the counters above are also used by worker processes, which have
    # no use for the API's authentication.
    from hark.api.auth import require_operator

    router = APIRouter(tags=["operations"])
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
