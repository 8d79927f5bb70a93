"""Diarization with Resemblyzer voice vectors and spectral clustering.

1. Every VAD speech region is cut into 1.5 s windows every 0.5 s (a shorter region is
   one shorter window) and each window gets a voice vector (see `embedding`).
2. Windows of at least half a second are clustered (see `clustering`): the speaker
   count comes from the eigengap of a pruned similarity graph, within the caller's
   bounds, and labels are smoothed with a change-penalised Viterbi pass. Shorter
   windows, whose vectors are noisy, just take the nearest speaker.
3. Each 10 ms frame of a region takes the label of the nearest window centre, so a
   change of speaker falls halfway between two windows that disagree.
4. Stretches inside a region that are far quieter than its speech (the VAD's padding,
   pauses between turns) are cut out, so that turns hold speech rather than the
   silence around it.
5. Turns are the runs of one label; speakers are named in order of first appearance
   and each gets the normalised mean of its windows' vectors, weighted by length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from hark.pipeline.audio import SAMPLE_RATE
from hark.pipeline.diarization.base import Diarization, DiarizationOptions, SpeakerTurn
from hark.pipeline.diarization.clustering import (
    ClusteringParams,
    CountBounds,
    cluster_speakers,
    unit_rows,
)
from hark.pipeline.diarization.embedding import (
    FRAME_SAMPLES,
    VoiceEmbedder,
    Window,
    frame_energy,
    sliding_windows,
)
from hark.pipeline.vad import Chunk

FRAMES_PER_SECOND = SAMPLE_RATE // FRAME_SAMPLES


@dataclass(frozen=True)
class DiarizerParams:
    window_frames: int = 150
    hop_frames: int = 50
    # Windows shorter than this are labelled after clustering rather than clustered.
    cluster_min_frames: int = 50
    # A frame is silent when its (50 ms smoothed) energy is this far below the 95th
    # percentile of its region; silent runs at least this long are cut from turns
    # (shorter ones inside speech are the gaps between words).
    silence_db: float = 40.0
    silence_smoothing_frames: int = 5
    min_pause_frames: int = 30
    min_edge_frames: int = 5
    clustering: ClusteringParams = field(default_factory=ClusteringParams)


@dataclass(frozen=True)
class _Region:
    """A speech region with its frames' mel spectra and energies."""

    chunk: Chunk
    first_frame: int
    mel: np.ndarray
    energy: np.ndarray

    @property
    def frames(self) -> int:
        return int(self.mel.shape[0])


class ResemblyzerDiarizer:
    """The default diarizer: Resemblyzer's voice encoder, shipped in its wheel."""

    def __init__(self, threads: int | None = None, params: DiarizerParams | None = None) -> None:
        self._embedder = VoiceEmbedder(threads)
        self.params = params or DiarizerParams()

    @property
    def name(self) -> str:
        return "resemblyzer"

    def diarize(
        self, audio: np.ndarray, speech: Sequence[Chunk], options: DiarizationOptions
    ) -> Diarization:
        regions = [self._region(audio, chunk)
                   for chunk in sorted(speech, key=lambda c: c.start) if chunk.end > chunk.start]
        windows: list[Window] = []
        owners: list[int] = []
        vectors: list[np.ndarray] = []
        for number, region in enumerate(regions):
            spans = sliding_windows(0, region.frames, self.params.window_frames,
                                    self.params.hop_frames)
            if not spans:
                continue
            vectors.append(self._embedder.embed_windows(region.mel, region.energy, spans))
            windows += [Window(region.first_frame + w.start, region.first_frame + w.end)
                        for w in spans]
            owners += [number] * len(spans)
        if not windows:
            return Diarization()
        matrix = np.concatenate(vectors)
        labels = self._label(matrix, windows, options)
        turns = self._turns(regions, windows, np.asarray(owners), labels)
        weights = np.array([w.frames for w in windows], dtype=np.float32)
        return _named(turns, matrix * weights[:, None], labels)

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """The normalised mean vector of the windows of `audio` that hold sound."""
        samples = np.asarray(audio, dtype=np.float32).reshape(-1)
        if samples.size == 0:
            raise ValueError("cannot embed an empty recording")
        region = self._region(samples, Chunk(0, samples.size))
        spans = sliding_windows(0, region.frames, self.params.window_frames,
                                self.params.hop_frames)
        vectors = self._embedder.embed_windows(region.mel, region.energy, spans)
        sounding = speech_mask(region.energy, self.params)
        keep = [i for i, w in enumerate(spans) if sounding[w.start:w.end].mean() >= 0.5]
        chosen = vectors[keep] if keep else vectors
        return np.asarray(unit_rows(chosen.mean(axis=0, keepdims=True))[0], dtype=np.float32)

    def close(self) -> None:
        """Nothing to release: the encoder is freed with the object."""

    def _region(self, audio: np.ndarray, chunk: Chunk) -> _Region:
        samples = audio[chunk.start:chunk.end]
        mel = self._embedder.mel(samples)
        return _Region(chunk, chunk.start // FRAME_SAMPLES, mel,
                       frame_energy(samples, mel.shape[0]))

    def _label(self, vectors: np.ndarray, windows: list[Window],
               options: DiarizationOptions) -> np.ndarray:
        long = np.array([w.frames >= self.params.cluster_min_frames for w in windows])
        if np.count_nonzero(long) < 2:
            long[:] = True
        bounds = CountBounds.of(options.num_speakers, options.min_speakers,
                                options.max_speakers, int(np.count_nonzero(long)))
        core = cluster_speakers(vectors[long], bounds, self.params.clustering)
        labels = np.empty(len(windows), dtype=int)
        labels[long] = core
        if not long.all():
            centroids = unit_rows(np.stack(
                [vectors[long][core == k].mean(axis=0) for k in range(int(core.max()) + 1)]))
            labels[~long] = np.argmax(vectors[~long] @ centroids.T, axis=1)
        return labels

    def _turns(self, regions: list[_Region], windows: list[Window], owners: np.ndarray,
               labels: np.ndarray) -> list[tuple[float, float, int]]:
        centres = np.array([(w.start + w.end) / 2 for w in windows])
        turns: list[tuple[float, float, int]] = []
        for number, region in enumerate(regions):
            mine = np.flatnonzero(owners == number)
            if mine.size == 0:
                continue
            frames = region.first_frame + np.arange(region.frames) + 0.5
            nearest = _nearest(centres[mine], frames)
            frame_labels = np.where(speech_mask(region.energy, self.params),
                                    labels[mine][nearest], -1)
            start_s, end_s = region.chunk.start_s, region.chunk.end_s
            for first, last, label in _runs(frame_labels):
                if label < 0:
                    continue
                start = max(start_s, (region.first_frame + first) / FRAMES_PER_SECOND)
                end = min(end_s, (region.first_frame + last) / FRAMES_PER_SECOND)
                if end > start:
                    turns.append((start, end, int(label)))
        return turns


