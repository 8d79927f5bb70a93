"""What the speakers API returns, and the multipart bodies it reads (for the OpenAPI docs).

The enrolment endpoints parse their multipart bodies themselves, streaming the audio
to storage, so FastAPI cannot infer the request body: `ENROLL_BODY` and `SAMPLES_BODY`
describe it for `/docs` instead.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hark.speakers.service import MAX_NAME_LENGTH, MIN_SPEECH_SECONDS


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


def _files_schema() -> dict[str, Any]:
    return {
        "type": "array", "minItems": 1,
        "items": {"type": "string", "format": "binary"},
        "description": f"Recordings of this person alone, each with at least "
                       f"{MIN_SPEECH_SECONDS:g} s of speech (any format FFmpeg reads).",
    }


def _multipart(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {
        "schema": {"type": "object", "properties": properties, "required": required}}}}}


ENROLL_BODY = _multipart(
    {"name": {"type": "string", "maxLength": MAX_NAME_LENGTH,
              "description": "The person's name; an existing name gains the new samples."},
     "files": _files_schema()},
    ["name", "files"],
)

SAMPLES_BODY = _multipart({"files": _files_schema()}, ["files"])
