"""faster-whisper (CTranslate2) behind the engine interface.

The VAD stage's chunks are handed to faster-whisper as its `clip_timestamps`, so the
same chunks drive both the batched and the sequential decoder, and what comes back
is faster-whisper's own output, untouched apart from the change of shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hark.errors import UnsupportedLanguageError
from hark.pipeline.engines.base import Recognition
from hark.pipeline.options import TranscribeOptions
from hark.pipeline.transcript import Segment, Word
from hark.pipeline.vad import Chunk

WHISPER_WINDOW_SECONDS = 30.0


@dataclass(frozen=True)
class WhisperConfig:
    path: Path
    label: str
    device: str = "auto"
    compute_type: str = "auto"
    cpu_threads: int = 0
    default_batch_size: int = 8


def pick_device(device: str, compute_type: str) -> tuple[str, str]:
    """CUDA with float16 when a GPU is present, else CPU with int8; either may be forced."""
    import ctranslate2

    if device == "auto":
        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    return device, compute_type


class WhisperEngine:
    def __init__(self, config: WhisperConfig) -> None:
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        self.config = config
        self.device, self.compute_type = pick_device(config.device, config.compute_type)
        self.model = WhisperModel(
            str(config.path),
            device=self.device,
            compute_type=self.compute_type,
            cpu_threads=config.cpu_threads,
            local_files_only=True,
        )
        self.batched = BatchedInferencePipeline(self.model)

    @property
    def name(self) -> str:
        return f"faster-whisper/{self.config.label}"

    @property
    def chunk_seconds(self) -> float:
        return WHISPER_WINDOW_SECONDS

    @property
    def pack_chunks(self) -> bool:
        return True

    @property
    def multilingual(self) -> bool:
        return bool(self.model.model.is_multilingual)

    def check(self, options: TranscribeOptions) -> None:
        if self.multilingual:
            return
        if options.language not in (None, "en"):
            raise UnsupportedLanguageError(
                f"{self.name} is an English-only model; it cannot transcribe "
                f"language {options.language!r}", field="language")
        if options.task == "translate":
            raise UnsupportedLanguageError(
                f"{self.name} is an English-only model; it cannot translate", field="task")

    def decode_kwargs(self, options: TranscribeOptions) -> dict[str, Any]:
        """The faster-whisper keyword arguments for these options (shared by both decoders)."""
        kwargs: dict[str, Any] = {
            "language": options.language,
            "task": options.task,
            "beam_size": options.beam_size,
            "word_timestamps": options.word_timestamps,
            "initial_prompt": options.initial_prompt,
            "hotwords": options.hotwords,
        }
        if options.temperature is not None:
            kwargs["temperature"] = options.temperature
        return kwargs

    def recognize(
        self, audio: np.ndarray, chunks: Sequence[Chunk], options: TranscribeOptions
    ) -> Recognition:
        kwargs = self.decode_kwargs(options)
        batch_size = (
            self.config.default_batch_size if options.batch_size is None else options.batch_size
        )
        if batch_size > 0:
            clips = [{"start": c.start_s, "end": c.end_s} for c in chunks]
            segments, info = self.batched.transcribe(
                audio, clip_timestamps=clips, batch_size=batch_size, **kwargs
            )
        else:
            bounds = [t for c in chunks for t in (c.start_s, c.end_s)]
            segments, info = self.model.transcribe(
                audio, clip_timestamps=bounds, vad_filter=False, **kwargs
            )
        return Recognition(
            language=info.language,
            language_probability=info.language_probability,
            segments=convert_segments(segments),
        )

    def close(self) -> None:
        # CTranslate2 frees the weights when the last reference goes.
        del self.batched
        del self.model


def convert_segments(segments: Iterable[Any]) -> Iterator[Segment]:
    for seg in segments:
        words = [
            Word(word=w.word.strip(), start=w.start, end=w.end, probability=w.probability,
                 leading_space=w.word[:1].isspace())
            for w in (seg.words or []) if w.word.strip()
        ]
        confidence = (
            float(np.mean([w.probability for w in words]))
            if words else float(np.exp(seg.avg_logprob))
        )
        yield Segment(
            id=0,
            start=seg.start,
            end=seg.end,
            text=seg.text.strip(),
            confidence=confidence,
            avg_logprob=seg.avg_logprob,
            no_speech_prob=seg.no_speech_prob,
            words=words,
        )
