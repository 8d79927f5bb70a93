"""Tables: a speaker profile and the voice samples it was built from."""

from __future__ import annotations

from datetime import datetime

import numpy as np
from sqlalchemy import Float, ForeignKey, Integer, LargeBinary, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hark.db.base import Base, IdMixin, TenantMixin, TimestampMixin, utcnow
from hark.db.types import UTCDateTime

# Little-endian float32 whatever the machine, so a database can move between hosts.
_VECTOR_DTYPE = np.dtype("<f4")


def encode_vector(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=_VECTOR_DTYPE).tobytes()


def decode_vector(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=_VECTOR_DTYPE).astype(np.float32)


class SpeakerProfile(IdMixin, TenantMixin, TimestampMixin, Base):
    """One person's voice. `name` is unique within a tenant; enrolling an existing
    name adds samples to that profile.

    `embedder` names the model that made the embeddings (the diarizer), since vectors
    from different models cannot be compared. `centroid` is the unit-length,
    speech-weighted mean of the samples' embeddings, kept in step with them.
    """

    __tablename__ = "speaker_profiles"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    name: Mapped[str] = mapped_column(String(200))
    embedder: Mapped[str] = mapped_column(String(64))
    dimension: Mapped[int] = mapped_column(Integer)
    centroid: Mapped[bytes] = mapped_column(LargeBinary)
    sample_count: Mapped[int] = mapped_column(Integer, default=0)
    speech_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    # The person who enrolled it (None: a key of the organisation, or the command
    # line); erasing that person erases it.
    created_by: Mapped[str | None] = mapped_column(String(36), index=True)

    samples: Mapped[list[VoiceSample]] = relationship(
        back_populates="profile", cascade="all, delete-orphan", passive_deletes=True,
        order_by="VoiceSample.created_at",
    )

    @property
    def centroid_vector(self) -> np.ndarray:
        return decode_vector(self.centroid)


class VoiceSample(IdMixin, Base):
    """One enrolment recording's embedding (the audio itself is not kept)."""

    __tablename__ = "voice_samples"

    profile_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("speaker_profiles.id", ondelete="CASCADE"), index=True
    )
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    speech_seconds: Mapped[float] = mapped_column(Float)
    source: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, server_default=func.now()
    )

    profile: Mapped[SpeakerProfile] = relationship(back_populates="samples")

    @property
    def vector(self) -> np.ndarray:
        return decode_vector(self.embedding)
