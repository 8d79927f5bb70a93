"""Jobs as the API shows them (the job shape of the product contract)."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Row

from hark.events.base import Event
from hark.jobs.models import CANCELED, COMPLETED, FAILED, Job

API_PREFIX = "/api/v1/jobs"


def _time(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def job_dict(job: Job | Row[Any] | SimpleNamespace) -> dict[str, Any]:
    """The job as JSON; also takes a row of the jobs table read without the ORM."""
    base = f"{API_PREFIX}/{job.id}"
    webhook = None
    if job.webhook_url:
        webhook = {"url": job.webhook_url, "status": job.webhook_status,
                   "attempts": job.webhook_attempts, "error": job.webhook_error}
    return {
        "id": job.id, "status": job.status, "progress": job.progress, "stage": job.stage,
        "filename": job.filename, "duration": job.duration, "options": _options(job.options),
        "model": job.model, "language": job.language, "warnings": job.warnings or [],
        "queue": job.queue, "priority": job.priority,
        "attempts": job.attempts, "created_at": _time(job.created_at),
        "started_at": _time(job.started_at), "finished_at": _time(job.finished_at),
        "error": job.error, "timings": job.timings, "purged": job.purged, "webhook": webhook,
        "links": {"self": base, "result": f"{base}/result", "events": f"{base}/events",
                  "websocket": f"{base}/ws"},
    }


def _options(options: dict[str, Any] | None) -> dict[str, Any] | None:
    """The job's options without voice embeddings: known speakers show by name only."""
    known = (options or {}).get("known_speakers")
    if not known:
        return options
    return {**(options or {}), "known_speakers": [{"name": s.get("name")} for s in known]}


def current_state_events(job: Job) -> list[Event]:
    """What a subscriber arriving now is told first: the status, then the outcome."""
    events: list[Event] = [{"type": "status", "job_id": job.id, "status": job.status,
                            "stage": job.stage, "progress": job.progress}]
    if job.status == COMPLETED:
        events.append({"type": "completed", "job_id": job.id, "status": job.status,
                       "progress": 1.0, "duration": job.duration, "language": job.language,
                       "model": job.model, "timings": job.timings,
                       "warnings": job.warnings or []})
    elif job.status == FAILED:
        events.append({"type": "failed", "job_id": job.id, "status": job.status,
                       "error": job.error})
    elif job.status == CANCELED:
        events.append({"type": "canceled", "job_id": job.id, "status": job.status})
    return events
