"""Diarization error rate of the diarizer over a JSONL manifest with RTTM references.

A manifest line holds `id`, `audio`, `rttm` (paths relative to the manifest's folder
or its parent), optionally `num_speakers` and `uem` ([start, end] of the scored
region). DER comes from pyannote.metrics, at collar 0 and at ±0.25 s (its `collar`
is the total width removed around each reference boundary, so 0.5).

Besides DER: whether the speaker count is right, and the overlap miss: the share of
the reference's overlapped speech (two or more people at once, inside the scored
region) where the diarizer marks fewer than two speakers. For transcripts, the
word-speaker error: the share of words whose speaker differs from the reference's,
after mapping found speakers one to one onto reference speakers by shared time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from hark.config import Settings
from hark.errors import HarkError, MissingDependencyError
from hark.evaluation.manifest import find_file, read_rows
from hark.pipeline.audio import probe
from hark.pipeline.diarization.base import Diarization, DiarizationOptions, SpeakerTurn
from hark.pipeline.options import TranscribeOptions
from hark.pipeline.run import diarize_file, transcribe_file
from hark.pipeline.transcript import Transcript

COLLARS = {"collar 0": 0.0, "collar 0.25": 0.5}
_FRAME_SECONDS = 0.01


@dataclass(frozen=True)
class DiarizationItem:
    id: str
    audio: Path
    rttm: Path
    num_speakers: int | None
    uem: tuple[float, float] | None


@dataclass
class DiarizationResult:
    item: DiarizationItem
    reference_speakers: int = 0
    found_speakers: int = 0
    duration: float = 0.0
    seconds: float = 0.0
    components: dict[str, dict[str, float]] = field(default_factory=dict)
    # Seconds of the reference's overlapped speech, and of it where the diarizer
    # marks fewer than two speakers.
    overlap_seconds: float = 0.0
    overlap_missed_seconds: float = 0.0
    # With a transcription: DER of the transcript's speaker segments (what users see)
    # and (wrong, scored) words by speaker.
    transcript_components: dict[str, dict[str, float]] = field(default_factory=dict)
    word_errors: tuple[int, int] | None = None
    error: str | None = None

    @property
    def count_right(self) -> bool:
        return self.error is None and self.found_speakers == self.reference_speakers

    @property
    def speed(self) -> float:
        return self.duration / self.seconds if self.seconds else 0.0


def read_diarization_manifest(path: Path) -> list[DiarizationItem]:
    def build(row: dict[str, Any]) -> DiarizationItem:
        uem = row.get("uem")
        return DiarizationItem(
            id=str(row["id"]),
            audio=find_file(path, str(row["audio"])),
            rttm=find_file(path, str(row["rttm"])),
            num_speakers=int(row["num_speakers"]) if row.get("num_speakers") else None,
            uem=(float(uem[0]), float(uem[1])) if uem else None,
        )

    return read_rows(path, build)


def _pyannote() -> Any:
    try:
        from pyannote.core import Annotation, Segment, Timeline
        from pyannote.metrics.diarization import DiarizationErrorRate
    except ImportError as exc:
        raise MissingDependencyError("pyannote.metrics", extra="eval") from exc
    return Annotation, Segment, Timeline, DiarizationErrorRate


def read_rttm(path: Path) -> list[tuple[float, float, str]]:
    turns = []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[0] == "SPEAKER":
            start, length = float(fields[3]), float(fields[4])
            turns.append((start, start + length, fields[7]))
    return turns


def score(
    reference: list[tuple[float, float, str]], hypothesis: Diarization,
    uem: tuple[float, float],
) -> dict[str, dict[str, float]]:
    """DER and its parts (miss, false alarm, confusion, as fractions of scored speech)."""
    annotation_cls, segment_cls, timeline_cls, metric_cls = _pyannote()
    ref = annotation_cls()
    for start, end, speaker in reference:
        ref[segment_cls(start, end)] = speaker
    hyp = annotation_cls()
    for turn in hypothesis.turns:
        hyp[segment_cls(turn.start, turn.end)] = turn.speaker
    region = timeline_cls([segment_cls(*uem)])
    out: dict[str, dict[str, float]] = {}
    for name, collar in COLLARS.items():
        detail = metric_cls(collar=collar, skip_overlap=False)(ref, hyp, uem=region,
                                                              detailed=True)
        total = detail["total"] or 1.0
        out[name] = {
            "der": detail["diarization error rate"],
            "miss": detail["missed detection"] / total,
            "false_alarm": detail["false alarm"] / total,
            "confusion": detail["confusion"] / total,
            "scored_seconds": detail["total"],
        }
    return out


def _speaker_counts(turns: list[tuple[float, float]], uem: tuple[float, float]
                    ) -> np.ndarray:
    """How many of `turns` cover each 10 ms frame of `uem`."""
    frames = max(0, round((uem[1] - uem[0]) / _FRAME_SECONDS))
    edges = np.zeros(frames + 1, dtype=np.int64)
    for start, end in turns:
        first = min(frames, max(0, round((start - uem[0]) / _FRAME_SECONDS)))
        last = min(frames, max(0, round((end - uem[0]) / _FRAME_SECONDS)))
        if last > first:
            edges[first] += 1
            edges[last] -= 1
    return np.cumsum(edges)[:frames]


def overlap_miss(reference: list[tuple[float, float, str]], hypothesis: Diarization,
                 uem: tuple[float, float]) -> tuple[float, float]:
    """(seconds of reference overlap, seconds of it the hypothesis marks as one voice
    or none)."""
    ref = _speaker_counts(_merged_per_speaker(reference), uem)
    hyp = _speaker_counts(_merged_per_speaker(
        [(t.start, t.end, t.speaker) for t in hypothesis.turns]), uem)
    overlapped = ref >= 2
    missed = overlapped & (hyp < 2)
    return (float(np.count_nonzero(overlapped)) * _FRAME_SECONDS,
            float(np.count_nonzero(missed)) * _FRAME_SECONDS)


def _merged_per_speaker(turns: list[tuple[float, float, str]]) -> list[tuple[float, float]]:
    """Each speaker's turns with their own overlaps merged, so a speaker counts once."""
    out: list[tuple[float, float]] = []
    for speaker in {s for _, _, s in turns}:
        spans: list[list[float]] = []
        for start, end, _ in sorted(t for t in turns if t[2] == speaker):
            if spans and start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
        out += [(a, b) for a, b in spans]
    return out


