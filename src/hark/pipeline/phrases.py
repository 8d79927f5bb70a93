"""Cutting recognised segments into phrases a person can read.

Engines hand back what they decoded in one go: the batched Whisper decoder gives a
whole 30-second chunk as one segment. Segments are cut, by their words' timings, at
every sentence end and every clear pause; a sentence still longer than
`max_seconds` is cut at its best clause boundary or its longest pause until every
piece fits (a speaker who never pauses keeps a long segment rather than a cut inside
a word group). Segments without word timings are left as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import pairwise

import numpy as np

from hark.pipeline.transcript import Segment, Word, join_words

_CLOSERS = "\"'”’»)]}"
_SENTENCE_END = (".", "!", "?", "…", "。", "！", "？")
_CLAUSE_END = (",", ";", ":", "—", "–", "、", "，", "；", "：")
# "Mr." and "J." end with a full stop but end no sentence.
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st jr sr vs etc e.g i.e no vol fig approx dept est gen gov lt col "
    "capt sgt rev hon mt ft".split())


@dataclass(frozen=True)
class PhraseOptions:
    # A silence between words at least this long ends a phrase.
    pause_seconds: float = 1.0
    # Longer sentences are cut at clause boundaries or pauses.
    max_seconds: float = 12.0
    # A sentence end closes a phrase only once it holds this much speech, so "Yes." and
    # "No." stay with what follows instead of becoming flashes of their own.
    min_seconds: float = 1.0


def split_segment(segment: Segment, options: PhraseOptions = PhraseOptions()) -> list[Segment]:
    """The segment as consecutive phrases (itself when it needs no cut)."""
    words = segment.words
    if len(words) < 2:
        return [segment]
    pieces: list[list[Word]] = []
    current: list[Word] = [words[0]]
    for word, following in pairwise(words):
        if _ends_phrase(current, word, following, options):
            pieces.append(current)
            current = []
        current.append(following)
    pieces.append(current)
    pieces = [p for piece in pieces for p in _shorten(piece, options)]
    if len(pieces) == 1:
        return [segment]
    return [_piece(segment, piece, index, len(pieces)) for index, piece in enumerate(pieces)]


def _ends_phrase(current: list[Word], word: Word, following: Word,
                 options: PhraseOptions) -> bool:
    if following.start - word.end >= options.pause_seconds:
        return True
    return ends_sentence(word.word) and word.end - current[0].start >= options.min_seconds


def ends_sentence(text: str) -> bool:
    stripped = text.rstrip(_CLOSERS)
    if not stripped.endswith(_SENTENCE_END):
        return False
    if stripped.endswith("."):
        stem = stripped[:-1].lower()
        # Abbreviations and initials ("J.") end with a stop but not a sentence.
        if stem in _ABBREVIATIONS or (len(stem) == 1 and stem.isalpha()):
            return False
    return True


def _ends_clause(text: str) -> bool:
    return text.rstrip(_CLOSERS).endswith(_CLAUSE_END)


def _shorten(words: list[Word], options: PhraseOptions) -> list[list[Word]]:
    """Cut an over-long phrase where the cut hurts least, until every piece fits."""
    if len(words) < 2 or words[-1].end - words[0].start <= options.max_seconds:
        return [words]
    best, best_score = 0, -1.0
    span = words[-1].end - words[0].start
    for i in range(len(words) - 1):
        pause = max(0.0, words[i + 1].start - words[i].end)
        # Prefer clause ends and pauses; among equals, cuts near the middle.
        balance = 1.0 - abs((words[i].end - words[0].start) / span - 0.5)
        score = pause + (0.5 if _ends_clause(words[i].word) else 0.0) + 0.1 * balance
        if score > best_score:
            best, best_score = i, score
    return _shorten(words[:best + 1], options) + _shorten(words[best + 1:], options)


def _piece(parent: Segment, words: list[Word], index: int, count: int) -> Segment:
    probabilities = [w.probability for w in words if w.probability is not None]
    # The outer edges keep the segment's own times (they may include the engine's
    # padding); inner edges are the words'.
    start = parent.start if index == 0 else words[0].start
    end = parent.end if index == count - 1 else words[-1].end
    return replace(
        parent,
        start=min(start, words[0].start),
        end=max(end, words[-1].end),
        text=join_words(words),
        confidence=float(np.mean(probabilities)) if probabilities else parent.confidence,
        words=words,
    )
