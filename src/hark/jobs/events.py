"""The events of a job's own stream (`/api/v1/jobs/{id}/events` and `/ws`), built in one
place for the API, the workers and the webhook dispatcher alike.

    status     {"type", "job_id", "status", "stage", "progress"}
    progress   {"type", "job_id", "stage", "progress"}
    segment    {"type", "job_id", "segment"}
    completed  {"type", "job_id", "status", "progress", "duration", "language", "model",
                "timings", "warnings", "segments"?}
    failed     {"type", "job_id", "status", "error"}
    canceled   {"type", "job_id", "status"}
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from hark.events.base import Event
from hark.jobs.models import CANCELED, COMPLETED, FAILED, Job
from hark.pipeline.transcript import Segment


def status(job_id: str, state: str, stage: str | None, progress: float) -> Event:
    return {"type": "status", "job_id": job_id, "status": state, "stage": stage,
            "progress": progress}


def progress(job_id: str, stage: str, value: float) -> Event:
    return {"type": "progress", "job_id": job_id, "stage": stage, "progress": round(value, 4)}


def segment(job_id: str, part: Segment) -> Event:
    return {"type": "segment", "job_id": job_id, "segment": asdict(part)}


def completed(job_id: str, *, duration: float | None, language: str | None, model: str,
              timings: dict[str, float] | None, warnings: list[str] | None,
              **extra: Any) -> Event:
    return {"type": "completed", "job_id": job_id, "status": COMPLETED, "progress": 1.0,
            "duration": duration, "language": language, "model": model, "timings": timings,
            "warnings": warnings or [], **extra}


def failed(job_id: str, error: dict[str, Any] | None) -> Event:
    return {"type": "failed", "job_id": job_id, "status": FAILED, "error": error}


def canceled(job_id: str) -> Event:
    return {"type": "canceled", "job_id": job_id, "status": CANCELED}


def current_state(job: Job) -> list[Event]:
    """What a subscriber arriving now is told first: the status, then the outcome."""
    events = [status(job.id, job.status, job.stage, job.progress)]
    if job.status == COMPLETED:
        events.append(completed(job.id, duration=job.duration, language=job.language,
                                model=job.model, timings=job.timings, warnings=job.warnings))
    elif job.status == FAILED:
        events.append(failed(job.id, job.error))
    elif job.status == CANCELED:
        events.append(canceled(job.id))
    return events
