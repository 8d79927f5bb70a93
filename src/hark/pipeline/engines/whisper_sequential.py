"""Sequential Whisper decoding of any length, a bounded stretch at a time.

faster-whisper's sequential decoder slides a 30 s window over one array, and first
computes the log-mel features of all of it: about 45 MB per minute of audio, so an
hour would need gigabytes. Up to `STRETCH_SECONDS` the audio is handed over whole,
exactly as faster-whisper would be given it. Beyond that it is decoded a stretch at
a time: the segments of a stretch are kept up to the last one that ends more than
30 s before the stretch does (the final window of a stretch may stop mid-word), and
the next stretch starts where the first segment not kept starts, with the text
decoded so far as its prompt, as faster-whisper's own window carries it.

The audio is a timeline of speech: for VAD-filtered decoding, the chunks' speech laid
end to end (see `SpeechMap`); with VAD off, the whole recording.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hark.pipeline.audio import SAMPLE_RATE
from hark.pipeline.engines.whisper_segments import convert_segments
from hark.pipeline.samples import SampleSource
from hark.pipeline.transcript import Segment
from hark.pipeline.vad import SpeechMap

# Audio decoded in one call: its features take about 230 MB.
STRETCH_SECONDS = 300.0
# Segments ending in the last this-many seconds of a stretch are decoded again with
# the next stretch.
TAIL_SECONDS = 30.0
# faster-whisper's default: a window decoded at a higher temperature than this is
# not used as the next window's prompt.
_PROMPT_RESET_TEMPERATURE = 0.5


def decode_sequential(
    model: Any, audio: SampleSource, timeline: SpeechMap, kwargs: dict[str, Any], *,
    to_recording: bool, stretch_seconds: float = STRETCH_SECONDS,
) -> tuple[Any, Iterator[Segment]]:
    """faster-whisper's sequential decoding of `timeline` (a span of `audio` or its
    speech laid end to end); the first call's info (language) and the segments.

    With `to_recording`, segment times on the timeline are taken back to the
    recording's; without, the timeline is the recording from its start.
    """
    total = timeline.samples
    stretch = max(int(stretch_seconds * SAMPLE_RATE), 2 * int(TAIL_SECONDS * SAMPLE_RATE))
    mapping = timeline if to_recording else None
    first_end = min(stretch, total)
    segments, info = model.transcribe(timeline.read(audio, 0, first_end), vad_filter=False,
                                      **kwargs)
    if first_end == total:
        return info, convert_segments(segments, mapping)
    rest = {**kwargs, "language": info.language}
    return info, _stretches(model, audio, timeline, mapping, segments, rest, stretch)


def _stretches(
    model: Any, audio: SampleSource, timeline: SpeechMap, mapping: SpeechMap | None,
    segments: Any, kwargs: dict[str, Any], stretch: int,
) -> Iterator[Segment]:
    total = timeline.samples
    limit = model.max_length // 2 - 1  # prompt tokens faster-whisper keeps
    prompt = kwargs.get("initial_prompt")
    carried: list[int] = (
        model.hf_tokenizer.encode(" " + prompt.strip(), add_special_tokens=False).ids
        if isinstance(prompt, str) else [])
    start = 0
    while True:
        end = min(start + stretch, total)
        final = end == total
        cut = (end - start) / SAMPLE_RATE - TAIL_SECONDS
        offset = start / SAMPLE_RATE
        resume: float | None = None
        last_end = 0.0
        try:
            for segment in segments:
                if not final and segment.end > cut:
                    resume = segment.start
                    break
                yield from convert_segments([segment], mapping, offset)
                last_end = segment.end
                if (segment.temperature or 0.0) > _PROMPT_RESET_TEMPERATURE:
                    carried = []
                else:
                    carried = (carried + list(segment.tokens))[-limit:]
        finally:
            segments.close()
        if final:
            return
        if resume is None:
            resume = max(last_end, cut)
        # Each stretch moves on by at least half its length, whatever came back.
        start += max(int(resume * SAMPLE_RATE), stretch // 2)
        end = min(start + stretch, total)
        segments, _ = model.transcribe(
            timeline.read(audio, start, end), vad_filter=False,
            **{**kwargs, "initial_prompt": carried or None})
