"""What the speakers API returns."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class SpeakerOut(BaseModel):
    """A voice profile (its embeddings are not exposed)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str = Field(description="The person's name, unique within the tenant; "
                                  "transcripts show it for matched speakers.")
    embedder: str = Field(description="The speaker-embedding model the samples went "
                                      "through; only diarizers of this kind match it.")
    sample_count: int = Field(description="Voice samples the profile was built from.")
    speech_seconds: float = Field(description="Seconds of speech over all its samples.")
    created_at: datetime
    updated_at: datetime


class SpeakerList(BaseModel):
    items: list[SpeakerOut]
