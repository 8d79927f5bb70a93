"""Transcript revisions: read the latest (or any) revision, save edits, restore one.

Functions take the session first and never commit (the request that owns the session
does). Saving locks the job's `transcript_states` row, so two edits arriving together
get consecutive revision numbers instead of racing for one; a client that sends
`base_revision` (the revision it was looking at) gets REVISION_CONFLICT instead of
silently building on a newer revision it has not seen.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from hark.accounts import policy
from hark.api.state import Principal
from hark.db import Database
from hark.errors import ConflictError, JobPurgedError, JobStateError, NotFoundError
from hark.jobs import service as jobs
from hark.jobs.models import COMPLETED, Job
from hark.pipeline.transcript import Transcript
from hark.storage.base import Storage
from hark.transcripts import edits as model
from hark.transcripts.edits import SegmentChange
from hark.transcripts.models import TranscriptRevision, TranscriptState
from hark.transcripts.search import add_state, reindex
from hark.transcripts.search import forget as forget_index


class RevisionConflictError(ConflictError):
    """The transcript changed since the revision the client based its edit on."""

    code = "REVISION_CONFLICT"


class RevisionNotFoundError(NotFoundError):
    code = "REVISION_NOT_FOUND"


@dataclass
class Current:
    """A transcript as some revision has it."""

    job_id: str
    filename: str
    revision: int
    latest: int
    transcript: Transcript
    edits: dict[str, Any]
    updated_at: datetime | None

    @property
    def edited(self) -> bool:
        return bool(self.edits["segments"] or self.edits["speakers"])

    def to_dict(self) -> dict[str, Any]:
        updated = self.updated_at.isoformat().replace("+00:00", "Z") if self.updated_at else None
        return {"job_id": self.job_id, "filename": self.filename, "revision": self.revision,
                "latest_revision": self.latest, "edited": self.edited, "updated_at": updated,
                "transcript": self.transcript.to_dict()}


def completed_job(session: Session, tenant_id: str, job_id: str) -> Job:
    """The tenant's job, which must be completed with its result still stored."""
    job = jobs.get_job(session, tenant_id, job_id)
    if job.status != COMPLETED:
        raise JobStateError(f"the job is {job.status}; a transcript exists once it is "
                            "completed", status=job.status)
    if job.result_key is None:
        # Gone for good (410), unlike a job still running (409): asking again never helps.
        raise JobPurgedError("the job's results were deleted (purged) and cannot be read "
                             "again", status=job.status)
    return job


def load_original(storage: Storage, job: Job) -> Transcript:
    assert job.result_key is not None
    return Transcript.from_dict(json.loads(storage.get_bytes(job.result_key)))


def _revision(session: Session, job_id: str, number: int | None) -> TranscriptRevision | None:
    query = select(TranscriptRevision).where(TranscriptRevision.job_id == job_id)
    if number is not None:
        query = query.where(TranscriptRevision.revision == number)
    return session.scalars(query.order_by(TranscriptRevision.revision.desc()).limit(1)).first()


def _stored(revision: TranscriptRevision | None) -> dict[str, Any]:
    if revision is None:
        return model.empty_edits()
    return {"segments": dict(revision.edits.get("segments") or {}),
            "speakers": dict(revision.edits.get("speakers") or {})}


def read(session: Session, storage: Storage, tenant_id: str, job_id: str,
         revision: int | None = None) -> Current:
    """The latest revision of the job's transcript, or revision `revision`."""
    job = completed_job(session, tenant_id, job_id)
    latest_row = _revision(session, job_id, None)
    latest = latest_row.revision if latest_row is not None else 0
    if revision is None or revision == latest:
        row = latest_row
    elif revision == 0:
        row = None
    else:
        row = _revision(session, job_id, revision)
        if row is None:
            raise RevisionNotFoundError(f"the transcript has no revision {revision}",
                                        field="revision", latest_revision=latest)
    stored = _stored(row)
    transcript = model.apply_edits(load_original(storage, job), stored)
    updated = row.created_at if row is not None else job.finished_at
    return Current(job.id, job.filename, row.revision if row else 0, latest, transcript,
                   stored, updated)


def latest_edited(db: Database, job_id: str, raw: bytes) -> Transcript | None:
    """The latest revision made from the result object `raw`; None if never edited.

    For the result endpoint, which has already checked the job and read its result.
    """
    with db.session() as session:
        row = _revision(session, job_id, None)
        stored = _stored(row)
    if not (stored["segments"] or stored["speakers"]):
        return None
    return model.apply_edits(Transcript.from_dict(json.loads(raw)), stored)


