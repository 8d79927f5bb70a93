"""Recording how a job attempt ended: completed (its result stored first), failed, or
handed back to the queue. Every write is fenced on the claim, so only the attempt that
still holds the job records anything, and it survives a short database outage."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.orm import Session
from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

from hark.errors import DatabaseError, HarkError, StorageError
from hark.jobs import events, service
from hark.jobs.context import WorkerContext
from hark.jobs.keys import result_key
from hark.jobs.models import FAILED
from hark.jobs.service import Claim
from hark.pipeline.transcript import Transcript

log = logging.getLogger("hark.worker")

T = TypeVar("T")


def completed(ctx: WorkerContext, claim: Claim, transcript: Transcript,
              has_webhook: bool) -> None:
    key = result_key(claim.job_id, claim.attempt)
    # Written before the fenced commit, so a committed job always has its result.
    ctx.storage.put_bytes(key, json.dumps(transcript.to_dict(), ensure_ascii=False).encode())
    won = final_write(ctx, lambda session: service.complete(
        session, claim, result_key=key, duration=transcript.duration, model=transcript.model,
        language=transcript.language, timings=transcript.timings,
        warnings=transcript.warnings, has_webhook=has_webhook))
    if not won:
        ctx.storage.delete_prefix(key)
        log.info("job %s: result discarded, the job was canceled or reassigned", claim.job_id)
        return
    ctx.channel.publish(claim.job_id, events.completed(
        claim.job_id, duration=transcript.duration, language=transcript.language,
        model=transcript.model, timings=transcript.timings, warnings=transcript.warnings,
        segments=len(transcript.segments)))
    ctx.channel.job_finished(transcript.model, "completed", transcript.duration,
                             transcript.timings)
    # An earlier attempt may have stored its result and then lost its completion write.
    try:
        for attempt in range(1, claim.attempt):
            ctx.storage.delete_prefix(result_key(claim.job_id, attempt))
    except StorageError as exc:  # the job is done; purge removes what stays behind
        log.warning("job %s: could not remove an earlier attempt's result: %s",
                    claim.job_id, exc)


def failed(ctx: WorkerContext, claim: Claim, model: str, error: HarkError,
           has_webhook: bool) -> None:
    won = final_write(ctx, lambda session: service.fail(session, claim, error,
                                                        has_webhook=has_webhook))
    if won:
        ctx.channel.publish(claim.job_id, events.failed(claim.job_id,
                                                        service.error_body(error)))
        ctx.channel.job_finished(model, "failed", 0.0, {})


def handed_back(ctx: WorkerContext, claim: Claim) -> None:
    """Return the job to the queue without counting this attempt against it.

    For a worker that stops, and for outages of the database or storage: neither is the
    job's doing, so neither should use up the attempts meant for jobs that crash
    their worker. (The caller re-raises an outage: whoever runs the worker waits
    before it takes the next job.)
    """
    if final_write(ctx, lambda session: service.release(session, claim, count_attempt=False)):
        ctx.channel.publish(claim.job_id, events.status(claim.job_id, "queued", None, 0.0))


def crashed(ctx: WorkerContext, claim: Claim, reason: str) -> None:
    """Part of the worker died under the job (a decoder process): it is retried like a
    job whose whole worker died, and fails with WORKER_LOST past the attempt limit."""
    job = final_write(ctx, lambda session: service.recover_claim(
        session, claim, ctx.settings.job_max_attempts, reason))
    if job is None:
        return
    if job.status == FAILED:
        ctx.channel.publish(claim.job_id, events.failed(claim.job_id, job.error))
        ctx.channel.job_finished(job.model, FAILED, 0.0, {})
    else:
        ctx.channel.publish(claim.job_id, events.status(claim.job_id, job.status, None, 0.0))


def final_write(ctx: WorkerContext, write: Callable[[Session], T]) -> T:
    """Record a job's outcome, trying again while the database is away.

    An hour of transcription should not be lost to a database restart: the write is
    retried for as long as the job's lease would have lasted. It is fenced, so a try
    that comes after another attempt took the job over is refused (False), not applied.
    """
    for attempt in Retrying(retry=retry_if_exception_type(DatabaseError),
                            wait=wait_exponential(multiplier=0.5, max=8.0),
                            stop=stop_after_delay(ctx.settings.job_lease_seconds),
                            before_sleep=before_sleep_log(log, logging.WARNING),
                            reraise=True):
        with attempt, ctx.db.session(write=True) as session:
            return write(session)
    raise AssertionError("unreachable: Retrying either returns or re-raises")