def speech_mask(energy: np.ndarray, params: DiarizerParams) -> np.ndarray:
    """False for the frames in long stretches far quieter than the loud part of `energy`."""
    mask = np.ones(energy.size, dtype=bool)
    if energy.size == 0:
        return mask
    width = params.silence_smoothing_frames
    smooth = np.convolve(energy, np.ones(width) / width, mode="same")
    loud = float(np.percentile(smooth, 95))
    if loud <= 0:
        return mask
    quiet = smooth < loud * 10 ** (-params.silence_db / 10)
    for first, last, value in _runs(quiet.astype(int)):
        at_edge = first == 0 or last == energy.size
        needed = params.min_edge_frames if at_edge else params.min_pause_frames
        if value and last - first >= needed:
            mask[first:last] = False
    return mask


def _nearest(points: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """For each query, the index of the nearest of the ascending `points`."""
    right = np.clip(np.searchsorted(points, queries), 0, points.size - 1)
    left = np.clip(right - 1, 0, points.size - 1)
    closer_left = np.abs(queries - points[left]) <= np.abs(points[right] - queries)
    return np.where(closer_left, left, right)


def _runs(values: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, end, value) of each run of equal values, `end` exclusive."""
    if values.size == 0:
        return []
    changes = np.flatnonzero(values[1:] != values[:-1]) + 1
    starts = np.concatenate([[0], changes])
    ends = np.concatenate([changes, [values.size]])
    return [(int(s), int(e), int(values[s])) for s, e in zip(starts, ends, strict=True)]


def _named(turns: list[tuple[float, float, int]], vectors: np.ndarray,
           labels: np.ndarray) -> Diarization:
    """Speakers named SPEAKER_00, … in order of first talk, each with its mean vector.

    `vectors` are the windows' (weighted) vectors and `labels` their speakers; a label
    left without any turn (all its frames silent) has no speaker.
    """
    turns.sort(key=lambda t: (t[0], t[1]))
    names: dict[int, str] = {}
    for _, _, label in turns:
        names.setdefault(label, f"SPEAKER_{len(names):02d}")
    spans: list[list[float]] = []
    speakers: list[str] = []
    for start, end, label in turns:
        if speakers and speakers[-1] == names[label] and start - spans[-1][1] < 1e-6:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
            speakers.append(names[label])
    merged = [SpeakerTurn(round(start, 3), round(end, 3), speaker)
              for (start, end), speaker in zip(spans, speakers, strict=True)]
    embeddings = {name: unit_rows(vectors[labels == label].mean(axis=0, keepdims=True))[0]
                  for label, name in names.items()}
    return Diarization(turns=merged, embeddings=embeddings)
