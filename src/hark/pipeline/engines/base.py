"""The one small interface every speech-recognition engine implements."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from hark.errors import UnsupportedLanguageError
from hark.pipeline.options import TranscribeOptions
from hark.pipeline.samples import SampleSource
from hark.pipeline.transcript import Segment
from hark.pipeline.vad import Chunk


@dataclass
class Recognition:
    """An engine's answer: the language it settled on and its segments, produced lazily.

    Segments come in time order with recording-absolute times; their `id`s are
    assigned by the caller. Closing the iterator stops the engine's work.
    """

    language: str | None
    language_probability: float | None
    segments: Iterator[Segment]
    # What a reader of the transcript should know about how it was made.
    warnings: list[str] = field(default_factory=list)


class Engine(Protocol):
    @property
    def name(self) -> str:
        """What the transcript records as its model, e.g. `faster-whisper/small`."""
        ...

    @property
    def chunk_seconds(self) -> float:
        """The longest chunk this engine wants from the VAD stage."""
        ...

    @property
    def pack_chunks(self) -> bool:
        """Whether neighbouring speech regions are merged into chunks of up to that length."""
        ...

    def check(self, options: TranscribeOptions) -> None:
        """Refuse options this engine cannot honour, before any audio work starts."""
        ...

    def recognize(
        self, audio: SampleSource, chunks: Sequence[Chunk], options: TranscribeOptions
    ) -> Recognition: ...

    def close(self) -> None:
        """Free the model; the cache calls this on eviction."""
        ...


def check_english_only(options: TranscribeOptions, language_error: str,
                       translate_error: str) -> None:
    """What an English-only engine refuses: a language other than English (with
    `language_error`) and translation (with `translate_error`)."""
    if options.language not in (None, "en"):
        raise UnsupportedLanguageError(language_error, field="language")
    if options.task == "translate":
        raise UnsupportedLanguageError(translate_error, field="task")
