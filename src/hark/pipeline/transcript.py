"""The one result shape every engine, writer and API speaks.

Fields an engine cannot fill stay None; they are never invented.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Word:
    """One recognised word. `word` holds no surrounding whitespace; `leading_space`
    says whether a space separates it from the word before, as the engine wrote it
    (False inside Japanese or Chinese text, after a hyphen, before "'s")."""

    word: str
    start: float
    end: float
    probability: float | None = None
    speaker: str | None = None
    leading_space: bool = True


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
    # What a reader should know about how the transcript was made (e.g. an English-only
    # engine used on a recording whose language was not given).
    warnings: list[str] = field(default_factory=list)

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
            warnings=[str(w) for w in data.get("warnings") or []],
        )

    def speaker_label(self, speaker_id: str | None) -> str | None:
        """The display name of a speaker id: its enrolled name when known."""
        if speaker_id is None:
            return None
        for speaker in self.speakers:
            if speaker.id == speaker_id:
                return speaker.label
        return speaker_id


# Scripts written without spaces between words.
UNSPACED_LANGUAGES = frozenset({"ja", "zh", "yue", "th", "lo", "my", "bo"})


def join_words(words: Sequence[Word]) -> str:
    """The text the words spell, spaced where the engine put spaces."""
    parts: list[str] = []
    for word in words:
        text = word.word.strip()
        if not text:
            continue
        if parts and word.leading_space:
            parts.append(" ")
        parts.append(text)
    return "".join(parts)


def join_segments(segments: Sequence[Segment], language: str | None = None) -> str:
    """A transcript's full text: segments joined the way their first words attach."""
    parts: list[str] = []
    for segment in segments:
        text = segment.text.strip()
        if not text:
            continue
        if parts:
            spaced = (segment.words[0].leading_space if segment.words
                      else language not in UNSPACED_LANGUAGES)
            if spaced:
                parts.append(" ")
        parts.append(text)
    return "".join(parts)
