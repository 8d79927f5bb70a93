"""A Hark transcript in OpenAI's response shapes and stream events.

    json            {"text", "usage"} (+ "logprobs" when asked for and known)
    verbose_json    {"task", "language", "duration", "text", "segments"?, "words"?, "usage"}
    diarized_json   {"task", "duration", "text", "segments": [transcript.text.segment…], "usage"}
    text/srt/vtt    plain bodies

`usage` is `{"type": "duration", "seconds": …}`, as OpenAI bills its Whisper model.
Diarized speakers are labelled like OpenAI's: the known speaker's (or enrolled
profile's) name when matched, else "A", "B", … in order of appearance.

Segment fields Whisper has and a transcript does not keep are filled from what it does
keep: `seek` is the segment start in 10 ms frames, `tokens` is empty, `temperature` is
the requested one (0 for the fallback ladder), `compression_ratio` is computed from the
text as Whisper computes it, and `avg_logprob`, when the engine gave none, is the mean
log probability of the segment's words (or the log of its confidence, when its words
were not kept); a value with no source at all is null.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import replace
from typing import Any

from fastapi.responses import JSONResponse, Response

from hark.openai_api.languages import language_name
from hark.openai_api.schemas import AudioRequest
from hark.pipeline.transcript import Segment, Transcript, Word
from hark.pipeline.writers import render

MEDIA_TYPES = {"text": "text/plain; charset=utf-8",
               "srt": "application/x-subrip; charset=utf-8",
               "vtt": "text/vtt; charset=utf-8"}
UNKNOWN_SPEAKER = "unknown"
# The log probability reported for a word the engine gave probability 0.
_MIN_LOGPROB = -100.0


def response(transcript: Transcript, request: AudioRequest) -> Response:
    fmt = request.response_format
    if fmt in MEDIA_TYPES:
        return Response(text_body(transcript, fmt), media_type=MEDIA_TYPES[fmt])
    if fmt == "verbose_json":
        return JSONResponse(verbose_body(transcript, request))
    if fmt == "diarized_json":
        return JSONResponse(diarized_body(transcript))
    return JSONResponse(json_body(transcript, request))


def usage(transcript: Transcript) -> dict[str, Any]:
    return {"type": "duration", "seconds": round(transcript.duration, 3)}


def json_body(transcript: Transcript, request: AudioRequest) -> dict[str, Any]:
    if request.task == "translate":
        return {"text": transcript.text}
    body: dict[str, Any] = {"text": transcript.text, "usage": usage(transcript)}
    if request.logprobs:
        probabilities = logprobs([w for s in transcript.segments for w in s.words])
        if probabilities is not None:
            body["logprobs"] = probabilities
    return body


def verbose_body(transcript: Transcript, request: AudioRequest) -> dict[str, Any]:
    translated = request.task == "translate"
    body: dict[str, Any] = {
        "task": request.task,
        # A translation's text is English whatever was spoken.
        "language": "english" if translated else language_name(transcript.language),
        "duration": transcript.duration, "text": transcript.text}
    labels = speaker_labels(transcript) if transcript.speakers else None
    if translated or "segment" in request.granularities:
        temperature = request.temperature or 0.0
        body["segments"] = [_verbose_segment(s, index, temperature, labels)
                            for index, s in enumerate(transcript.segments)]
    if not translated:
        if request.words:
            body["words"] = [{"word": w.word, "start": w.start, "end": w.end}
                             for s in transcript.segments for w in s.words]
        body["usage"] = usage(transcript)
    return body


def diarized_body(transcript: Transcript) -> dict[str, Any]:
    return {"task": "transcribe", "duration": transcript.duration, "text": transcript.text,
            "segments": segment_events(transcript), "usage": usage(transcript)}


def text_body(transcript: Transcript, fmt: str) -> str:
    if fmt == "text":
        return transcript.text + "\n"
    return render(labeled(transcript), fmt)


# --- speakers ------------------------------------------------------------------------------

def speaker_labels(transcript: Transcript) -> dict[str, str]:
    """Speaker id → OpenAI label: the matched name, else a letter in order of appearance."""
    labels: dict[str, str] = {}
    unnamed = 0
    for speaker in transcript.speakers:
        if speaker.name:
            labels[speaker.id] = speaker.name
        else:
            labels[speaker.id] = _letters(unnamed)
            unnamed += 1
    return labels


def labeled(transcript: Transcript) -> Transcript:
    """The transcript with every speaker named by its OpenAI label (for the captions)."""
    labels = speaker_labels(transcript)
    return replace(transcript, speakers=[replace(s, name=labels[s.id])
                                         for s in transcript.speakers])


def _letters(index: int) -> str:
    """0 → A, 25 → Z, 26 → AA: spreadsheet column names."""
    label = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        label = chr(ord("A") + rest) + label
    return label


# --- pieces --------------------------------------------------------------------------------

def logprobs(words: list[Word]) -> list[dict[str, Any]] | None:
    """Per-word log probabilities as OpenAI's token logprobs; None when the engine gave
    no word probabilities."""
    if not words or any(w.probability is None for w in words):
        return None
    return [{"token": w.word, "logprob": _log(w.probability),
             "bytes": list(w.word.encode("utf-8"))} for w in words]


def _log(probability: float | None) -> float:
    if probability is None or probability <= 0:
        return _MIN_LOGPROB
    return round(max(math.log(min(probability, 1.0)), _MIN_LOGPROB), 6)


def _avg_logprob(segment: Segment) -> float | None:
    if segment.avg_logprob is not None:
        return segment.avg_logprob
    values = [_log(w.probability) for w in segment.words if w.probability is not None]
    if values:
        return round(sum(values) / len(values), 6)
    return _log(segment.confidence) if segment.confidence is not None else None


def compression_ratio(text: str) -> float:
    """Whisper's measure of repetitiveness: text bytes over zlib-compressed bytes."""
    data = text.encode("utf-8")
    return round(len(data) / len(zlib.compress(data)), 6) if data else 0.0


