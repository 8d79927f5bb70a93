"""What `/api/v1/usage` and `/api/v1/organisation` answer and take."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from hark.organisations.models import Organisation


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


class QuotasOut(BaseModel):
    """The organisation's quotas (None: not limited); set by the server's operators."""

    audio_hours_per_month: float | None
    concurrent_jobs: int | None
    storage_bytes: int | None
    live_streams: int | None


class RetentionOut(BaseModel):
    # Days after a job finishes that its recording / everything of it is deleted;
    # None: kept.
    media_days: int | None
    results_days: int | None


class OrganisationOut(BaseModel):
    id: str
    name: str
    quotas: QuotasOut
    retention: RetentionOut

    @classmethod
    def of(cls, organisation: Organisation) -> OrganisationOut:
        audio = organisation.quota_audio_seconds_per_month
        return cls(id=organisation.id, name=organisation.name,
                   quotas=QuotasOut(audio_hours_per_month=None if audio is None else audio / 3600,
                                    concurrent_jobs=organisation.quota_concurrent_jobs,
                                    storage_bytes=organisation.quota_storage_bytes,
                                    live_streams=organisation.quota_live_streams),
                   retention=RetentionOut(media_days=organisation.retention_media_days,
                                          results_days=organisation.retention_results_days))


class RetentionIn(BaseModel):
    """Only the fields given change; null keeps for ever."""

    model_config = ConfigDict(extra="forbid")

    media_days: int | None = Field(default=None, ge=1, le=36500)
    results_days: int | None = Field(default=None, ge=1, le=36500)
