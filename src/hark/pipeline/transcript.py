"""The one result shape every engine, writer and API speaks.

Fields an engine cannot fill stay None; they are never invented.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Word:
    word: str
    start: float
    end: float
    probability: float | None = None
    speaker: str | None = None


@dataclass
class Segment:
    id: int
    start: float
    end: float
    text: str
    speaker: str | None = None
    confidence: float | None = None
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    words: list[Word] = field(default_factory=list)


@dataclass
class Speaker:
    id: str
    name: str | None = None
    profile_id: str | None = None
    similarity: float | None = None
    speech_seconds: float = 0.0

    @property
    def label(self) -> str:
        return self.name or self.id


@dataclass
class Transcript:
    text: str
    language: str | None
    language_probability: float | None
    duration: float
    model: str
    segments: list[Segment] = field(default_factory=list)
    speakers: list[Speaker] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transcript:
        segments = [
            Segment(
                **{k: v for k, v in seg.items() if k != "words"},
                words=[Word(**w) for w in seg.get("words", [])],
            )
            for seg in data.get("segments", [])
        ]
        return cls(
            text=data["text"],
            language=data.get("language"),
            language_probability=data.get("language_probability"),
            duration=data["duration"],
            model=data["model"],
            segments=segments,
            speakers=[Speaker(**s) for s in data.get("speakers", [])],
            timings=dict(data.get("timings", {})),
        )

    def speaker_label(self, speaker_id: str | None) -> str | None:
        """The display name of a speaker id: its enrolled name when known."""
        if speaker_id is None:
            return None
        for speaker in self.speakers:
            if speaker.id == speaker_id:
                return speaker.label
        return speaker_id


def join_words(words: list[str]) -> str:
    """Join engine word tokens into display text.

    Whisper words carry their own leading space; other engines give bare words.
    """
    if all(w.startswith(" ") or not w for w in words):
        return "".join(words).strip()
    return " ".join(w.strip() for w in words if w.strip())
