"""faster-whisper's segments in Hark's shape, with times on the recording."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from hark.pipeline.transcript import Segment, Word
from hark.pipeline.vad import SpeechMap

# A segment Whisper itself judges to be no speech, and whose words it was unsure of,
# is text made up over noise or music ("Thank you for watching"), not a transcript.
_NO_SPEECH_PROB = 0.5
_INVENTED_WORD_PROB = 0.5


def convert_segments(segments: Iterable[Any], speech: SpeechMap | None = None,
                     offset: float = 0.0) -> Iterator[Segment]:
    """faster-whisper's segments in Hark's shape; with `speech`, their times are on
    chunks' speech and are taken back to the recording's times (each word by the part
    its middle falls in, so a word never straddles a left-out silence). `offset` is
    where the audio faster-whisper was given starts (on the speech, or in the
    recording)."""
    for seg in segments:
        words = [
            Word(word=w.word.strip(), start=_shifted(w.start, offset),
                 end=_shifted(w.end, offset), probability=w.probability,
                 leading_space=w.word[:1].isspace())
            for w in (seg.words or []) if w.word.strip()
        ]
        if invented(seg.no_speech_prob, words):
            continue
        start, end = _shifted(seg.start, offset), _shifted(seg.end, offset)
        if speech is not None:
            for word in words:
                part = speech.part_of((word.start + word.end) / 2)
                word.start = speech.to_recording(word.start, part)
                word.end = speech.to_recording(word.end, part)
            if words:
                start, end = words[0].start, words[-1].end
            else:
                start = speech.to_recording(start)
                end = max(start, speech.to_recording(end, speech.part_of(end - 1e-3)))
        confidence = (
            float(np.mean([w.probability for w in words]))
            if words else float(np.exp(seg.avg_logprob))
        )
        yield Segment(
            id=0,
            start=start,
            end=end,
            text=seg.text.strip(),
            confidence=confidence,
            avg_logprob=seg.avg_logprob,
            no_speech_prob=seg.no_speech_prob,
            words=words,
        )


def invented(no_speech_prob: float, words: Sequence[Word]) -> bool:
    """Whether a segment is text Whisper made up where nobody spoke."""
    if not words:
        return False
    mean = float(np.mean([w.probability for w in words if w.probability is not None] or [1]))
    return no_speech_prob > _NO_SPEECH_PROB and mean < _INVENTED_WORD_PROB


def _shifted(seconds: float, offset: float) -> float:
    # Times from faster-whisper are kept as they are when there is nothing to add.
    return round(seconds + offset, 3) if offset else seconds