def evaluate_diarization(
    items: list[DiarizationItem], settings: Settings, oracle_speakers: bool = False,
    on_result: Callable[[DiarizationResult], None] | None = None,
    transcribe: TranscribeOptions | None = None,
) -> list[DiarizationResult]:
    """Diarize and score each item; with `transcribe`, also transcribe it with
    diarization and score the transcript's speakers (`score_transcript`)."""
    results = []
    for item in items:
        result = DiarizationResult(item)
        reference = read_rttm(item.rttm)
        result.reference_speakers = len({s for _, _, s in reference})
        options = DiarizationOptions(num_speakers=item.num_speakers if oracle_speakers else None)
        try:
            result.duration = probe(item.audio).duration
            started = time.perf_counter()
            diarization = diarize_file(item.audio, options, settings)
            result.seconds = time.perf_counter() - started
            result.found_speakers = len(diarization.speakers)
            region = item.uem or (0.0, result.duration)
            result.components = score(reference, diarization, region)
            result.overlap_seconds, result.overlap_missed_seconds = overlap_miss(
                reference, diarization, region)
            if transcribe is not None:
                transcript = transcribe_file(
                    item.audio, replace(transcribe, diarize=True, speakers=options), settings)
                score_transcript(result, reference, transcript, region)
        except HarkError as exc:
            result.error = f"{exc.code}: {exc.message}"
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def score_transcript(result: DiarizationResult, reference: list[tuple[float, float, str]],
                     transcript: Transcript, region: tuple[float, float]) -> None:
    """DER of the transcript's speaker segments, and its words' speakers against the
    reference's (found speakers mapped one to one by shared time, as for DER)."""
    turns = [(s.start, s.end, s.speaker) for s in transcript.segments if s.speaker]
    result.transcript_components = score(
        reference, Diarization([SpeakerTurn(*turn) for turn in turns]), region)
    words = [(w.start, w.end, w.speaker) for s in transcript.segments for w in s.words]
    result.word_errors = word_speaker_errors(reference, words,
                                             speaker_mapping(reference, turns))


