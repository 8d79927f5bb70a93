"""Who spoke when: the diarizer interface and its result.

A diarizer takes the recording and the speech regions the VAD stage found, and
returns speaker turns labelled `SPEAKER_00`, `SPEAKER_01`, … in order of first
appearance, plus one unit-length voice embedding per speaker so that speakers can
be matched against enrolled voice profiles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from hark.errors import OptionError
from hark.pipeline.vad import Chunk


@dataclass(frozen=True)
class DiarizationOptions:
    """Speaker-count hints: an exact count, or bounds for the automatic count."""

    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None

    def __post_init__(self) -> None:
        for name in ("num_speakers", "min_speakers", "max_speakers"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= 32:
                raise OptionError(f"{name} must be between 1 and 32", field=name)
        if (self.min_speakers is not None and self.max_speakers is not None
                and self.min_speakers > self.max_speakers):
            raise OptionError("min_speakers must not exceed max_speakers", field="min_speakers")
        if self.num_speakers is not None and (
            (self.min_speakers is not None and self.num_speakers < self.min_speakers)
            or (self.max_speakers is not None and self.num_speakers > self.max_speakers)
        ):
            raise OptionError("num_speakers lies outside min_speakers..max_speakers",
                              field="num_speakers")


@dataclass(frozen=True)
class SpeakerTurn:
    start: float
    end: float
    speaker: str


@dataclass
class Diarization:
    """Turns in time order; `embeddings` maps each speaker to its unit-length voice vector."""

    turns: list[SpeakerTurn] = field(default_factory=list)
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def speakers(self) -> list[str]:
        return list(dict.fromkeys(t.speaker for t in self.turns))


class Diarizer(Protocol):
    @property
    def name(self) -> str: ...

    def diarize(
        self, audio: np.ndarray, speech: Sequence[Chunk], options: DiarizationOptions
    ) -> Diarization:
        """`audio` is 16 kHz mono float32; `speech` the VAD's speech regions, in order."""
        ...

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """One unit-length voice embedding for a recording of one speaker (enrolment)."""
        ...

    def close(self) -> None: ...
