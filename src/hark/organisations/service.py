"""Organisations and their quotas: what each has used, and refusing work that would
pass a quota before it starts. Functions take the session first and never commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hark.audit import service as audit_log
from hark.audit.actor import Actor
from hark.audit.models import QUOTAS_CHANGED, RETENTION_CHANGED
from hark.errors import ConcurrencyQuotaError, NotFoundError, OptionError, QuotaExceededError
from hark.organisations.models import Organisation

QUOTAS = ("audio_seconds_per_month", "concurrent_jobs", "storage_bytes", "live_streams")


def ensure_organisation(session: Session, tenant_id: str) -> Organisation:
    """The tenant's organisation, made (named after it) if it has none yet."""
    organisation = session.get(Organisation, tenant_id)
    if organisation is None:
        organisation = Organisation(id=tenant_id, name=tenant_id)
        session.add(organisation)
        session.flush()
    return organisation


def list_organisations(session: Session) -> list[Organisation]:
    return list(session.scalars(select(Organisation).order_by(Organisation.id)))


def set_quotas(session: Session, tenant_id: str, changes: dict[str, float | None], *,
               actor: Actor) -> Organisation:
    """Set (a number) or clear (None) the named quotas of an existing organisation."""
    organisation = session.get(Organisation, tenant_id)
    if organisation is None:
        raise NotFoundError(f"no organisation {tenant_id!r}", organisation=tenant_id)
    for name, value in changes.items():
        if name not in QUOTAS:
            raise OptionError(f"unknown quota {name!r}", field=name)
        if value is not None and value < 0:
            raise OptionError(f"{name} cannot be negative", field=name)
        number = value if value is None or name == "audio_seconds_per_month" else int(value)
        setattr(organisation, f"quota_{name}", number)
    audit_log.record(session, actor, tenant_id=tenant_id, action=QUOTAS_CHANGED,
                     target_type="organisation", target_id=tenant_id, details=dict(changes))
    session.flush()
    return organisation


def set_retention(session: Session, tenant_id: str, *, media_days: int | bool | None = False,
                  results_days: int | bool | None = False, actor: Actor) -> Organisation:
    """Set a policy (days), keep for ever (None), or leave one as it is (False)."""
    organisation = session.get(Organisation, tenant_id)
    if organisation is None:
        raise NotFoundError(f"no organisation {tenant_id!r}", organisation=tenant_id)
    for name, days in (("media_days", media_days), ("results_days", results_days)):
        if days is False:
            continue
        if days is not None and (isinstance(days, bool) or days < 1):
            raise OptionError(f"{name} is at least 1 (or keep)", field=name)
        setattr(organisation, f"retention_{name}", days)
    audit_log.record(session, actor, tenant_id=tenant_id, action=RETENTION_CHANGED,
                     target_type="organisation", target_id=tenant_id,
                     details={"media_days": organisation.retention_media_days,
                              "results_days": organisation.retention_results_days})
    session.flush()
    return organisation


@dataclass(frozen=True)
class Usage:
    """What an organisation uses now, beside its quotas (None: not limited)."""

    organisation: str
    period_start: datetime
    audio_seconds: float
    concurrent_jobs: int
    storage_bytes: int
    quotas: dict[str, float | None]


def month_start(now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def usage(session: Session, tenant_id: str) -> Usage:
    from hark.jobs.models import CANCELED, FAILED, QUEUED, RUNNING, Job

    start = month_start()
    organisation = session.get(Organisation, tenant_id)
    # Audio of this month's jobs, except those that failed or were canceled.
    audio = session.scalar(select(func.coalesce(func.sum(Job.duration), 0.0)).where(
        Job.tenant_id == tenant_id, Job.created_at >= start,
        Job.status.not_in((FAILED, CANCELED))))
    active = session.scalar(select(func.count()).select_from(Job).where(
        Job.tenant_id == tenant_id, Job.status.in_((QUEUED, RUNNING))))
    stored = session.scalar(select(func.coalesce(func.sum(Job.media_bytes), 0)).where(
        Job.tenant_id == tenant_id, Job.media_key.is_not(None), Job.purged.is_(False)))
    quotas: dict[str, float | None] = {
        name: getattr(organisation, f"quota_{name}") if organisation else None
        for name in QUOTAS}
    return Usage(tenant_id, start, float(audio or 0.0), int(active or 0), int(stored or 0),
                 quotas)


def check_job_quotas(session: Session, tenant_id: str, *, duration: float | None,
                     size: int | None) -> None:
    """Refuse a new job that would pass one of the organisation's quotas. A job whose
    recording is still to be fetched counts once its length is known."""
    organisation = session.get(Organisation, tenant_id)
    if organisation is None or all(
            getattr(organisation, f"quota_{name}") is None for name in QUOTAS[:3]):
        return
    # Submissions of one organisation take turns here (a row lock on PostgreSQL;
    # SQLite has one writer anyway), so two at once cannot both take the last place.
    session.refresh(organisation, with_for_update=True)
    used = usage(session, tenant_id)
    limit = organisation.quota_concurrent_jobs
    if limit is not None and used.concurrent_jobs + 1 > limit:
        raise ConcurrencyQuotaError(
            f"Your organisation may have {limit} jobs queued or running at once; wait for "
            "one to finish", quota="concurrent_jobs", limit=limit, used=used.concurrent_jobs,
            retry_after=30)
    seconds = organisation.quota_audio_seconds_per_month
    if seconds is not None and used.audio_seconds + (duration or 0.0) > seconds:
        raise QuotaExceededError(
            f"This job would pass your organisation's {seconds / 3600:g} hours of audio this "
            f"month ({used.audio_seconds / 3600:.2f} h used)", quota="audio_seconds_per_month",
            limit=seconds, used=round(used.audio_seconds, 3), requested=duration)
    space = organisation.quota_storage_bytes
    if space is not None and used.storage_bytes + (size or 0) > space:
        raise QuotaExceededError(
            f"This recording would pass your organisation's {space} bytes of storage "
            f"({used.storage_bytes} used); delete or purge jobs first", quota="storage_bytes",
            limit=space, used=used.storage_bytes, requested=size)


def live_stream_quota(session: Session, tenant_id: str) -> int | None:
    organisation = session.get(Organisation, tenant_id)
    return organisation.quota_live_streams if organisation else None
