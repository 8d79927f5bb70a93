"""The job service: every state change a job goes through, in one place.

    queued ──claim──▶ running ──complete──▶ completed
       ▲                 │ ├────fail─────▶ failed
       └──release────────┘ └───cancel────▶ canceled   (also from queued)

Functions take the session first, change and flush, and never commit; the request
or worker loop that owns the session commits. Worker-side changes are fenced on the
claim (`worker_id`, `attempts`): once a job was canceled, or its lease expired and
another attempt took it, the old attempt's updates match no row and are dropped.
That fence is what makes a result land exactly once.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from hark.db.base import new_id, utcnow
from hark.errors import HarkError, JobNotFoundError, OptionError, QueueFullError
from hark.jobs.models import CANCELED, COMPLETED, FAILED, FINISHED, QUEUED, RUNNING, Job
from hark.jobs.repository import JobRepository
from hark.jobs.routing import size_class
from hark.jobs.schemas import JobOptions

MAX_PAGE = 200


@dataclass(frozen=True)
class NewMedia:
    """A job's recording: stored and probed, or (no key yet) at a URL a worker fetches."""

    key: str | None
    filename: str
    size: int | None
    duration: float | None
    source_url: str | None = None


@dataclass(frozen=True)
class Claim:
    job_id: str
    worker_id: str
    attempt: int


def create_job(
    session: Session, *, tenant_id: str, api_key_id: str | None, options: JobOptions,
    model: str, media: NewMedia, max_queued: int, job_id: str | None = None,
    user_id: str | None = None,
) -> Job:
    repository = JobRepository(session)
    # Per tenant: one tenant's backlog never refuses another's job.
    if repository.count_queued(tenant_id) >= max_queued:
        raise QueueFullError(f"this tenant already has {max_queued} jobs waiting; retry "
                             "later", limit=max_queued)
    job = Job(
        id=job_id or new_id(), tenant_id=tenant_id, api_key_id=api_key_id, user_id=user_id,
        status=QUEUED,
        queue=size_class(model), priority=options.priority, options=options.stored(),
        filename=media.filename, source_url=media.source_url, media_key=media.key,
        media_bytes=media.size, duration=media.duration, model=model, progress=0.0,
        stage=None, attempts=0, purged=False, webhook_url=options.webhook_url,
        webhook_attempts=0,
    )
    return repository.add(job)


def get_job(session: Session, tenant_id: str, job_id: str) -> Job:
    job = JobRepository(session).get(tenant_id, job_id)
    if job is None:
        raise JobNotFoundError(f"no job with id {job_id}", job_id=job_id)
    return job


