"""Prometheus metrics and the JSON summary, on a small FastAPI app built here.

The registry is per process (shared by every app in the test run), so assertions use
fresh label values (a unique model name) or differences between two scrapes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from prometheus_client.parser import text_string_to_metric_families

from hark import metrics
from hark.api.metrics import MetricsMiddleware, metrics_router, summary
from hark.api.request_id import RequestIdMiddleware
from hark.metrics import (
    JobCounts,
    record_job,
    record_model_load,
    render_latest,
    set_job_counts_source,
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def build_app() -> FastAPI:
    app = FastAPI()
    jobs = APIRouter(prefix="/jobs")

    @jobs.get("/{job_id}")
    async def get_job(job_id: str) -> dict[str, str]:
        return {"id": job_id}

    @jobs.post("")
    async def create_job() -> dict[str, str]:
        return {"id": "new"}

    app.include_router(jobs, prefix="/api/v1")
    sub = FastAPI()

    @sub.get("/things/{thing_id}")
    async def thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    app.mount("/sub", sub)

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("boom")

    app.include_router(metrics_router(summary_for_operators=False))
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(RequestIdMiddleware)
    return app


def call(app: FastAPI, *requests: tuple[str, str]) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://hark.test") as client:
            return [await client.request(method, path) for method, path in requests]

    return asyncio.run(go())


def scrape(app: FastAPI) -> Samples:
    """GET /metrics and parse it with prometheus' own parser."""
    [response] = call(app, ("GET", "/metrics"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (sample_name, labels) in samples if sample_name == name]


@pytest.fixture
def app() -> FastAPI:
    return build_app()


@pytest.fixture
def job_counts() -> Iterator[list[JobCounts]]:
    """Install a job-counts source whose answer a test sets (and count its calls)."""
    current = [JobCounts()]
    calls: list[JobCounts] = []

    def source() -> JobCounts:
        calls.append(current[0])
        return current[0]

    set_job_counts_source(source)
    yield current
    set_job_counts_source(None)


def test_requests_are_counted_by_route_template(app: FastAPI) -> None:
    before = scrape(app)
    call(app, ("GET", "/api/v1/jobs/a1"), ("GET", "/api/v1/jobs/b2"), ("POST", "/api/v1/jobs"),
         ("GET", "/sub/things/7"), ("DELETE", "/api/v1/jobs/c3"))
    after = scrape(app)

    name = "hark_http_requests_total"
    template = "/api/v1/jobs/{job_id}"
    assert value(after, name, method="GET", route=template, status="200") - value(
        before, name, method="GET", route=template, status="200") == 2
    assert value(after, name, method="POST", route="/api/v1/jobs", status="200") - value(
        before, name, method="POST", route="/api/v1/jobs", status="200") == 1
    assert value(after, name, method="GET", route="/sub/things/{thing_id}", status="200") >= 1
    # A matched path with the wrong method is still its route (405), not a new series.
    assert value(after, name, method="DELETE", route=template, status="405") >= 1
    routes = {labels["route"] for labels in series(after, name)}
    assert not any("a1" in route or "b2" in route for route in routes)

    count = "hark_http_request_duration_seconds_count"
    assert value(after, count, method="GET", route=template) - value(
        before, count, method="GET", route=template) == 2
    buckets = [labels for labels in series(after, "hark_http_request_duration_seconds_bucket")
               if labels["route"] == template and labels["method"] == "GET"]
    assert {labels["le"] for labels in buckets} >= {"0.005", "1.0", "+Inf"}


def test_unmatched_paths_share_one_series(app: FastAPI) -> None:
    before = scrape(app)
    paths = [f"/random/{uuid.uuid4().hex}" for _ in range(20)]
    call(app, *[("GET", path) for path in paths], ("BREW", "/coffee"), ("GET", "/crash"))
    after = scrape(app)
    name = "hark_http_requests_total"
    assert value(after, name, method="GET", route="unmatched", status="404") - value(
        before, name, method="GET", route="unmatched", status="404") == 20
    routes = {labels["route"] for labels in series(after, name)}
    assert not any(path in routes for path in paths)
    # Unknown verbs collapse into one label; an unhandled error counts as a 500.
    assert value(after, name, method="other", route="unmatched", status="404") >= 1
    assert value(after, name, method="GET", route="/crash", status="500") - value(
        before, name, method="GET", route="/crash", status="500") == 1
    # 22 requests on 22 distinct paths add at most 3 series (GET/other unmatched, /crash).
    new = [labels for labels in series(after, name) if labels not in series(before, name)]
    assert len(new) <= 3


def test_record_job_updates_audio_seconds_and_realtime_factor(app: FastAPI) -> None:
    model = f"faster-whisper/test-{uuid.uuid4().hex[:8]}"
    record_job(model, "completed", 60.0,
               {"decode": 0.5, "vad": 1.0, "transcribe": 6.0, "total": 99.0})
    # Diarization ran for this job only: its factor covers this job's audio only.
    record_job(model, "completed", 30.0, {"decode": 0.5, "transcribe": 3.0, "diarize": 10.0})
    record_job(model, "failed", 100.0, {"transcribe": 50.0})
    record_model_load(model)
    record_model_load(model)

    samples = scrape(app)
    assert value(samples, "hark_audio_seconds_processed_total", model=model) == 90.0
    assert value(samples, "hark_processing_seconds_total", model=model, stage="transcribe") == 9.0
    assert value(samples, "hark_processing_seconds_total", model=model, stage="total") == 0.0
    assert value(samples, "hark_jobs_finished_total", model=model, status="completed") == 2
    assert value(samples, "hark_jobs_finished_total", model=model, status="failed") == 1
    assert value(samples, "hark_model_loads_total", model=model) == 2
    rtf = "hark_realtime_factor"
    assert value(samples, rtf, model=model, stage="transcribe") == pytest.approx(10.0)
    assert value(samples, rtf, model=model, stage="decode") == pytest.approx(90.0)
    assert value(samples, rtf, model=model, stage="vad") == pytest.approx(60.0)
    assert value(samples, rtf, model=model, stage="diarize") == pytest.approx(3.0)
    assert value(samples, rtf, model=model, stage="overall") == pytest.approx(90.0 / 21.0)

    report = summary(JobCounts())
    assert report["realtime_factor"][model] == {
        "decode": 90.0, "diarize": 3.0, "overall": pytest.approx(4.286, abs=1e-3),
        "transcribe": 10.0, "vad": 60.0,
    }
    assert report["model_loads"][model] == 2
    assert report["audio_seconds_processed"] >= 90.0


def test_rtf_for_a_single_job() -> None:
    model = f"tiny-{uuid.uuid4().hex[:8]}"
    record_job(model, "completed", 60.0, {"transcribe": 6.0})
    assert summary(JobCounts())["realtime_factor"][model] == {"transcribe": 10.0, "overall": 10.0}
    record_job(model, "completed", float("nan"), {"transcribe": 6.0})
    record_job(model, "completed", 10.0, {"transcribe": float("inf"), "vad": -1.0})
    assert summary(JobCounts())["realtime_factor"][model] == {"transcribe": 10.0, "overall": 10.0}


def test_job_gauges_come_from_the_callback(app: FastAPI, job_counts: list[JobCounts]) -> None:
    job_counts[0] = JobCounts(
        by_status={"queued": 4, "running": 2, "completed": 10},
        queued_by_queue={"small": 3, "large": 1},
    )
    samples = scrape(app)
    assert value(samples, "hark_jobs", status="queued") == 4
    assert value(samples, "hark_jobs", status="running") == 2
    assert value(samples, "hark_jobs", status="completed") == 10
    assert ("hark_jobs", (("status", "canceled"),)) in samples  # known statuses show 0
    assert value(samples, "hark_queue_depth", queue="small") == 3
    assert value(samples, "hark_queue_depth", queue="large") == 1

    job_counts[0] = JobCounts(by_status={"queued": 0}, queued_by_queue={"small": 0})
    samples = scrape(app)
    assert value(samples, "hark_jobs", status="queued") == 0
    assert ("hark_queue_depth", (("queue", "large"),)) not in samples


def test_scrape_survives_a_failing_callback(app: FastAPI) -> None:
    def broken() -> JobCounts:
        raise RuntimeError("database is down")

    set_job_counts_source(broken)
    try:
        samples = scrape(app)
    finally:
        set_job_counts_source(None)
    assert not series(samples, "hark_jobs")
    assert series(samples, "hark_http_requests_total")
    assert summary()["jobs"]["queued"] == 0


def test_summary_endpoint_shape(app: FastAPI, job_counts: list[JobCounts]) -> None:
    job_counts[0] = JobCounts(
        by_status={"queued": 3, "running": 1}, queued_by_queue={"small": 2, "medium": 1}
    )
    model = f"base-{uuid.uuid4().hex[:8]}"
    record_job(model, "completed", 12.0, {"decode": 0.1, "vad": 0.2, "transcribe": 1.2})
    record_model_load(model)
    call(app, ("GET", "/api/v1/jobs/x"))
    [response] = call(app, ("GET", "/api/v1/metrics"))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"jobs", "queue_depth", "audio_seconds_processed", "realtime_factor",
                         "model_loads", "http_requests"}
    assert body["jobs"] == {"queued": 3, "running": 1, "completed": 0, "failed": 0,
                            "canceled": 0}
    assert body["queue_depth"] == {"small": 2, "medium": 1, "total": 3}
    assert isinstance(body["audio_seconds_processed"], float)
    assert body["audio_seconds_processed"] >= 12.0
    assert body["realtime_factor"][model] == {"decode": 120.0, "vad": 60.0, "transcribe": 10.0,
                                              "overall": 8.0}
    assert body["model_loads"][model] == 1
    assert isinstance(body["http_requests"], int) and body["http_requests"] >= 1
    # The summary is read from the same counters as /metrics (which counts the scrape
    # itself only once its response is finished).
    total = sum(v for (name, _), v in scrape(app).items() if name == "hark_http_requests_total")
    assert summary()["http_requests"] == int(total) + 1


def test_render_latest_parses_and_uses_its_own_registry() -> None:
    body, content_type = render_latest()
    assert content_type.startswith("text/plain; version=")
    names = {family.name for family in text_string_to_metric_families(body.decode())}
    assert {"hark_http_requests", "hark_http_request_duration_seconds",
            "hark_audio_seconds_processed", "hark_processing_seconds", "hark_jobs_finished",
            "hark_model_loads", "hark_realtime_factor"} <= names
    # Not the global default registry: building many apps never collides.
    from prometheus_client import REGISTRY as DEFAULT

    assert metrics.REGISTRY is not DEFAULT
    for _ in range(3):
        build_app()
