"""Caption cues: transcript words grouped into short, readable subtitles.

The rules are the usual broadcast ones: a few short lines per cue, a bounded
display time, breaks only between words (preferably at punctuation or pauses),
one speaker per cue, and cues that never overlap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from hark.errors import OptionError
from hark.pipeline.transcript import Segment, Transcript

# Text left on screen across a silence this long looks stuck, so a cue always ends there.
_PAUSE_BREAK = 1.5
# A shorter pause still makes a natural place to end a cue.
_SOFT_PAUSE = 0.4
# Degenerate word timings (zero or negative length) still need a cue that exists on screen.
_MIN_CUE_MS = 50

# Relative weights when choosing where cues end: the cue count dominates, so text is
# never spread over more cues than needed unless a much better break point is available.
_CUE_COST = 200.0
_BREAK_COST_CLAUSE = 40.0
_BREAK_COST_WORD = 150.0
_LINE_BREAK_BONUS = 150.0
# Cues on screen for less than this are hard to read; each missing second costs this much.
_BRIEF_CUE = 1.0
_BRIEF_COST = 100.0

_CLOSERS = "\"'”’»)]}"
_SENTENCE_END = (".", "!", "?", "…", "。", "！", "？")
_CLAUSE_END = (",", ";", ":", "—", "–", "、", "，", "；", "：")


@dataclass(frozen=True)
class CaptionOptions:
    max_line_chars: int = 42
    max_lines: int = 2
    max_duration: float = 7.0
    min_gap: float = 0.0

    def __post_init__(self) -> None:
        if self.max_line_chars < 1:
            raise OptionError("max_line_chars must be at least 1", field="max_line_chars")
        if self.max_lines < 1:
            raise OptionError("max_lines must be at least 1", field="max_lines")
        if not (math.isfinite(self.max_duration) and self.max_duration > 0):
            raise OptionError("max_duration must be a positive number", field="max_duration")
        if not (math.isfinite(self.min_gap) and self.min_gap >= 0):
            raise OptionError("min_gap must be zero or more", field="min_gap")


@dataclass(frozen=True)
class Cue:
    """One caption. `speaker` is the display label (enrolled name or speaker id)."""

    start: float
    end: float
    lines: tuple[str, ...]
    speaker: str | None

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class _Token:
    text: str
    start: float
    end: float
    speaker: str | None
    # Whether a space separates this token from the one before (none inside Japanese
    # or Chinese text), so lines read back exactly as the transcript's text.
    spaced: bool = True


def _joined(tokens: Sequence[_Token]) -> str:
    return "".join((" " if t.spaced and i else "") + t.text for i, t in enumerate(tokens))


def _gaps(tokens: Sequence[_Token]) -> list[int]:
    """Characters between each token and the one before it (0 for the first)."""
    return [1 if t.spaced and i else 0 for i, t in enumerate(tokens)]


def speaker_prefix(label: str | None) -> str:
    """The visible speaker tag put before a cue's first line."""
    return f"[{label}] " if label else ""


def to_milliseconds(seconds: float) -> int:
    if not math.isfinite(seconds) or seconds <= 0:
        return 0
    return round(seconds * 1000)


def _clean(text: str) -> str:
    return " ".join(text.split())


def _glued(previous: _Token, token: _Token) -> bool:
    """Whether an unspaced token belongs to the word before it on screen.

    A hyphen, apostrophe or punctuation mark never starts or ends a caption line
    ("self-|substantial", "don|'t", "word| ,"), but the characters of Japanese or
    Chinese text may break anywhere.
    """
    if token.spaced or token.speaker != previous.speaker:
        return False
    return not token.text[0].isalnum() or not previous.text[-1].isalnum()


