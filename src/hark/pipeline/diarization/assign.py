"""Putting diarization onto a transcript: speakers for words, segments split at changes.

Each word takes the speaker whose turns cover most of its time (the nearest turn's
speaker when none covers it). Word timings and turn boundaries are each a little
off, so a change of speaker that falls near a sentence boundary can leave a word
or two of one sentence with the neighbouring speaker ("… So I" / "don't hear that
…"). Sentences are what people say in one go, so a sentence that the turns split
into a long part and a short part at one of its ends (at most `EDGE_WORDS` words
lasting at most `EDGE_SECONDS`) goes whole to the long part's speaker. A single word
between two words of another speaker, in a stretch where that speaker's turns
overlap it, goes to them as well. A longer stretch inside a sentence keeps its own
speaker: someone interrupted.
"""

from __future__ import annotations

import bisect
from dataclasses import replace

import numpy as np

from hark.pipeline.diarization.base import Diarization, SpeakerTurn
from hark.pipeline.phrases import ends_sentence
from hark.pipeline.transcript import Segment, Speaker, Word, join_words

EDGE_WORDS = 2
EDGE_SECONDS = 1.2


class TurnIndex:
    """Which speaker talks at a given time: the turn covering it, else the nearest turn."""

    def __init__(self, turns: list[SpeakerTurn]) -> None:
        self.turns = sorted(turns, key=lambda t: t.start)
        self.starts = [t.start for t in self.turns]
        # Turns may overlap, so a turn starting long before `start` can still cover it.
        self.longest = max((t.end - t.start for t in self.turns), default=0.0)

    def speaker_at(self, time: float) -> str | None:
        if not self.turns:
            return None
        i = bisect.bisect_right(self.starts, time)
        candidates = self.turns[max(0, i - 2): i + 1]
        best = min(candidates, key=lambda t: _distance(t, time))
        return best.speaker

    def talk_over(self, start: float, end: float) -> dict[str, float]:
        """Seconds of [start, end] each speaker's turns cover."""
        first = bisect.bisect_left(self.starts, start - self.longest)
        last = bisect.bisect_right(self.starts, end)
        overlap: dict[str, float] = {}
        for turn in self.turns[first:last]:
            shared = min(turn.end, end) - max(turn.start, start)
            if shared > 0:
                overlap[turn.speaker] = overlap.get(turn.speaker, 0.0) + shared
        return overlap

    def speaker_over(self, start: float, end: float,
                     prefer: str | None = None) -> str | None:
        """The speaker with the most talk inside [start, end], `prefer` on a near tie;
        the nearest one if nobody talks there."""
        overlap = self.talk_over(start, end)
        if not overlap:
            return self.speaker_at((start + end) / 2)
        best = max(overlap, key=lambda s: overlap[s])
        if prefer in overlap and overlap[prefer] >= 0.8 * overlap[best]:
            return prefer
        return best


def _distance(turn: SpeakerTurn, time: float) -> float:
    if turn.start <= time <= turn.end:
        return 0.0
    return min(abs(time - turn.start), abs(time - turn.end))


def assign_speakers(segments: list[Segment], diarization: Diarization) -> list[Segment]:
    """Speakers for every word and segment; segments split where the speaker changes."""
    index = TurnIndex(diarization.turns)
    words = [w for segment in segments for w in segment.words]
    speakers = word_speakers(words, index)
    cursor = 0
    out: list[Segment] = []
    for segment in segments:
        if not segment.words:
            out.append(replace(segment, speaker=index.speaker_over(segment.start,
                                                                   segment.end)))
            continue
        mine = speakers[cursor:cursor + len(segment.words)]
        cursor += len(segment.words)
        labelled = [replace(w, speaker=s) for w, s in zip(segment.words, mine, strict=True)]
        runs: list[list[Word]] = []
        for word in labelled:
            if runs and runs[-1][-1].speaker == word.speaker:
                runs[-1].append(word)
            else:
                runs.append([word])
        if len(runs) == 1:
            out.append(replace(segment, speaker=labelled[0].speaker, words=labelled))
            continue
        out += [_sub_segment(segment, run) for run in runs]
    for number, segment in enumerate(out):
        segment.id = number
    return out


def word_speakers(words: list[Word], index: TurnIndex) -> list[str | None]:
    """The speaker of each word, in order (see the module's description)."""
    speakers: list[str | None] = []
    for word in words:
        previous = speakers[-1] if speakers else None
        speakers.append(index.speaker_over(word.start, word.end, prefer=previous))
    _absorb_single_words(words, speakers, index)
    for first, last in _sentences(words):
        _mend_sentence(words, speakers, first, last)
    return speakers


def _absorb_single_words(words: list[Word], speakers: list[str | None],
                         index: TurnIndex) -> None:
    for i in range(1, len(words) - 1):
        around = speakers[i - 1]
        if (around is not None and speakers[i] != around and speakers[i + 1] == around
                and index.talk_over(words[i].start, words[i].end).get(around, 0.0) > 0):
            speakers[i] = around


def _sentences(words: list[Word]) -> list[tuple[int, int]]:
    """[first, last) word ranges of punctuated sentences; unpunctuated text has none."""
    out: list[tuple[int, int]] = []
    first = 0
    for i, word in enumerate(words):
        if ends_sentence(word.word):
            out.append((first, i + 1))
            first = i + 1
    return out


def _mend_sentence(words: list[Word], speakers: list[str | None], first: int,
                   last: int) -> None:
    """Give a short edge of a sentence split between two speakers to the other part."""
    for _ in range(2):  # one pass per end of the sentence
        runs = _runs(speakers, first, last)
        if len(runs) < 2:
            return
        edges = ((runs[0], runs[1]), (runs[-1], runs[-2]))
        for (start, end), (n_start, n_end) in edges:
            short = end - start <= EDGE_WORDS and (
                words[end - 1].end - words[start].start <= EDGE_SECONDS)
            if short and n_end - n_start > end - start:
                for i in range(start, end):
                    speakers[i] = speakers[n_start]
                break


def _runs(speakers: list[str | None], first: int, last: int) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for i in range(first, last):
        if runs and speakers[runs[-1][0]] == speakers[i]:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


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
