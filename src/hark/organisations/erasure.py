"""Erasing an organisation on request: every job with its recording, results, edits and
search index, its upload slots, voice profiles and API keys, and the organisation
itself, with a report of what went. Its audit events are kept but anonymised: they no
longer name the organisation, its keys or its callers' addresses.

Jobs go a batch at a time, each batch in its own transaction with its files deleted
before the rows (as the retention sweep does), so an erasure that stops half way is
finished by running it again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Delete, delete, select
from sqlalchemy.orm import Session

from hark.audit import service as audit
from hark.db import Database
from hark.errors import NotFoundError
from hark.jobs.keys import results_prefix
from hark.jobs.models import Job, Upload
from hark.keys.models import ApiKey
from hark.organisations.models import Organisation
from hark.speakers.models import SpeakerProfile, VoiceSample
from hark.storage.base import Storage
from hark.transcripts import service as revisions

BATCH = 500


@dataclass
class ErasureReport:
    organisation: str
    jobs: int = 0
    upload_slots: int = 0
    voice_profiles: int = 0
    voice_samples: int = 0
    api_keys: int = 0
    audit_events_anonymised: int = 0
    storage_prefixes: int = 0  # recordings, results and uploads deleted from storage

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def erase_organisation(db: Database, storage: Storage, tenant: str) -> ErasureReport:
    with db.session() as session:
        if session.get(Organisation, tenant) is None:
            raise NotFoundError(f"no organisation {tenant!r}", organisation=tenant)
    report = ErasureReport(tenant)
    report.jobs, report.storage_prefixes = erase_jobs(db, storage, Job.tenant_id == tenant)
    with db.session(write=True) as session:
        for upload in session.scalars(select(Upload).where(Upload.tenant_id == tenant)):
            storage.delete_prefix(upload.storage_key)
            report.storage_prefixes += 1
            report.upload_slots += 1
            session.delete(upload)
        profiles = select(SpeakerProfile.id).where(SpeakerProfile.tenant_id == tenant)
        report.voice_samples = delete_rows(session, delete(VoiceSample).where(
            VoiceSample.profile_id.in_(profiles)))
        report.voice_profiles = delete_rows(session, delete(SpeakerProfile).where(
            SpeakerProfile.tenant_id == tenant))
        report.api_keys = delete_rows(session, delete(ApiKey).where(ApiKey.tenant_id == tenant))
        delete_rows(session, delete(Organisation).where(Organisation.id == tenant))
        report.audit_events_anonymised = audit.anonymise_tenant(session, tenant)
    return report


def erase_jobs(db: Database, storage: Storage,
               which: ColumnElement[bool]) -> tuple[int, int]:
    """Erase the jobs `which` selects, with their recordings, results, edits and search
    index; how many jobs and storage prefixes went."""
    jobs = prefixes = 0
    while True:
        with db.session(write=True) as session:
            batch = list(session.scalars(select(Job).where(which).limit(BATCH)
                                         .with_for_update(skip_locked=True)))
            for job in batch:
                for key in (job.media_key, results_prefix(job.id)):
                    if key:
                        storage.delete_prefix(key)
                        prefixes += 1
                revisions.forget(session, job.id)
                session.delete(job)
        jobs += len(batch)
        if len(batch) < BATCH:
            return jobs, prefixes


def delete_rows(session: Session, statement: Delete) -> int:
    """Run a DELETE; the rows it removed."""
    result = cast("CursorResult[Any]", session.execute(statement))
    return int(result.rowcount or 0)
