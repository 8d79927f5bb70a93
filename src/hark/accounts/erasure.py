"""Erasing a person on request: the jobs they submitted with their recordings, results,
edits and search index, the voice profiles they enrolled, their API keys, sign-ins,
reset links and memberships, and the user; with a report of what went. The audit log
keeps its events, but those the person did (signed in, or through their keys) no longer
say who or from where, and those done to them no longer name them.

An organisation keeps at least one owner, so its last owner is not erased: make another
owner first, or erase the organisation (`hark orgs erase`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import delete, select

from hark.accounts.models import Membership, User
from hark.accounts.service import find_user, memberships
from hark.audit import service as audit
from hark.audit.actor import Actor
from hark.audit.models import USER_ERASED
from hark.db import Database
from hark.db.base import utcnow
from hark.errors import ConflictError
from hark.jobs.models import Job
from hark.keys.models import ApiKey
from hark.organisations.erasure import delete_rows, erase_jobs
from hark.speakers.models import SpeakerProfile, VoiceSample
from hark.storage.base import Storage


@dataclass
class PersonErasureReport:
    user: str  # the id the person had
    organisations: list[str]
    jobs: int = 0
    voice_profiles: int = 0
    voice_samples: int = 0
    api_keys: int = 0
    audit_events_anonymised: int = 0
    storage_prefixes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_erasable(session: Any, user: User) -> list[str]:
    """The person's organisations; ConflictError when they are one's last owner."""
    joined = memberships(session, user.id)
    for membership in joined:
        if membership.role == "owner" and len(list(session.scalars(select(Membership).where(
                Membership.organisation_id == membership.organisation_id,
                Membership.role == "owner")))) < 2:
            raise ConflictError(f"{user.email} is the last owner of "
                                f"{membership.organisation_id}: make another owner first, or "
                                "erase the organisation", field="user")
    return [m.organisation_id for m in joined]


def erase_person(db: Database, storage: Storage, email_or_id: str, *,
                 actor: Actor) -> PersonErasureReport:
    with db.session() as session:
        user = find_user(session, email_or_id)
        report = PersonErasureReport(user.id, check_erasable(session, user))
    # Disabled first, so that nothing new is submitted while the jobs go.
    with db.session(write=True) as session:
        find_user(session, report.user).disabled_at = utcnow()
        theirs = list(session.scalars(select(Job.id).where(Job.user_id == report.user)))
    report.jobs, report.storage_prefixes = erase_jobs(db, storage, Job.user_id == report.user)
    with db.session(write=True) as session:
        user = find_user(session, report.user)
        check_erasable(session, user)
        keys = list(session.scalars(select(ApiKey.id).where(ApiKey.user_id == user.id)))
        profiles = select(SpeakerProfile.id).where(SpeakerProfile.created_by == user.id)
        theirs += session.scalars(profiles)
        report.voice_samples = delete_rows(session, delete(VoiceSample).where(
            VoiceSample.profile_id.in_(profiles)))
        report.voice_profiles = delete_rows(session, delete(SpeakerProfile).where(
            SpeakerProfile.created_by == user.id))
        report.audit_events_anonymised = audit.anonymise_person(session, user.id, keys,
                                                                theirs)
        report.api_keys = delete_rows(session, delete(ApiKey).where(ApiKey.user_id == user.id))
        # Memberships, refresh tokens and reset links go with the user (ON DELETE CASCADE).
        session.delete(user)
        for organisation in report.organisations:
            audit.record(session, actor, tenant_id=organisation, action=USER_ERASED,
                         target_type="user", target_id=audit.ERASED_TENANT,
                         details={"jobs": report.jobs, "voice_profiles": report.voice_profiles,
                                  "api_keys": report.api_keys})
    return report
