"""The edit model: what a person may change in a transcript, and how it is stored.

A change names a segment by id and gives either its new `text` or new spellings for
some of its `words` (by index in the transcript as currently shown); a speaker
change gives a speaker id a display name (or None to take the rename back).

Timings are never made up from nothing and never moved:

* a word respelled keeps its word's start and end;
* new segment text is aligned with the segment's current words (difflib): words
  the text keeps keep their timings; a run of n old words replaced by the same
  number of new ones pairs them one to one; replaced by a different number, the
  new words share the old run's time span in proportion to their length; words
  inserted where none were get a zero-length time at that point; removed words go.
  The segment's own start and end never change.

An edited word's `probability` becomes None: the engine's confidence was about the
word it heard, not the one a person typed.

A revision stores the complete difference between the original and the transcript
it describes: every segment that differs (whole) and every renamed speaker. So any
revision is the original plus its own edits, and restoring one is copying them.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, replace
from difflib import SequenceMatcher
from typing import Any

from hark.errors import OptionError
from hark.pipeline.transcript import (
    Segment,
    Speaker,
    Transcript,
    Word,
    join_segments,
    join_words,
)
from hark.speakers.service import validate_name

MAX_TEXT_CHARS = 10_000
MAX_WORD_CHARS = 200


@dataclass(frozen=True)
class WordChange:
    index: int
    word: str


@dataclass(frozen=True)
class SegmentChange:
    id: int
    text: str | None = None
    words: tuple[WordChange, ...] = ()


def empty_edits() -> dict[str, Any]:
    return {"segments": {}, "speakers": {}}


def apply_edits(original: Transcript, edits: dict[str, Any]) -> Transcript:
    """The original with a revision's stored edits applied (the original is not touched)."""
    transcript = copy.deepcopy(original)
    segments: dict[str, Any] = edits.get("segments") or {}
    if segments:
        transcript.segments = [
            _segment_from(segments[str(s.id)]) if str(s.id) in segments else s
            for s in transcript.segments]
        transcript.text = full_text(transcript)
    for speaker_id, override in (edits.get("speakers") or {}).items():
        _set_speaker(transcript, original, speaker_id, override.get("name"),
                     override.get("profile_id"))
    return transcript


def diff(original: Transcript, current: Transcript) -> dict[str, Any]:
    """The stored form of `current`: what differs from `original`."""
    before = {s.id: asdict(s) for s in original.segments}
    segments = {str(s.id): asdict(s) for s in current.segments if asdict(s) != before.get(s.id)}
    originals = {s.id: s for s in original.speakers}
    speakers: dict[str, Any] = {}
    for speaker in current.speakers:
        was = originals.get(speaker.id)
        if was is None or (speaker.name, speaker.profile_id) != (was.name, was.profile_id):
            speakers[speaker.id] = {"name": speaker.name, "profile_id": speaker.profile_id}
    return {"segments": segments, "speakers": speakers}


def change(original: Transcript, current: Transcript, segments: list[SegmentChange],
           speakers: dict[str, str | None]) -> Transcript:
    """`current` with the changes made; raises OptionError naming the offending field."""
    edited = copy.deepcopy(current)
    by_id = {s.id: s for s in edited.segments}
    seen: set[int] = set()
    for position, item in enumerate(segments):
        field = f"segments.{position}"
        segment = by_id.get(item.id)
        if segment is None:
            raise OptionError(f"the transcript has no segment {item.id}", field=f"{field}.id")
        if item.id in seen:
            raise OptionError(f"segment {item.id} is changed twice", field=f"{field}.id")
        seen.add(item.id)
        if (item.text is None) == (not item.words):
            raise OptionError("give a segment either its new text or new words, not both "
                              "or neither", field=field)
        if item.text is not None:
            _retext(segment, item.text, field)
        else:
            for index, word in enumerate(item.words):
                _reword(segment, word, f"{field}.words.{index}")
    if segments:
        edited.text = full_text(edited)
    known = {s.id for s in edited.speakers} | {s.speaker for s in edited.segments if s.speaker}
    for speaker_id, name in speakers.items():
        if speaker_id not in known:
            raise OptionError(f"the transcript has no speaker {speaker_id!r}",
                              field=f"speakers.{speaker_id}")
        rename(edited, original, speaker_id, name)
    return edited


def rename(transcript: Transcript, original: Transcript, speaker_id: str, name: str | None,
           profile_id: str | None = None) -> None:
    """Name a speaker (None or blank: back to its original name and profile)."""
    if name is None or not name.strip():
        was = next((s for s in original.speakers if s.id == speaker_id), None)
        _set_speaker(transcript, original, speaker_id, was.name if was else None,
                     was.profile_id if was else None)
        return
    cleaned = validate_name(name)
    current = next((s for s in transcript.speakers if s.id == speaker_id), None)
    if profile_id is None and current is not None and current.name == cleaned:
        profile_id = current.profile_id  # the same name again keeps its profile
    _set_speaker(transcript, original, speaker_id, cleaned, profile_id)


def full_text(transcript: Transcript) -> str:
    """The transcript's text from its segments, as the pipeline builds it."""
    return join_segments(transcript.segments, transcript.language)