def save(session: Session, storage: Storage, principal: Principal, job_id: str, *,
         segments: list[SegmentChange], speakers: dict[str, str | None],
         base_revision: int | None = None) -> tuple[Current, bool]:
    """Apply a person's changes as a new revision; returns it and whether anything changed."""
    return _commit(session, storage, principal, job_id, base_revision, "edit",
                   lambda original, current: model.change(original, current, segments,
                                                           speakers))


def restore(session: Session, storage: Storage, principal: Principal, job_id: str, *,
            revision: int = 0, base_revision: int | None = None) -> tuple[Current, bool]:
    """A new revision equal to `revision` (0: the original)."""
    if revision < 0:
        raise RevisionNotFoundError(f"the transcript has no revision {revision}",
                                    field="revision")
    completed_job(session, principal.tenant_id, job_id)  # another tenant's job: 404 first
    target = model.empty_edits()
    if revision:
        row = _revision(session, job_id, revision)
        if row is None:
            raise RevisionNotFoundError(f"the transcript has no revision {revision}",
                                        field="revision")
        target = _stored(row)
    return _commit(session, storage, principal, job_id, base_revision, "restore",
                   lambda original, _current: model.apply_edits(original, target))


def name_speaker(session: Session, storage: Storage, principal: Principal, job_id: str,
                 speaker_id: str, name: str, profile_id: str) -> tuple[Current, bool]:
    """Name a speaker after an enrolled profile (the voice was just saved as one)."""

    def named(original: Transcript, current: Transcript) -> Transcript:
        edited = model.change(original, current, [], {})
        model.rename(edited, original, speaker_id, name, profile_id)
        return edited

    return _commit(session, storage, principal, job_id, None, "enroll", named)


def _commit(session: Session, storage: Storage, principal: Principal, job_id: str,
            base_revision: int | None, kind: str,
            make: Callable[[Transcript, Transcript], Transcript]) -> tuple[Current, bool]:
    job = completed_job(session, principal.tenant_id, job_id)
    policy.check_manages(principal, job.user_id)
    state = _locked_state(session, job)
    latest_row = _revision(session, job.id, None)
    latest = latest_row.revision if latest_row is not None else 0
    if base_revision is not None and base_revision != latest:
        raise RevisionConflictError(
            f"the transcript is at revision {latest}, not {base_revision}: reload it and "
            "make the change again", field="base_revision", latest_revision=latest)
    original = load_original(storage, job)
    stored = _stored(latest_row)
    current = model.apply_edits(original, stored)
    edited = make(original, current)
    edits = model.diff(original, edited)
    if edits == stored:
        updated = latest_row.created_at if latest_row is not None else job.finished_at
        return Current(job.id, job.filename, latest, latest, current, stored, updated), False
    row = TranscriptRevision(job_id=job.id, tenant_id=job.tenant_id, revision=latest + 1,
                             kind=kind, api_key_id=principal.api_key_id, edits=edits)
    session.add(row)
    state.revision = latest + 1
    reindex(session, job.tenant_id, job.id, edited)
    session.flush()
    return Current(job.id, job.filename, row.revision, row.revision, edited, edits,
                   row.created_at), True


def _locked_state(session: Session, job: Job) -> TranscriptState:
    query = select(TranscriptState).where(TranscriptState.job_id == job.id).with_for_update()
    state = session.scalars(query).first()
    if state is None:
        state = add_state(session, job.tenant_id, job.id) or session.scalars(query).one()
    return state


def revisions(session: Session, tenant_id: str, job_id: str) -> list[dict[str, Any]]:
    """The history, oldest first: the original (revision 0), then each saved revision."""
    job = completed_job(session, tenant_id, job_id)
    rows = session.scalars(select(TranscriptRevision)
                           .where(TranscriptRevision.job_id == job.id)
                           .order_by(TranscriptRevision.revision))
    history = [{"revision": 0, "kind": "original", "created_at": _time(job.finished_at),
                "api_key_id": job.api_key_id, "segments_edited": 0, "speakers_renamed": 0}]
    history += [{"revision": r.revision, "kind": r.kind, "created_at": _time(r.created_at),
                 "api_key_id": r.api_key_id,
                 "segments_edited": len(r.edits.get("segments") or {}),
                 "speakers_renamed": len(r.edits.get("speakers") or {})} for r in rows]
    return history


def forget(session: Session, job_id: str) -> None:
    """Remove everything kept about the job's transcript (its purge)."""
    forget_index(session, job_id)
    session.execute(delete(TranscriptRevision).where(TranscriptRevision.job_id == job_id))
    session.execute(delete(TranscriptState).where(TranscriptState.job_id == job_id))


def _time(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None
