"""Keeping the broker in step with the database in scaled mode.

The database is the truth about jobs; broker messages are only wake-up calls. This
loop, run by every API process, re-sends the message of any job that has waited
queued for a while (its message may have been lost with a Redis restart) and hands
back jobs whose worker stopped renewing its lease. Duplicate messages are harmless:
a worker claims a job only from `queued` (or from a dead owner), so at most one runs.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select

from hark.config import Settings
from hark.db import Database
from hark.db.base import utcnow
from hark.events.base import EventBus
from hark.jobs import service
from hark.jobs.models import QUEUED, Job
from hark.jobs.periodic import Periodic
from hark.jobs.queue import JobQueue

log = logging.getLogger("hark.reconcile")

BATCH = 500


def reconcile(db: Database, queue: JobQueue, bus: EventBus, max_attempts: int,
              resend_after: float) -> tuple[int, int]:
    """`resend_after`: seconds a job may wait queued before its message is sent again."""
    # Returns (jobs recovered from dead workers, messages re-sent).
    with db.session(write=True) as session:
        recovered = service.recover_expired(session, max_attempts)
        events = [(j.id, {"type": "status" if j.status == QUEUED else "failed", "job_id": j.id,
                          "status": j.status, "stage": j.stage, "progress": j.progress,
                          "error": j.error}) for j in recovered]
        cutoff = utcnow() - timedelta(seconds=resend_after)
        stale = list(session.scalars(
            select(Job).where(Job.status == QUEUED, Job.updated_at < cutoff)
            .order_by(Job.priority.desc(), Job.created_at).limit(BATCH)))
        requeued = [j for j in recovered if j.status == QUEUED]
        resend = [(j.id, j.queue, j.priority, j.duration) for j in [*requeued, *stale]]
        now = utcnow()
        for job in stale:
            job.updated_at = now
    for job_id, event in events:
        bus.publish(job_id, event)
    for job_id, queue_name, priority, duration in resend:
        queue.enqueue(job_id, queue_name, priority, duration)
    return len(recovered), len(resend)


def reconciler(settings: Settings, db: Database, queue: JobQueue, bus: EventBus) -> Periodic:
    def tick() -> None:
        recovered, resent = reconcile(db, queue, bus, settings.job_max_attempts,
                                      settings.resend_after_seconds)
        if recovered or resent:
            log.info("recovered %d jobs of lost workers, re-sent %d queued jobs",
                     recovered, resent)

    return Periodic("hark-reconcile", settings.reconcile_seconds, tick)
