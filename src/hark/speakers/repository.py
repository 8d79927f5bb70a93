"""Queries for speaker profiles, always scoped to one tenant."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from hark.speakers.models import SpeakerProfile


class SpeakerProfileRepository:
    """`lock=True` holds the row until the transaction ends (PostgreSQL's FOR UPDATE;
    SQLite has no row locks, and serialises writers with `Database.session(write=True)`).
    """

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, tenant_id: str, profile_id: str, *, lock: bool = False
            ) -> SpeakerProfile | None:
        query = select(SpeakerProfile).where(SpeakerProfile.tenant_id == tenant_id,
                                             SpeakerProfile.id == profile_id)
        return self.session.scalars(query.with_for_update() if lock else query).one_or_none()

    def get_by_name(self, tenant_id: str, name: str, *, lock: bool = False
                    ) -> SpeakerProfile | None:
        query = select(SpeakerProfile).where(SpeakerProfile.tenant_id == tenant_id,
                                             SpeakerProfile.name == name)
        return self.session.scalars(query.with_for_update() if lock else query).one_or_none()

    def list_profiles(self, tenant_id: str, embedder: str | None = None
                      ) -> list[SpeakerProfile]:
        query = select(SpeakerProfile).where(SpeakerProfile.tenant_id == tenant_id)
        if embedder is not None:
            query = query.where(SpeakerProfile.embedder == embedder)
        return list(self.session.scalars(
            query.order_by(SpeakerProfile.name, SpeakerProfile.id)))

    def add(self, profile: SpeakerProfile) -> None:
        self.session.add(profile)

    def delete(self, profile: SpeakerProfile) -> None:
        self.session.delete(profile)