def _verbose_segment(segment: Segment, index: int, temperature: float,
                     labels: dict[str, str] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": index, "seek": round(segment.start * 100), "start": segment.start,
        "end": segment.end, "text": segment.text, "tokens": [], "temperature": temperature,
        "avg_logprob": _avg_logprob(segment),
        "compression_ratio": compression_ratio(segment.text),
        "no_speech_prob": segment.no_speech_prob}
    if labels is not None:  # diarized: who said it (an addition to OpenAI's fields)
        entry["speaker"] = labels.get(segment.speaker or "", UNKNOWN_SPEAKER)
    return entry


# --- stream events ---------------------------------------------------------------------------

def segment_events(transcript: Transcript) -> list[dict[str, Any]]:
    labels = speaker_labels(transcript)
    return [{"type": "transcript.text.segment", "id": f"seg_{index}", "start": s.start,
             "end": s.end, "text": s.text,
             "speaker": labels.get(s.speaker or "", UNKNOWN_SPEAKER)}
            for index, s in enumerate(transcript.segments)]


def delta_event(segment: dict[str, Any], first: bool,
                request: AudioRequest) -> dict[str, Any] | None:
    """The text a job's `segment` event adds, or None when it adds none."""
    text = str(segment.get("text") or "").strip()
    if not text:
        return None
    words = [Word(**w) for w in segment.get("words") or []]
    spaced = not first and (words[0].leading_space if words else True)
    event: dict[str, Any] = {"type": "transcript.text.delta",
                             "delta": " " + text if spaced else text}
    if request.logprobs:
        probabilities = logprobs(words)
        if probabilities is not None:
            event["logprobs"] = probabilities
    return event


def done_event(transcript: Transcript, request: AudioRequest) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "transcript.text.done", "text": transcript.text,
                             "usage": usage(transcript)}
    if request.logprobs:
        probabilities = logprobs([w for s in transcript.segments for w in s.words])
        if probabilities is not None:
            event["logprobs"] = probabilities
    return event
