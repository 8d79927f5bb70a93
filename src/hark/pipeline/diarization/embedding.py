"""Voice embeddings from Resemblyzer's encoder, over fixed-length windows of speech.

The encoder is a three-layer LSTM over 40-band mel power spectra (25 ms frames every
10 ms) whose last hidden state, projected and length-normalised, is the voice vector.
It was trained on 1.6 s partial utterances, so windows of about that length give its
most reliable vectors. The spectra of a speech region are computed once and windows
are slices of it, batched through the network in equal lengths.

Loudness: the encoder sees linear (not log) mel power, so its output depends on level.
Resemblyzer scales whole utterances to -30 dBFS before embedding; here each window is
scaled to that level instead, so that a voice recorded louder in one place than another
still maps to the same vector, and enrolment samples and diarized windows are alike.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hark.errors import MissingDependencyError
from hark.pipeline.audio import SAMPLE_RATE

FRAME_SAMPLES = SAMPLE_RATE // 100  # the encoder's 10 ms mel hop
_FFT_SIZE = SAMPLE_RATE * 25 // 1000
_TARGET_RMS = 10 ** (-30 / 20)
# Below this level a window is digital silence; scaling it up would only amplify noise.
_SILENT_RMS = 1e-5
_BATCH = 64


@dataclass(frozen=True)
class Window:
    """A span of the recording, in 10 ms frames, that gets one embedding."""

    start: int
    end: int

    @property
    def frames(self) -> int:
        return self.end - self.start


class VoiceEmbedder:
    """Resemblyzer's voice encoder on the CPU, and the mel front end it expects."""

    def __init__(self, threads: int | None = None) -> None:
        try:
            import librosa
            import torch

            with warnings.catch_warnings():
                # Resemblyzer's package imports a SciPy namespace deprecated since 1.8.
                warnings.simplefilter("ignore", DeprecationWarning)
                from resemblyzer import VoiceEncoder
        except ImportError as exc:
            raise MissingDependencyError(
                exc.name or "resemblyzer",
                hint="pip install 'hark[diarization]' && pip install --no-deps resemblyzer",
            ) from exc

        # One process usually runs one diarization at a time; a few threads cover the
        # LSTM's matrix products, more only contend with the recognition engine.
        torch.set_num_threads(threads or max(1, min(4, _usable_cpus())))
        self._torch = torch
        self._encoder = VoiceEncoder(device="cpu", verbose=False).eval()
        self._mel_basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=_FFT_SIZE, n_mels=40)
        self._window = np.hanning(_FFT_SIZE + 1)[:-1].astype(np.float32)
        # PyTorch modules are not safe to call from several threads at once.
        self._lock = threading.Lock()

    def mel(self, samples: np.ndarray) -> np.ndarray:
        """Mel power spectra, (frames, 40); frame i is centred on sample 160 * i."""
        half = _FFT_SIZE // 2
        padded = np.pad(samples.astype(np.float32, copy=False), (half, half))
        count = 1 + (padded.size - _FFT_SIZE) // FRAME_SAMPLES
        if count <= 0:
            return np.zeros((0, 40), np.float32)
        frames = np.lib.stride_tricks.as_strided(
            padded, shape=(count, _FFT_SIZE),
            strides=(padded.strides[0] * FRAME_SAMPLES, padded.strides[0]))
        power = np.abs(np.fft.rfft(frames * self._window, axis=1)) ** 2
        return np.asarray(power @ self._mel_basis.T, dtype=np.float32)

    def embed_windows(self, mel: np.ndarray, energy: np.ndarray,
                      windows: Sequence[Window]) -> np.ndarray:
        """One unit vector per window of `mel` (frames indexed as in `mel`).

        `energy` holds the mean squared sample value per frame, for the level scaling.
        """
        out = np.zeros((len(windows), 256), np.float32)
        if not windows:
            return out
        by_length: dict[int, list[int]] = {}
        for i, window in enumerate(windows):
            by_length.setdefault(window.frames, []).append(i)
        for indices in by_length.values():
            for first in range(0, len(indices), _BATCH):
                batch = indices[first:first + _BATCH]
                stack = np.stack([self._scaled(mel, energy, windows[i]) for i in batch])
                out[batch] = self._forward(stack)
        return out

    def _scaled(self, mel: np.ndarray, energy: np.ndarray, window: Window) -> np.ndarray:
        rms = float(np.sqrt(np.mean(energy[window.start:window.end])))
        gain = (_TARGET_RMS / rms) ** 2 if rms > _SILENT_RMS else 1.0
        return mel[window.start:window.end] * np.float32(gain)

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with self._lock, torch.inference_mode():
            vectors = self._encoder(torch.from_numpy(batch))
        return np.asarray(vectors.numpy(), dtype=np.float32)


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def frame_energy(samples: np.ndarray, frames: int) -> np.ndarray:
    """Mean squared value of the 10 ms of samples around each mel frame's centre."""
    padded = np.pad(samples.astype(np.float32, copy=False),
                    (FRAME_SAMPLES // 2, frames * FRAME_SAMPLES))
    blocks = padded[:frames * FRAME_SAMPLES].reshape(frames, FRAME_SAMPLES)
    return np.asarray(np.mean(blocks * blocks, axis=1), dtype=np.float32)


def sliding_windows(start: int, end: int, length: int, hop: int) -> list[Window]:
    """Windows of `length` frames at most `hop` apart, spread evenly over [start, end).

    A span shorter than `length` is one shorter window. Spreading the windows evenly,
    rather than adding one flush with the end, covers the tail without a near-copy of
    the previous window, which would count twice in the similarity graph.
    """
    if end - start <= length:
        return [Window(start, end)] if end > start else []
    count = -(-(end - start - length) // hop) + 1
    starts = np.linspace(start, end - length, count).round().astype(int)
    return [Window(int(s), int(s) + length) for s in starts]
