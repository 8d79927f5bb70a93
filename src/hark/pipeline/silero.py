"""Silero speech regions found a block of the recording at a time.

Silero (the ONNX model inside faster-whisper's wheel) scores each 32 ms window of
audio for speech; a hysteresis pass turns the scores into speech regions, which are
then padded. faster-whisper runs all of this over one array holding the whole
recording. Here the recording is read in blocks of 80 s (2,500 windows), and
everything that links one window to the next is carried from block to block: the
model's recurrent state, the 64 samples of left context each window is given, and
the hysteresis state. The regions are therefore the same as faster-whisper's for the
whole array, wherever the blocks fall, while memory holds one block.

The one exception is digital silence: a block whose every sample is within a few
steps of zero holds no speech, so Silero is not run on it (four hours of silence
would otherwise take minutes). Its windows score zero and the model starts afresh
after it, as at the start of a recording.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from hark.pipeline.samples import SampleSource

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 512
_CONTEXT_SAMPLES = 64
_STATE_SHAPE = (1, 1, 128)
BLOCK_WINDOWS = 2_500

# A block whose samples all lie within this many 16-bit steps of zero is digital
# silence (dither included); Silero scores such audio near 1e-4.
_SILENT_PEAK = 4 / 32768

# When a region reaches the longest allowed, it is cut at the last silence of at
# least this long (ms) inside it, if there is one.
_CUT_SILENCE_MS = 98

Progress = Callable[[float], None]


@dataclass(frozen=True)
class SileroSettings:
    """The hysteresis and padding of faster-whisper's `get_speech_timestamps`."""

    threshold: float = 0.5
    min_speech_ms: int = 0
    max_speech_seconds: float = float("inf")
    min_silence_ms: int = 2000
    speech_pad_ms: int = 400

    @property
    def neg_threshold(self) -> float:
        return max(self.threshold - 0.15, 0.01)


