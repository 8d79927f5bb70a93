"""Putting diarization onto a transcript: speakers for words, segments split at changes."""

from __future__ import annotations

import bisect
from dataclasses import replace

import numpy as np

from hark.pipeline.diarization.base import Diarization, SpeakerTurn
from hark.pipeline.transcript import Segment, Speaker, Word, join_words


class TurnIndex:
    """Which speaker talks at a given time: the turn covering it, else the nearest turn."""

    def __init__(self, turns: list[SpeakerTurn]) -> None:
        self.turns = sorted(turns, key=lambda t: t.start)
        self.starts = [t.start for t in self.turns]

    def speaker_at(self, time: float) -> str | None:
        if not self.turns:
            return None
        i = bisect.bisect_right(self.starts, time)
        candidates = self.turns[max(0, i - 2): i + 1]
        best = min(candidates, key=lambda t: _distance(t, time))
        return best.speaker

    def speaker_over(self, start: float, end: float) -> str | None:
        """The speaker with the most talk inside [start, end]; the nearest one if none."""
        overlap: dict[str, float] = {}
        for turn in self.turns:
            shared = min(turn.end, end) - max(turn.start, start)
            if shared > 0:
                overlap[turn.speaker] = overlap.get(turn.speaker, 0.0) + shared
        if overlap:
            return max(overlap, key=lambda s: overlap[s])
        return self.speaker_at((start + end) / 2)


def _distance(turn: SpeakerTurn, time: float) -> float:
    if turn.start <= time <= turn.end:
        return 0.0
    return min(abs(time - turn.start), abs(time - turn.end))


def assign_speakers(
    segments: list[Segment], diarization: Diarization
) -> list[Segment]:
    """Each word takes the speaker active at its midpoint; segments split where it changes."""
    index = TurnIndex(diarization.turns)
    out: list[Segment] = []
    for segment in segments:
        if not segment.words:
            out.append(replace(segment, speaker=index.speaker_over(segment.start, segment.end)))
            continue
        words = [replace(w, speaker=index.speaker_at((w.start + w.end) / 2))
                 for w in segment.words]
        runs: list[list[Word]] = []
        for word in words:
            if runs and runs[-1][-1].speaker == word.speaker:
                runs[-1].append(word)
            else:
                runs.append([word])
        if len(runs) == 1:
            out.append(replace(segment, speaker=words[0].speaker, words=words))
            continue
        for run in runs:
            out.append(_sub_segment(segment, run))
    for number, segment in enumerate(out):
        segment.id = number
    return out


def _sub_segment(parent: Segment, words: list[Word]) -> Segment:
    probabilities = [w.probability for w in words if w.probability is not None]
    return replace(
        parent,
        start=words[0].start,
        end=words[-1].end,
        text=join_words(words),
        speaker=words[0].speaker,
        confidence=float(np.mean(probabilities)) if probabilities else parent.confidence,
        words=words,
    )


def speaker_list(diarization: Diarization) -> list[Speaker]:
    """Speakers in order of first appearance, with their total talk time."""
    seconds: dict[str, float] = {}
    for turn in diarization.turns:
        seconds[turn.speaker] = seconds.get(turn.speaker, 0.0) + (turn.end - turn.start)
    return [Speaker(id=s, speech_seconds=round(seconds[s], 3)) for s in diarization.speakers]
