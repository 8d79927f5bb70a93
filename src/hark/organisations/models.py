"""Table: an organisation (the tenant every job, key and voice profile belongs to), its
quotas and how long it keeps what its jobs stored. Empty: not limited, kept."""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from hark.db.base import Base, TimestampMixin


class Organisation(TimestampMixin, Base):
    __tablename__ = "organisations"

    # The tenant id that jobs, keys and voice profiles carry.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # Seconds of audio its jobs may take in a calendar month (UTC).
    quota_audio_seconds_per_month: Mapped[float | None] = mapped_column(Float)
    # Jobs queued or running at once.
    quota_concurrent_jobs: Mapped[int | None] = mapped_column(Integer)
    # Bytes of stored media (jobs not yet purged).
    quota_storage_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # Live streams open at once, across the server (each API process counts its own).
    quota_live_streams: Mapped[int | None] = mapped_column(Integer)
    # Days after a job finished that its recording is deleted (the transcript stays).
    retention_media_days: Mapped[int | None] = mapped_column(Integer)
    # Days after a job finished that it is purged: recording, results, edits, index.
    retention_results_days: Mapped[int | None] = mapped_column(Integer)