def _segment_tokens(segment: Segment) -> list[_Token]:
    tokens: list[_Token] = []
    for word in segment.words:
        text = _clean(word.word)
        if not text:
            continue
        token = _Token(text, word.start, word.end,
                       word.speaker if word.speaker is not None else segment.speaker,
                       word.leading_space)
        if tokens and _glued(tokens[-1], token):
            last = tokens[-1]
            last.text += token.text
            last.end = max(last.end, token.end)
        else:
            tokens.append(token)
    if tokens:
        return tokens
    # Without word timings, the segment's span is shared by character count:
    # a fair guess at where each word is spoken.
    pieces = segment.text.split()
    total = sum(len(p) for p in pieces)
    span = segment.end - segment.start
    done = 0
    for piece in pieces:
        start = segment.start + span * done / total
        done += len(piece)
        end = segment.start + span * done / total
        tokens.append(_Token(piece, start, end, segment.speaker))
    return tokens


def _sanitize(tokens: list[_Token], previous_start: float) -> float:
    """Make times finite, non-negative and non-decreasing so gaps and spans mean something."""
    for token in tokens:
        start = token.start if math.isfinite(token.start) else previous_start
        start = max(start, previous_start, 0.0)
        end = token.end if math.isfinite(token.end) else start
        token.start, token.end = start, max(end, start)
        previous_start = start
    return previous_start


def _runs(tokens: list[_Token]) -> list[list[_Token]]:
    """Split a segment's tokens where a cue must end: a new speaker or a long silence."""
    runs: list[list[_Token]] = []
    for token in tokens:
        if runs:
            last = runs[-1][-1]
            if token.speaker == last.speaker and token.start - last.end < _PAUSE_BREAK:
                runs[-1].append(token)
                continue
        runs.append([token])
    return runs


def _ends_sentence(text: str) -> bool:
    return text.rstrip(_CLOSERS).endswith(_SENTENCE_END)


def _ends_clause(text: str) -> bool:
    stripped = text.rstrip(_CLOSERS)
    return stripped.endswith(_SENTENCE_END) or stripped.endswith(_CLAUSE_END)


def _line_count(
    widths: Sequence[int], gaps: Sequence[int], reserve: int, options: CaptionOptions
) -> int:
    """Fewest lines the words need; greedy filling is optimal for counting them.

    A line may exceed the limit only when it holds a single word, which is never cut.
    """
    lines = 1
    width = reserve + widths[0]
    for w, gap in zip(widths[1:], gaps[1:], strict=True):
        if width + gap + w <= options.max_line_chars:
            width += gap + w
        else:
            lines += 1
            width = w
    return lines


def _balanced_lines(
    tokens: Sequence[_Token], reserve: int, count: int, options: CaptionOptions
) -> tuple[str, ...]:
    """Lay words out on exactly `count` lines of similar width.

    Greedy filling leaves a long top line over a stub; minimising the sum of squared
    widths evens them out, with a bonus for breaking after punctuation.
    """
    texts = [t.text for t in tokens]
    gaps = _gaps(tokens)
    n = len(texts)
    prefix = [0]
    for text, gap in zip(texts, gaps, strict=True):
        prefix.append(prefix[-1] + gap + len(text))

    def line_cost(a: int, b: int, first: bool) -> float | None:
        # The gap before a line's first token is not on the line.
        width = prefix[b] - prefix[a] - gaps[a] + (reserve if first else 0)
        if b - a > 1 and width > options.max_line_chars:
            return None
        bonus = _LINE_BREAK_BONUS if b < n and _ends_clause(texts[b - 1]) else 0.0
        return float(width * width) - bonus

    inf = math.inf
    best = [[inf] * (n + 1) for _ in range(count + 1)]
    back = [[0] * (n + 1) for _ in range(count + 1)]
    best[0][0] = 0.0
    for k in range(1, count + 1):
        for b in range(k, n + 1):
            for a in range(b - 1, k - 2, -1):
                if best[k - 1][a] == inf:
                    continue
                cost = line_cost(a, b, k == 1)
                if cost is None:
                    break
                if best[k - 1][a] + cost < best[k][b]:
                    best[k][b] = best[k - 1][a] + cost
                    back[k][b] = a
    lines: list[str] = []
    b = n
    for k in range(count, 0, -1):
        a = back[k][b]
        lines.append(_joined(tokens[a:b]))
        b = a
    return tuple(reversed(lines))


