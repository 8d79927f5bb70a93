"""What the service counts, in one Prometheus registry: finished jobs, audio processed,
time per pipeline stage, model loads, and (read from the database when scraped) jobs by
status and queue depth. The HTTP layer adds its request metrics to the same registry
(`hark.api.metrics`); the JSON summary is read back from it, so nothing is counted twice.

`REGISTRY` is this module's own, not prometheus' global default, so any number of apps
can be built in one process (tests) without "duplicated timeseries" errors. Counts are
per process: `record_job` and `record_model_load` are called in the process that serves
`/metrics` (the API server, told by its workers; in scaled mode, each `hark worker`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

JOB_STATUSES = ("queued", "running", "completed", "failed", "canceled")


@dataclass(frozen=True)
class JobCounts:
    """Jobs per status and queued jobs per queue, as the database has them."""

    by_status: dict[str, int] = field(default_factory=dict)
    queued_by_queue: dict[str, int] = field(default_factory=dict)


JobCountsSource = Callable[[], JobCounts]

REGISTRY = CollectorRegistry()

AUDIO_SECONDS = Counter(
    "hark_audio_seconds_processed", "Seconds of audio in completed jobs, by model.",
    ["model"], registry=REGISTRY)
PROCESSING_SECONDS = Counter(
    "hark_processing_seconds",
    "Wall-clock seconds spent per pipeline stage in completed jobs, by model and stage.",
    ["model", "stage"], registry=REGISTRY)
# Per stage, the audio that went through it: diarization runs for some jobs only, so
# dividing all audio by diarization time would overstate its speed.
STAGE_AUDIO_SECONDS = Counter(
    "hark_stage_audio_seconds",
    "Seconds of audio that went through each pipeline stage, by model and stage.",
    ["model", "stage"], registry=REGISTRY)
# The audio of completed jobs that reported stage times: what `overall` speed is of.
TIMED_AUDIO_SECONDS = Counter(
    "hark_timed_audio_seconds",
    "Seconds of audio in completed jobs that reported their stage times, by model.",
    ["model"], registry=REGISTRY)
JOBS_FINISHED = Counter(
    "hark_jobs_finished", "Jobs that reached a final status, by model and status.",
    ["model", "status"], registry=REGISTRY)
MODEL_LOADS = Counter(
    "hark_model_loads", "Speech-recognition models loaded into memory, by model.",
    ["model"], registry=REGISTRY)
# Live transcription, counted by the API process that runs the streams.
LIVE_STREAMS = Gauge(
    "hark_live_streams", "Live streams open now.", registry=REGISTRY)
LIVE_AUDIO_SECONDS = Counter(
    "hark_live_audio_seconds", "Seconds of audio received by live streams, by model.",
    ["model"], registry=REGISTRY)
LIVE_WORK_SECONDS = Counter(
    "hark_live_work_seconds",
    "Seconds spent recognising live audio, by model (over audio seconds: real-time factor).",
    ["model"], registry=REGISTRY)
LIVE_FINAL_LATENCY = Histogram(
    "hark_live_final_latency_seconds",
    "From the arrival of a final phrase's last audio to the final being ready, by model.",
    ["model"], buckets=(0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0), registry=REGISTRY)

_job_counts_source: JobCountsSource | None = None


def set_job_counts_source(source: JobCountsSource | None) -> None:
    """Install the callback that counts jobs at scrape time (None removes it). It runs
    in a worker thread of the scraping request, so a blocking query is fine."""
    global _job_counts_source
    _job_counts_source = source


def current_job_counts() -> JobCounts | None:
    source = _job_counts_source
    if source is None:
        return None
    try:
        return source()
    except Exception:
        # A scrape must still answer (HTTP metrics, totals) when the database does not.
        log.warning("job counts unavailable for metrics", exc_info=True)
        return None


def _finite_non_negative(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value >= 0


def record_job(model: str, status: str, audio_seconds: float,
               timings: Mapping[str, float]) -> None:
    """Count a finished job. Audio and stage times count only for completed jobs.

    `timings` is the transcript's `{"decode": s, "vad": s, "transcribe": s, "diarize": s}`;
    a `total` key, negative or non-finite values are ignored.
    """
    JOBS_FINISHED.labels(model=model, status=status).inc()
    if status != "completed" or not _finite_non_negative(audio_seconds):
        return
    AUDIO_SECONDS.labels(model=model).inc(audio_seconds)
    stages = {stage: float(seconds) for stage, seconds in timings.items()
              if stage != "total" and _finite_non_negative(seconds)}
    for stage, seconds in stages.items():
        PROCESSING_SECONDS.labels(model=model, stage=stage).inc(seconds)
        STAGE_AUDIO_SECONDS.labels(model=model, stage=stage).inc(audio_seconds)
    if stages:
        TIMED_AUDIO_SECONDS.labels(model=model).inc(audio_seconds)


def record_model_load(model: str) -> None:
    MODEL_LOADS.labels(model=model).inc()


def totals(counter: Counter) -> dict[tuple[str, ...], float]:
    """A counter's current values by label values (in the counter's label order), read
    back from the registry."""
    out: dict[tuple[str, ...], float] = {}
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                out[tuple(sample.labels.values())] = sample.value
    return out


def realtime_factors() -> dict[str, dict[str, float]]:
    """Audio seconds per processing second (10: ten times faster than real time), by
    model and stage; `overall` is all stages together."""
    seconds = totals(PROCESSING_SECONDS)
    audio = totals(STAGE_AUDIO_SECONDS)
    out: dict[str, dict[str, float]] = {}
    for (model, stage), spent in seconds.items():
        if spent > 0:
            out.setdefault(model, {})[stage] = audio.get((model, stage), 0.0) / spent
    for (model,), processed in totals(TIMED_AUDIO_SECONDS).items():
        spent = sum(v for (m, _), v in seconds.items() if m == model)
        if spent > 0:
            out.setdefault(model, {})["overall"] = processed / spent
    return out


class _ScrapeTimeCollector(Collector):
    """Gauges computed when scraped: jobs by status, queue depth, real-time factor."""

    def describe(self) -> Iterable[Metric]:
        # Declared without calling the job-counts callback at registration time.
        return [GaugeMetricFamily("hark_jobs", "", labels=["status"]),
                GaugeMetricFamily("hark_queue_depth", "", labels=["queue"]),
                GaugeMetricFamily("hark_realtime_factor", "", labels=["model", "stage"])]

    def collect(self) -> Iterable[Metric]:
        counts = current_job_counts()
        if counts is not None:
            jobs = GaugeMetricFamily("hark_jobs", "Jobs by status.", labels=["status"])
            for status, n in sorted(({s: 0 for s in JOB_STATUSES} | counts.by_status).items()):
                jobs.add_metric([status], n)
            yield jobs
            depth = GaugeMetricFamily("hark_queue_depth", "Queued jobs waiting, by queue.",
                                      labels=["queue"])
            for queue, n in sorted(counts.queued_by_queue.items()):
                depth.add_metric([queue], n)
            yield depth
        rtf = GaugeMetricFamily(
            "hark_realtime_factor",
            "Audio seconds processed per second of processing, by model and stage "
            "(stage 'overall': all stages together).", labels=["model", "stage"])
        for model, stages in sorted(realtime_factors().items()):
            for stage, value in sorted(stages.items()):
                rtf.add_metric([model, stage], value)
        yield rtf


REGISTRY.register(_ScrapeTimeCollector())


def render_latest() -> tuple[bytes, str]:
    """The Prometheus text exposition of `REGISTRY` and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
