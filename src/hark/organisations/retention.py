"""Retention: each organisation's policy applied by a sweep that every API process runs
(embedded and scaled), and an organisation's data erased on request.

A sweep takes the finished jobs past their organisation's limits a batch at a time, in
one transaction per batch, rows locked with SKIP LOCKED on PostgreSQL (SQLite has one
writer): two replicas sweeping at once never take the same job, so nothing is deleted
twice. Files go before the rows say so: if the commit is lost, the next pass finds the
same jobs again and deleting what is already gone is harmless, so no file is missed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from hark.db import Database
from hark.db.base import utcnow
from hark.jobs import service as jobs
from hark.jobs.keys import results_prefix
from hark.jobs.models import FINISHED, Job
from hark.jobs.periodic import Periodic
from hark.organisations.models import Organisation
from hark.storage.base import Storage
from hark.transcripts import service as revisions

log = logging.getLogger("hark.retention")

BATCH = 200


@dataclass
class SweepReport:
    media_deleted: int = 0  # recordings deleted, transcripts kept
    jobs_purged: int = 0  # recording, results, edits and index deleted
    organisations: list[str] = field(default_factory=list)


def sweep(db: Database, storage: Storage, now: datetime | None = None) -> SweepReport:
    """One pass over every organisation with a policy; what it removed."""
    now = now or utcnow()
    report = SweepReport()
    with db.session() as session:
        policies = [(o.id, o.retention_media_days, o.retention_results_days)
                    for o in session.scalars(select(Organisation).where(
                        Organisation.retention_media_days.is_not(None)
                        | Organisation.retention_results_days.is_not(None)))]
    for tenant, media_days, results_days in policies:
        if results_days is not None:
            report.jobs_purged += _drain(db, storage, tenant,
                                         now - timedelta(days=results_days), purge=True)
        if media_days is not None:
            report.media_deleted += _drain(db, storage, tenant,
                                           now - timedelta(days=media_days), purge=False)
        report.organisations.append(tenant)
    return report


def _drain(db: Database, storage: Storage, tenant: str, cutoff: datetime, *,
           purge: bool) -> int:
    done = 0
    while True:
        with db.session(write=True) as session:
            batch = _due(session, tenant, cutoff, purge)
            for job in batch:
                if purge:
                    for key in (job.media_key, results_prefix(job.id)):
                        if key:
                            storage.delete_prefix(key)
                    jobs.mark_purged(job)
                    revisions.forget(session, job.id)
                else:
                    if job.media_key:
                        storage.delete_prefix(job.media_key)
                    job.media_key = None
        done += len(batch)
        if len(batch) < BATCH:
            return done


def _due(session: Session, tenant: str, cutoff: datetime, purge: bool) -> list[Job]:
    query = select(Job).where(Job.tenant_id == tenant, Job.status.in_(FINISHED),
                              Job.finished_at < cutoff, Job.purged.is_(False))
    if not purge:
        query = query.where(Job.media_key.is_not(None))
    return list(session.scalars(query.order_by(Job.finished_at).limit(BATCH)
                                .with_for_update(skip_locked=True)))


def retention_sweeper(db: Database, storage: Storage, interval: float) -> Periodic:
    def tick() -> None:
        report = sweep(db, storage)
        if report.media_deleted or report.jobs_purged:
            log.info("retention: deleted %d recordings and purged %d jobs",
                     report.media_deleted, report.jobs_purged)

    return Periodic("hark-retention", interval, tick)