def pooled(results: list[DiarizationResult], collar: str,
           transcript: bool = False) -> dict[str, float]:
    """Overall DER and parts, weighting each file by its scored speech (of the diarizer's
    turns, or with `transcript` of the transcripts' speaker segments)."""
    parts = [(r.transcript_components if transcript else r.components).get(collar)
             for r in results]
    scored = [p for p in parts if p is not None]
    total = sum(p["scored_seconds"] for p in scored)
    if not total:
        return {"der": 0.0, "miss": 0.0, "false_alarm": 0.0, "confusion": 0.0}
    return {key: sum(p[key] * p["scored_seconds"] for p in scored) / total
            for key in ("der", "miss", "false_alarm", "confusion")}


def pooled_word_speaker_error(results: list[DiarizationResult]) -> float | None:
    """Wrong words over scored words, across items; None without transcripts."""
    counts = [r.word_errors for r in results if r.word_errors is not None]
    scored = sum(n for _, n in counts)
    return sum(w for w, _ in counts) / scored if scored else None


def count_accuracy(results: list[DiarizationResult]) -> float:
    """The share of scored items whose speaker count was found right."""
    scored = [r for r in results if r.error is None]
    return sum(r.count_right for r in scored) / len(scored) if scored else 0.0


def pooled_overlap_miss(results: list[DiarizationResult]) -> float | None:
    """Missed share of all reference overlap; None when the references hold none."""
    total = sum(r.overlap_seconds for r in results if r.error is None)
    missed = sum(r.overlap_missed_seconds for r in results if r.error is None)
    return missed / total if total else None


def speaker_mapping(reference: list[tuple[float, float, str]],
                    hypothesis: list[tuple[float, float, str]]) -> dict[str, str]:
    """Found speaker → reference speaker, one to one, maximising shared seconds."""
    from scipy.optimize import linear_sum_assignment

    found = sorted({s for _, _, s in hypothesis})
    truth = sorted({s for _, _, s in reference})
    if not found or not truth:
        return {}
    shared = np.zeros((len(found), len(truth)))
    for h_start, h_end, h_speaker in hypothesis:
        for r_start, r_end, r_speaker in reference:
            seconds = min(h_end, r_end) - max(h_start, r_start)
            if seconds > 0:
                shared[found.index(h_speaker), truth.index(r_speaker)] += seconds
    rows, cols = linear_sum_assignment(-shared)
    return {found[r]: truth[c] for r, c in zip(rows, cols, strict=True) if shared[r, c] > 0}


def reference_word_speaker(reference: list[tuple[float, float, str]], start: float,
                           end: float) -> str | None:
    """The reference speaker talking most during [start, end]; None if nobody is."""
    talk: dict[str, float] = {}
    for r_start, r_end, speaker in reference:
        seconds = min(end, r_end) - max(start, r_start)
        if seconds > 0:
            talk[speaker] = talk.get(speaker, 0.0) + seconds
    return max(talk, key=lambda s: talk[s]) if talk else None


def word_speaker_errors(reference: list[tuple[float, float, str]],
                        words: list[tuple[float, float, str | None]],
                        mapping: dict[str, str]) -> tuple[int, int]:
    """(words whose speaker is wrong, words scored) for (start, end, found speaker)
    words; words the reference gives to nobody are not scored."""
    wrong = scored = 0
    for start, end, speaker in words:
        truth = reference_word_speaker(reference, start, end)
        if truth is None:
            continue
        scored += 1
        wrong += speaker is None or mapping.get(speaker) != truth
    return wrong, scored