def speech_regions(audio: SampleSource, settings: SileroSettings,
                   block_windows: int = BLOCK_WINDOWS,
                   progress: Progress | None = None) -> list[tuple[int, int]]:
    """Speech regions of `audio` as (start, end) samples, padded, in order."""
    length = int(audio.shape[0])
    if length == 0:
        return []
    scorer = SileroScorer()
    tracker = _Hysteresis(settings)
    block = block_windows * WINDOW_SAMPLES
    # faster-whisper pads the recording to whole windows, with a whole window of
    # zeros when it already ends on one; the extra window is scored too.
    padded = length + WINDOW_SAMPLES - length % WINDOW_SAMPLES
    for start in range(0, padded, block):
        samples = np.asarray(audio[start:min(start + block, length)], dtype=np.float32)
        end = min(start + block, padded)
        if samples.shape[0] < end - start:
            samples = np.pad(samples, (0, end - start - samples.shape[0]))
        if float(np.max(np.abs(samples))) <= _SILENT_PEAK:
            scorer.reset()
            scores = np.zeros((end - start) // WINDOW_SAMPLES, dtype=np.float32)
        else:
            scores = scorer(samples)
        tracker.feed(scores, start // WINDOW_SAMPLES)
        if progress is not None:
            progress(end / padded)
    return _padded(tracker.finish(length), settings, length)


class SileroScorer:
    """Silero's per-window speech probabilities, block after block, its state carried."""

    def __init__(self) -> None:
        from faster_whisper.vad import get_vad_model

        self._session: Any = get_vad_model().session
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros(_CONTEXT_SAMPLES, dtype=np.float32)

    def __call__(self, samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        windows = samples.reshape(-1, WINDOW_SAMPLES)
        # Each window is scored with the last 64 samples of the window before it.
        context = np.empty((windows.shape[0], _CONTEXT_SAMPLES), dtype=np.float32)
        context[0] = self._context
        context[1:] = windows[:-1, -_CONTEXT_SAMPLES:]
        model_input = np.concatenate([context, windows], axis=1)
        scores, self._h, self._c = self._session.run(
            None, {"input": model_input, "h": self._h, "c": self._c})
        self._context = windows[-1, -_CONTEXT_SAMPLES:].copy()
        return np.asarray(scores, dtype=np.float32).reshape(-1)


class _Hysteresis:
    """Speech starts at a window scoring at least `threshold` and ends after
    `min_silence_ms` of windows below `neg_threshold`; a region reaching the longest
    allowed is cut at its last pause of 98 ms or more, else where it stands.

    Positions are in samples (window index times 512), as faster-whisper counts them.
    """

    def __init__(self, settings: SileroSettings) -> None:
        pad = SAMPLE_RATE * settings.speech_pad_ms / 1000
        self.threshold = settings.threshold
        self.neg_threshold = settings.neg_threshold
        self.min_speech = SAMPLE_RATE * settings.min_speech_ms / 1000
        self.max_speech = SAMPLE_RATE * settings.max_speech_seconds - WINDOW_SAMPLES - 2 * pad
        self.min_silence = SAMPLE_RATE * settings.min_silence_ms / 1000
        self.cut_silence = SAMPLE_RATE * _CUT_SILENCE_MS / 1000
        self.regions: list[tuple[int, int]] = []
        self.start: int | None = None  # where the open region began; None: not in speech
        self.silence_from = 0  # where the current run of low scores began (0: none)
        self.last_pause_end = 0  # where the last long-enough pause began (0: none)
        self.resume_at = 0  # where speech came back after that pause

    def feed(self, scores: npt.NDArray[np.float32], first_window: int) -> None:
        index = 0
        count = scores.shape[0]
        while index < count:
            if self.start is None:
                # Outside speech nothing changes until a window reaches the threshold.
                loud = np.flatnonzero(scores[index:] >= self.threshold)
                if loud.size == 0:
                    return
                index += int(loud[0])
            self._step(scores[index], (first_window + index) * WINDOW_SAMPLES)
            index += 1

    def _step(self, score: np.float32, position: int) -> None:
        # Scores stay float32, so thresholds compare as faster-whisper compares them.
        if score >= self.threshold and self.silence_from:
            self.silence_from = 0
            if self.resume_at < self.last_pause_end:
                self.resume_at = position
        if score >= self.threshold and self.start is None:
            self.start = position
            return
        if self.start is not None and position - self.start > self.max_speech:
            if self.last_pause_end:
                self.regions.append((self.start, self.last_pause_end))
                self.start = None if self.resume_at < self.last_pause_end else self.resume_at
                self.last_pause_end = self.resume_at = self.silence_from = 0
            else:
                self.regions.append((self.start, position))
                self._close()
                return
        if score < self.neg_threshold and self.start is not None:
            if not self.silence_from:
                self.silence_from = position
            if position - self.silence_from > self.cut_silence:
                self.last_pause_end = self.silence_from
            if position - self.silence_from < self.min_silence:
                return
            if self.silence_from - self.start > self.min_speech:
                self.regions.append((self.start, self.silence_from))
            self._close()

    def _close(self) -> None:
        self.start = None
        self.last_pause_end = self.resume_at = self.silence_from = 0

    def finish(self, length: int) -> list[tuple[int, int]]:
        if self.start is not None and length - self.start > self.min_speech:
            self.regions.append((self.start, length))
            self.start = None
        return self.regions


def _padded(regions: list[tuple[int, int]], settings: SileroSettings,
            length: int) -> list[tuple[int, int]]:
    """Each region widened by the speech padding; where two are closer than twice
    the padding, the silence between them is split in half instead."""
    pad = SAMPLE_RATE * settings.speech_pad_ms / 1000
    starts = [float(s) for s, _ in regions]
    ends = [float(e) for _, e in regions]
    for i in range(len(regions)):
        if i == 0:
            starts[0] = int(max(0, starts[0] - pad))
        if i + 1 < len(regions):
            silence = starts[i + 1] - ends[i]
            if silence < 2 * pad:
                ends[i] += int(silence // 2)
                starts[i + 1] = int(max(0, starts[i + 1] - silence // 2))
            else:
                ends[i] = int(min(length, ends[i] + pad))
                starts[i + 1] = int(max(0, starts[i + 1] - pad))
        else:
            ends[i] = int(min(length, ends[i] + pad))
    return [(int(s), int(e)) for s, e in zip(starts, ends, strict=True)]