def _set_speaker(transcript: Transcript, original: Transcript, speaker_id: str,
                 name: str | None, profile_id: str | None) -> None:
    speaker = next((s for s in transcript.speakers if s.id == speaker_id), None)
    if speaker is None:
        speaker = Speaker(id=speaker_id, speech_seconds=round(sum(
            s.end - s.start for s in transcript.segments if s.speaker == speaker_id), 3))
        transcript.speakers.append(speaker)
    was = next((s for s in original.speakers if s.id == speaker_id), None)
    speaker.name, speaker.profile_id = name, profile_id
    # A similarity measures the match with the profile the pipeline found; any other
    # profile (or none) makes it meaningless.
    speaker.similarity = was.similarity if was is not None and \
        was.profile_id == profile_id else None


def _segment_from(data: dict[str, Any]) -> Segment:
    return Segment(**{k: v for k, v in data.items() if k != "words"},
                   words=[Word(**w) for w in data.get("words", [])])


def _tokens(old: list[Word], text: str) -> list[tuple[str, bool]]:
    """The new text cut into words, each with whether a space comes before it.

    Text splits at spaces, and also where the old words' boundaries survive in the new
    text (found by a character diff), so scripts written without spaces and words
    joined by a hyphen or apostrophe keep their words' granularity.
    """
    owner: list[int] = []  # for each character of the old text, the word it belongs to
    for index, word in enumerate(old):
        if owner and word.leading_space:
            owner.append(-1)
        owner.extend([index] * len(word.word.strip()))
    mapped = [-1] * len(text)
    matcher = SequenceMatcher(None, join_words(old), text, autojunk=False)
    for a, b, size in matcher.get_matching_blocks():
        for k in range(size):
            mapped[b + k] = owner[a + k]
    tokens: list[tuple[str, bool]] = []
    # The first word attaches to the previous segment the way the old first word did.
    current, spaced, last_owner = "", old[0].leading_space, -1
    for position, char in enumerate(text):
        if char == " ":
            if current:
                tokens.append((current, spaced))
            current, spaced, last_owner = "", True, -1
            continue
        here = mapped[position]
        # Only a boundary between two old words that were written together splits a
        # chunk; a chance match of single letters elsewhere must not.
        if current and here == last_owner + 1 >= 1 and not old[here].leading_space:
            tokens.append((current, spaced))
            current, spaced = "", False
        current += char
        if here >= 0:
            last_owner = here
    if current:
        tokens.append((current, spaced))
    return tokens


def _retext(segment: Segment, text: str, field: str) -> None:
    if len(text) > MAX_TEXT_CHARS:
        raise OptionError(f"a segment's text must be at most {MAX_TEXT_CHARS} characters",
                          field=f"{field}.text")
    cleaned = " ".join(text.split())
    segment.text = cleaned
    old = segment.words
    if not old:
        return
    tokens = _tokens(old, cleaned)
    matcher = SequenceMatcher(None, [w.word.strip() for w in old], [t for t, _ in tokens],
                              autojunk=False)
    words: list[Word] = []
    for operation, i1, i2, j1, j2 in matcher.get_opcodes():
        if operation == "equal":
            words.extend(replace(w, leading_space=spaced)
                         for w, (_, spaced) in zip(old[i1:i2], tokens[j1:j2], strict=True))
        elif operation == "replace":
            words.extend(_spread(tokens[j1:j2], old[i1:i2]))
        elif operation == "insert":
            before = old[i1 - 1] if i1 > 0 else None
            after = old[i1] if i1 < len(old) else None
            at = before.end if before is not None else after.start if after else segment.start
            speaker = (before or after or old[0]).speaker
            words.extend(Word(t, at, at, None, speaker, spaced) for t, spaced in tokens[j1:j2])
    segment.words = words


def _spread(tokens: list[tuple[str, bool]], old: list[Word]) -> list[Word]:
    """New words for a replaced run of old ones, within the run's time span."""
    if len(tokens) == len(old):
        return [Word(t, w.start, w.end, None, w.speaker, spaced)
                for (t, spaced), w in zip(tokens, old, strict=True)]
    start, end = old[0].start, old[-1].end
    total = sum(len(t) for t, _ in tokens)
    words, used = [], 0
    for token, spaced in tokens:
        begin = start + (end - start) * used / total
        used += len(token)
        words.append(Word(token, round(begin, 3),
                          round(start + (end - start) * used / total, 3), None, old[0].speaker,
                          spaced))
    return words


def _reword(segment: Segment, change: WordChange, field: str) -> None:
    if not 0 <= change.index < len(segment.words):
        raise OptionError(f"segment {segment.id} has {len(segment.words)} words; there is no "
                          f"word {change.index}", field=f"{field}.index")
    cleaned = " ".join(change.word.split())
    if not cleaned:
        raise OptionError("a word must not be empty; to remove words, edit the segment's "
                          "text", field=f"{field}.word")
    if len(cleaned) > MAX_WORD_CHARS:
        raise OptionError(f"a word must be at most {MAX_WORD_CHARS} characters",
                          field=f"{field}.word")
    word = segment.words[change.index]
    if cleaned == word.word.strip():
        return
    word.word = cleaned
    word.probability = None
    segment.text = join_words(segment.words)