def _break_cost(token: _Token, following: _Token) -> float:
    if _ends_sentence(token.text):
        return 0.0
    if _ends_clause(token.text) or following.start - token.end >= _SOFT_PAUSE:
        return _BREAK_COST_CLAUSE
    return _BREAK_COST_WORD


def _partition(run: list[_Token], reserve: int, options: CaptionOptions) -> list[tuple[int, int]]:
    """Choose cue boundaries over a run: fewest cues first, then good breaks and even fill."""
    n = len(run)
    widths = [len(t.text) for t in run]
    gaps = _gaps(run)
    capacity = max(options.max_lines * options.max_line_chars - reserve, 1)
    best = [math.inf] * (n + 1)
    back = [0] * (n + 1)
    best[0] = 0.0
    for j in range(1, n + 1):
        chars = 0
        latest_end = 0.0
        for i in range(j - 1, -1, -1):
            chars += widths[i] + (gaps[i + 1] if i + 1 < j else 0)
            latest_end = max(latest_end, run[i].end)
            if j - i > 1 and (
                latest_end - run[i].start > options.max_duration
                or (
                    reserve + chars > options.max_line_chars
                    and _line_count(widths[i:j], [0, *gaps[i + 1:j]], reserve, options)
                    > options.max_lines
                )
            ):
                break
            slack = max(capacity - chars, 0)
            brevity = max(_BRIEF_CUE - (latest_end - run[i].start), 0.0)
            cost = best[i] + _CUE_COST + slack * slack / capacity + brevity * _BRIEF_COST
            if j < n:
                cost += _break_cost(run[j - 1], run[j])
            if cost < best[j]:
                best[j] = cost
                back[j] = i
    bounds: list[tuple[int, int]] = []
    j = n
    while j > 0:
        bounds.append((back[j], j))
        j = back[j]
    return list(reversed(bounds))


def _settle_times(
    drafts: list[tuple[float, float, tuple[str, ...], str | None]], options: CaptionOptions
) -> list[Cue]:
    """Fix cue times on the millisecond grid the formats use.

    An overlapping predecessor is shortened rather than the later cue delayed, since a
    word's start is when it is heard; neither ever drops below the minimum length.
    """
    gap = round(options.min_gap * 1000)
    longest = max(round(options.max_duration * 1000), 1)
    shortest = min(_MIN_CUE_MS, longest)
    spans: list[list[int]] = []
    for start, end, _, _ in drafts:
        s, e = to_milliseconds(start), to_milliseconds(end)
        if spans:
            prev = spans[-1]
            if s < prev[1] + gap:
                prev[1] = max(prev[0] + shortest, s - gap)
                s = max(s, prev[1] + gap)
        e = min(max(e, s + shortest), s + longest)
        spans.append([s, e])
    return [
        Cue(s / 1000, e / 1000, lines, speaker)
        for (s, e), (_, _, lines, speaker) in zip(spans, drafts, strict=True)
    ]


def build_cues(transcript: Transcript, options: CaptionOptions = CaptionOptions()) -> list[Cue]:
    """Group a transcript's words into caption cues, in time order and never overlapping."""
    drafts: list[tuple[float, float, tuple[str, ...], str | None]] = []
    previous_start = 0.0
    for segment in transcript.segments:
        if not segment.text.strip():
            continue
        tokens = _segment_tokens(segment)
        previous_start = _sanitize(tokens, previous_start)
        for run in _runs(tokens):
            label = _clean(transcript.speaker_label(run[0].speaker) or "") or None
            reserve = len(speaker_prefix(label))
            for i, j in _partition(run, reserve, options):
                cue = run[i:j]
                count = _line_count([len(t.text) for t in cue], [0, *_gaps(cue)[1:]],
                                    reserve, options)
                lines = _balanced_lines(cue, reserve, count, options)
                end = max(t.end for t in run[i:j])
                drafts.append((run[i].start, end, lines, label))
    return _settle_times(drafts, options)
