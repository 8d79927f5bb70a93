"""Queries on the jobs and uploads tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from hark.jobs.models import QUEUED, RUNNING, Job, Upload


class JobRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, job: Job) -> Job:
        self.session.add(job)
        self.session.flush()
        return job

    def get(self, tenant_id: str, job_id: str) -> Job | None:
        job = self.session.get(Job, job_id)
        return job if job is not None and job.tenant_id == tenant_id else None

    def get_any(self, job_id: str, *, lock: bool = False) -> Job | None:
        if lock:
            return self.session.scalars(
                select(Job).where(Job.id == job_id).with_for_update()).first()
        return self.session.get(Job, job_id)

    def page(
        self, tenant_id: str, *, status: str | None, limit: int,
        after: tuple[datetime, str] | None,
    ) -> list[Job]:
        query = select(Job).where(Job.tenant_id == tenant_id)
        if status is not None:
            query = query.where(Job.status == status)
        if after is not None:
            created, job_id = after
            query = query.where(or_(Job.created_at < created,
                                    (Job.created_at == created) & (Job.id < job_id)))
        query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
        return list(self.session.scalars(query))

    def next_queued(self, queues: Sequence[str]) -> Job | None:
        """The job to claim next from `queues`, locked for claiming.

        The most urgent priority first. Within it, tenants take turns: the tenant with
        the fewest jobs running goes first (then the one whose waiting job is oldest),
        and runs its oldest job, so one tenant's backlog never keeps another's job
        waiting behind it. PostgreSQL skips rows other claimers hold; SQLite serialises
        writers anyway.
        """
        waiting = (Job.status == QUEUED, Job.queue.in_(queues))
        top = self.session.scalar(select(func.max(Job.priority)).where(*waiting))
        if top is None:
            return None
        heads: dict[str, datetime] = {tenant: oldest for tenant, oldest in self.session.execute(
            select(Job.tenant_id, func.min(Job.created_at))
            .where(*waiting, Job.priority == top).group_by(Job.tenant_id))}
        running: dict[str, int] = {tenant: count for tenant, count in self.session.execute(
            select(Job.tenant_id, func.count()).where(
                Job.status == RUNNING, Job.tenant_id.in_(list(heads)))
            .group_by(Job.tenant_id))}
        for tenant in sorted(heads, key=lambda t: (running.get(t, 0), heads[t], t)):
            job = self.session.scalars(
                select(Job).where(*waiting, Job.priority == top, Job.tenant_id == tenant)
                .order_by(Job.created_at, Job.id).limit(1)
                .with_for_update(skip_locked=True)).first()
            if job is not None:
                return job
        return None

    def has_queued(self, queues: Sequence[str]) -> bool:
        query = select(Job.id).where(Job.status == QUEUED, Job.queue.in_(queues)).limit(1)
        return self.session.scalars(query).first() is not None

    def running(self) -> list[Job]:
        return list(self.session.scalars(select(Job).where(Job.status == RUNNING)))

    def expired_leases(self, now: datetime) -> list[Job]:
        return list(self.session.scalars(
            select(Job).where(Job.status == RUNNING, Job.lease_expires_at < now)))

    def fenced_update(self, job_id: str, worker_id: str, attempt: int, /,
                      **values: object) -> bool:
        """Change the job only while this worker's attempt still holds it."""
        result = self.session.execute(
            update(Job).where(Job.id == job_id, Job.status == RUNNING,
                              Job.worker_id == worker_id, Job.attempts == attempt)
            .values(**values).execution_options(synchronize_session=False))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def counts_by_status(self) -> dict[str, int]:
        rows = self.session.execute(select(Job.status, func.count()).group_by(Job.status))
        return {status: count for status, count in rows}

    def queued_by_queue(self) -> dict[str, int]:
        rows = self.session.execute(select(Job.queue, func.count())
                                    .where(Job.status == QUEUED).group_by(Job.queue))
        return {queue: count for queue, count in rows}

    def count_queued(self, tenant_id: str) -> int:
        return int(self.session.scalar(
            select(func.count()).select_from(Job).where(
                Job.tenant_id == tenant_id, Job.status == QUEUED)) or 0)

    def due_webhooks(self, now: datetime, limit: int) -> list[Job]:
        return list(self.session.scalars(
            select(Job).where(Job.webhook_status == "pending", Job.webhook_next_at <= now)
            .order_by(Job.webhook_next_at).limit(limit)))


class UploadRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, upload: Upload) -> Upload:
        self.session.add(upload)
        self.session.flush()
        return upload

    def get(self, tenant_id: str | None, upload_id: str, *, lock: bool = False) -> Upload | None:
        query = select(Upload).where(Upload.id == upload_id)
        if tenant_id is not None:
            query = query.where(Upload.tenant_id == tenant_id)
        if lock:
            query = query.with_for_update()
        return self.session.scalars(query).first()

    def expired(self, now: datetime) -> list[Upload]:
        return list(self.session.scalars(
            select(Upload).where(Upload.expires_at < now, Upload.status != "used")))
