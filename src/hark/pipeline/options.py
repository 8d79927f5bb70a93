"""What a caller may ask of the pipeline, validated once at the edge."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hark.errors import OptionError
from hark.pipeline.diarization.base import DiarizationOptions
from hark.pipeline.languages import language_code
from hark.pipeline.vad import VadOptions

Task = Literal["transcribe", "translate"]

@dataclass(frozen=True)
class TranscribeOptions:
    """Recognition options shared by every engine; an engine ignores what it cannot use.

    `temperature=None` keeps faster-whisper's fallback ladder (0.0 → 1.0 on failure).
    `batch_size=None` takes the configured default; 0 decodes sequentially.
    `vad=None` turns voice-activity detection off and decodes the whole recording.
    """

    model: str | None = None
    language: str | None = None
    task: Task = "transcribe"
    word_timestamps: bool = True
    vad: VadOptions | None = field(default_factory=VadOptions)
    beam_size: int = 5
    temperature: float | None = None
    initial_prompt: str | None = None
    hotwords: str | None = None
    batch_size: int | None = None
    diarize: bool = False
    speakers: DiarizationOptions = field(default_factory=DiarizationOptions)
    identify_speakers: bool = False

    def __post_init__(self) -> None:
        if self.language is not None:
            object.__setattr__(self, "language", language_code(self.language))
        if self.task not in ("transcribe", "translate"):
            raise OptionError(f"task must be 'transcribe' or 'translate', not {self.task!r}",
                              field="task")
        if not 1 <= self.beam_size <= 20:
            raise OptionError("beam_size must be between 1 and 20", field="beam_size")
        if self.temperature is not None and not 0.0 <= self.temperature <= 1.0:
            raise OptionError("temperature must be between 0 and 1", field="temperature")
        if self.batch_size is not None and not 0 <= self.batch_size <= 64:
            raise OptionError("batch_size must be between 0 and 64", field="batch_size")
        if self.identify_speakers and not self.diarize:
            raise OptionError("identify_speakers needs diarize", field="identify_speakers")
        vad = self.vad
        if vad is not None:
            if not 0.0 < vad.threshold < 1.0:
                raise OptionError("vad threshold must be between 0 and 1", field="vad_threshold")
            if vad.max_chunk_seconds is not None and not 1.0 <= vad.max_chunk_seconds <= 30.0:
                raise OptionError("max chunk length must be between 1 and 30 seconds",
                                  field="max_chunk_seconds")
            if min(vad.min_silence_ms, vad.speech_pad_ms, vad.min_speech_ms) < 0:
                raise OptionError("vad durations must not be negative", field="vad")