def list_jobs(
    session: Session, tenant_id: str, *, status: str | None, limit: int, cursor: str | None,
) -> tuple[list[Job], str | None]:
    if not 1 <= limit <= MAX_PAGE:
        raise OptionError(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    jobs = JobRepository(session).page(tenant_id, status=status, limit=limit + 1,
                                       after=decode_cursor(cursor) if cursor else None)
    more = len(jobs) > limit
    jobs = jobs[:limit]
    return jobs, encode_cursor(jobs[-1]) if more and jobs else None


def encode_cursor(job: Job) -> str:
    raw = json.dumps([job.created_at.isoformat(), job.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, job_id = json.loads(raw)
        return datetime.fromisoformat(created), str(job_id)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise OptionError("cursor is not one this API returned", field="cursor") from exc


def cancel_job(session: Session, tenant_id: str, job_id: str) -> tuple[Job, bool]:
    """Cancel a queued or running job; returns the job and whether this call changed it."""
    job = JobRepository(session).get_any(job_id, lock=True)
    if job is None or job.tenant_id != tenant_id:
        raise JobNotFoundError(f"no job with id {job_id}", job_id=job_id)
    if job.status in FINISHED:
        return job, False
    job.status = CANCELED
    job.finished_at = utcnow()
    job.lease_expires_at = None
    session.flush()
    return job, True


def mark_purged(job: Job) -> None:
    """Forget the job's stored objects (the caller deletes them after committing)."""
    job.purged = True
    job.media_key = None
    job.result_key = None


# --- the worker side -----------------------------------------------------------------

def claim_next(
    session: Session, queues: tuple[str, ...], worker_id: str, lease_seconds: float,
) -> Job | None:
    job = JobRepository(session).next_queued(queues)
    if job is None:
        return None
    _start_attempt(session, job, worker_id, lease_seconds)
    return job


def recover_if_orphaned(
    session: Session, job_id: str, max_attempts: int, owner_gone: Callable[[str], bool],
) -> tuple[Job | None, str | None]:
    """The named job, recovered first if it is running under a worker that is gone (its
    lease ran out, or `owner_gone(worker_id)` says so): a redelivered queue message
    after a crash. Returns the job and, when this call recovered it, its new status
    (`queued`, or `failed` with WORKER_LOST past `max_attempts`)."""
    job = JobRepository(session).get_any(job_id, lock=True)
    if job is None or job.status != RUNNING:
        return job, None
    expired = job.lease_expires_at is not None and job.lease_expires_at < utcnow()
    if not (expired or owner_gone(job.worker_id or "")):
        return job, None
    return job, recover(session, job, max_attempts, "its worker was lost")


def _start_attempt(session: Session, job: Job, worker_id: str, lease_seconds: float) -> None:
    now = utcnow()
    job.status = RUNNING
    job.worker_id = worker_id
    job.attempts += 1
    job.lease_expires_at = now + timedelta(seconds=lease_seconds)
    job.started_at = job.started_at or now
    job.stage = "loading"
    job.progress = 0.0
    job.error = None
    session.flush()


def renew_lease(session: Session, claim: Claim, lease_seconds: float) -> bool:
    return JobRepository(session).fenced_update(
        claim.job_id, claim.worker_id, claim.attempt,
        lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))


def record_fetched(session: Session, claim: Claim, *, key: str, filename: str, size: int,
                   duration: float) -> bool:
    """A URL job's recording is in storage: it now has media like any other job."""
    return JobRepository(session).fenced_update(
        claim.job_id, claim.worker_id, claim.attempt, media_key=key, filename=filename,
        media_bytes=size, duration=duration, updated_at=utcnow())


def record_progress(session: Session, claim: Claim, stage: str, progress: float) -> bool:
    return JobRepository(session).fenced_update(
        claim.job_id, claim.worker_id, claim.attempt, stage=stage,
        progress=round(progress, 4), updated_at=utcnow())


def complete(
    session: Session, claim: Claim, *, result_key: str, duration: float, model: str,
    language: str | None, timings: dict[str, float], has_webhook: bool,
    warnings: list[str] | None = None,
) -> bool:
    now = utcnow()
    return JobRepository(session).fenced_update(
        claim.job_id, claim.worker_id, claim.attempt, status=COMPLETED, progress=1.0,
        stage="done", result_key=result_key, duration=duration, model=model,
        language=language, timings=timings, warnings=warnings or None, finished_at=now,
        lease_expires_at=None, updated_at=now,
        **_webhook_due(has_webhook, now))


def fail(session: Session, claim: Claim, error: HarkError, *, has_webhook: bool) -> bool:
    now = utcnow()
    return JobRepository(session).fenced_update(
        claim.job_id, claim.worker_id, claim.attempt, status=FAILED, error=error_body(error),
        finished_at=now, lease_expires_at=None, updated_at=now,
        **_webhook_due(has_webhook, now))


def release(session: Session, claim: Claim, *, count_attempt: bool) -> bool:
    """Put a running job back in the queue (a worker shutting down hands it back)."""
    attempts = claim.attempt if count_attempt else claim.attempt - 1
    return JobRepository(session).fenced_update(
        claim.job_id, claim.worker_id, claim.attempt, status=QUEUED, worker_id=None,
        attempts=attempts, lease_expires_at=None, stage=None, progress=0.0,
        updated_at=utcnow())


def recover(session: Session, job: Job, max_attempts: int, reason: str) -> str:
    """A running job whose worker is gone: back to the queue, or failed after the limit."""
    now = utcnow()
    job.worker_id = None
    job.lease_expires_at = None
    if job.attempts >= max_attempts:
        job.status = FAILED
        job.finished_at = now
        job.error = {"error": f"the job was interrupted {job.attempts} times ({reason}); "
                              "giving up", "error_code": "WORKER_LOST",
                     "details": {"attempts": job.attempts}}
        if job.webhook_url:
            job.webhook_status, job.webhook_next_at = "pending", now
    else:
        job.status = QUEUED
        job.stage = None
        job.progress = 0.0
    session.flush()
    return job.status


def recover_claim(session: Session, claim: Claim, max_attempts: int, reason: str) -> Job | None:
    """This attempt's process crashed under it (a decoder process died): the job goes
    back to the queue as for a lost worker, or fails past the attempt limit. None when
    the attempt no longer holds the job."""
    job = JobRepository(session).get_any(claim.job_id, lock=True)
    if job is None or job.status != RUNNING or job.worker_id != claim.worker_id or \
            job.attempts != claim.attempt:
        return None
    recover(session, job, max_attempts, reason)
    return job


def recover_expired(session: Session, max_attempts: int) -> list[Job]:
    """Recover every running job whose lease ran out; returns them."""
    jobs = JobRepository(session).expired_leases(utcnow())
    for job in jobs:
        recover(session, job, max_attempts, "its worker stopped renewing its lease")
    return jobs


def error_body(error: HarkError) -> dict[str, Any]:
    return {"error": error.message, "error_code": error.code, "details": error.details}


def _webhook_due(has_webhook: bool, now: datetime) -> dict[str, Any]:
    return {"webhook_status": "pending", "webhook_next_at": now} if has_webhook else {}
