"""Tables: a transcription job, and an upload slot that a job can later consume.

The jobs table is also the durable queue of embedded mode: a worker claims the
oldest, most urgent `queued` row of its queues, holds it under a lease it renews
while running, and finishes it with an update fenced on its claim (`worker_id` and
`attempts`), so a worker that lost its lease can never overwrite the outcome of the
attempt that replaced it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import JSON, BigInteger, Boolean, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hark.db.base import Base, IdMixin, TenantMixin, TimestampMixin
from hark.db.types import UTCDateTime

QUEUED, RUNNING, COMPLETED, FAILED, CANCELED = (
    "queued", "running", "completed", "failed", "canceled")
Status = Literal["queued", "running", "completed", "failed", "canceled"]
STATUSES: tuple[str, ...] = get_args(Status)
FINISHED = frozenset({COMPLETED, FAILED, CANCELED})


class Job(IdMixin, TenantMixin, TimestampMixin, Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # The claim query: the next queued job of a queue, most urgent then oldest.
        Index("ix_jobs_claim", "status", "queue", "priority", "created_at"),
        # Listing: a tenant's jobs newest first, optionally by status.
        Index("ix_jobs_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_jobs_tenant_status", "tenant_id", "status"),
    )

    api_key_id: Mapped[str | None] = mapped_column(String(36))
    # The signed-in person who submitted it (None: a key, or anonymous use): members
    # change only their own jobs.
    user_id: Mapped[str | None] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    queue: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    filename: Mapped[str] = mapped_column(String(255))
    source_url: Mapped[str | None] = mapped_column(Text)
    media_key: Mapped[str | None] = mapped_column(String(255))
    media_bytes: Mapped[int | None] = mapped_column(BigInteger)
    duration: Mapped[float | None] = mapped_column(Float)
    model: Mapped[str] = mapped_column(String(255))
    # The transcript's language once the job completed: the one asked for, or detected.
    language: Mapped[str | None] = mapped_column(String(16))
    # What a reader of the transcript should know (an English-only model used on a
    # recording whose language was not given, say).
    warnings: Mapped[list[str] | None] = mapped_column(JSON)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    stage: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    result_key: Mapped[str | None] = mapped_column(String(255))
    timings: Mapped[dict[str, float] | None] = mapped_column(JSON)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    purged: Mapped[bool] = mapped_column(Boolean, default=False)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    # pending → delivered | failed; null when the job has no webhook or is not finished.
    webhook_status: Mapped[str | None] = mapped_column(String(16), index=True)
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0)
    webhook_next_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    webhook_error: Mapped[str | None] = mapped_column(Text)


class Upload(IdMixin, TenantMixin, TimestampMixin, Base):
    """A slot created by `POST /api/v1/uploads`, filled by a `PUT`, consumed by a job."""

    __tablename__ = "uploads"

    filename: Mapped[str] = mapped_column(String(255))
    declared_size: Mapped[int] = mapped_column(BigInteger)
    size: Mapped[int | None] = mapped_column(BigInteger)
    token_hash: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(255))
    # pending (no content) → ready (content stored) → used (taken by a job)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
