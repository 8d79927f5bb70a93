"""What the transcript API accepts."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from hark.transcripts.edits import MAX_TEXT_CHARS, MAX_WORD_CHARS, SegmentChange, WordChange

MAX_CHANGES = 5000


class WordEdit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    index: int = Field(ge=0, description="The word's position in the segment, from 0.")
    word: str = Field(min_length=1, max_length=MAX_WORD_CHARS)


class SegmentEdit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: int = Field(description="The segment's id.")
    text: str | None = Field(default=None, max_length=MAX_TEXT_CHARS,
                             description="The segment's new text; its words follow it, "
                                         "keeping their timings where they match.")
    words: list[WordEdit] | None = Field(default=None, max_length=MAX_CHANGES,
                                         description="New spellings of single words.")

    def change(self) -> SegmentChange:
        words = tuple(WordChange(w.index, w.word) for w in self.words or [])
        return SegmentChange(id=self.id, text=self.text, words=words)


class TranscriptEdit(BaseModel):
    """Changes to the latest revision; whatever is not mentioned stays as it is."""

    model_config = ConfigDict(extra="forbid")
    base_revision: int | None = Field(
        default=None, ge=0, description="The revision the edit was made on; if the "
        "transcript has moved on since, the edit is refused (409 REVISION_CONFLICT).")
    segments: list[SegmentEdit] = Field(default_factory=list, max_length=MAX_CHANGES)
    speakers: dict[str, str | None] = Field(
        default_factory=dict, max_length=256,
        description="Speaker id → display name; null or empty takes a rename back.")


class RestoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    revision: int = Field(default=0, ge=0, description="The revision to restore; 0 is "
                                                       "the original.")
    base_revision: int | None = Field(default=None, ge=0)


class EnrollRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
