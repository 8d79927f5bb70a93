"""What `GET /api/v1/usage` answers."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class Measure(BaseModel):
    used: float
    limit: float | None  # None: not limited


class RateOut(BaseModel):
    """The calling key's request rate and its tightest window now."""

    rate: str | None  # None: not limited
    remaining: int | None
    reset: int | None  # epoch seconds


class UsageOut(BaseModel):
    organisation: str
    period_start: datetime  # the month audio is counted in (UTC)
    audio_seconds: Measure
    concurrent_jobs: Measure
    storage_bytes: Measure
    # Streams open on the API process that answered (each process counts its own).
    live_streams: Measure
    requests: RateOut
