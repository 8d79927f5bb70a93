"""One live stream's work, free of any web framework: options checked, PCM16 frames
turned into 16 kHz samples, the pipeline's `LiveTranscriber` run, events made into
messages; and the slots that bound how many streams run at once.

Live sessions run in the API process that accepted the socket (in scaled mode, in
each API replica), never through the job queue: a stream needs answers within a
second, and the model it uses stays loaded in that process's model cache.
"""

from __future__ import annotations

import struct
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hark import metrics
from hark.errors import LiveStreamsFullError, OptionError
from hark.pipeline.audio import SAMPLE_RATE
from hark.pipeline.live import LiveEvent, LiveTranscriber
from hark.pipeline.pcm import ENCODINGS, SAMPLE_RATES, open_stream_decoder
from hark.pipeline.samples import PCM16_SCALE
from hark.pipeline.transcript import Segment


@dataclass(frozen=True)
class StreamOptions:
    model: str | None = None
    language: str | None = None
    sample_rate: int = SAMPLE_RATE
    encoding: str = "pcm16"
    # Keep the stream as a job when it ends (transcribed again as a whole, with
    # diarization when asked).
    save: bool = False
    diarize: bool = False

    @classmethod
    def from_query(cls, query: dict[str, str]) -> StreamOptions:
        unknown = sorted(set(query) - {"model", "language", "sample_rate", "encoding",
                                       "save", "diarize", "api_key"})
        if unknown:
            raise OptionError(f"Unknown option {unknown[0]!r}", field=unknown[0][:64])
        for name in ("model", "language", "encoding"):
            if len(query.get(name, "")) > 128:
                raise OptionError(f"{name} is too long", field=name)
        rate = query.get("sample_rate", str(SAMPLE_RATE))
        if not rate.isdigit() or int(rate) not in SAMPLE_RATES:
            raise OptionError("sample_rate must be one of "
                              + ", ".join(map(str, SAMPLE_RATES)), field="sample_rate")
        encoding = query.get("encoding", "pcm16")
        if encoding not in ENCODINGS:
            raise OptionError("encoding must be pcm16 (16-bit little-endian mono) or "
                              "container (WebM/Opus, Ogg, MP3, FLAC, WAV, ADTS AAC)",
                              field="encoding")
        flags = {}
        for name in ("save", "diarize"):
            value = query.get(name, "false").lower()
            if value not in ("true", "false", "1", "0"):
                raise OptionError(f"{name} must be true or false", field=name)
            flags[name] = value in ("true", "1")
        if flags["diarize"] and not flags["save"]:
            raise OptionError("diarize needs save: speakers are found in the saved job",
                              field="diarize")
        return cls(model=query.get("model") or None, language=query.get("language") or None,
                   sample_rate=int(rate), encoding=encoding, **flags)

    def job_fields(self) -> dict[str, Any]:
        """The options of the job a saved stream becomes."""
        fields: dict[str, Any] = {"diarize": self.diarize}
        if self.model:
            fields["model"] = self.model
        if self.language:
            fields["language"] = self.language
        return fields


@dataclass
class LiveSlots:
    """How many streams run now, on this process and per tenant."""

    per_server: int
    per_tenant: int
    active: Counter[str] = field(default_factory=Counter)

    def take(self, tenant: str, quota: int | None = None) -> None:
        """Take a slot; `quota` is the organisation's own limit, when it has one."""
        if sum(self.active.values()) >= self.per_server:
            raise LiveStreamsFullError(
                f"All {self.per_server} live streams of this server are in use; try later")
        allowed = self.per_tenant if quota is None else min(quota, self.per_tenant)
        if self.active[tenant] >= allowed:
            raise LiveStreamsFullError(
                f"Your {allowed} live streams are all in use; close one first",
                limit=allowed)
        self.active[tenant] += 1

    def give_back(self, tenant: str) -> None:
        self.active[tenant] -= 1
        if self.active[tenant] <= 0:
            del self.active[tenant]


class StreamRecording:
    """The stream's audio at 16 kHz, kept in an unnamed temporary file (32 KB a second,
    never in memory) until it is written out as a WAV file."""

    def __init__(self) -> None:
        # Closed by `close`, which the stream's owner calls when the socket ends.
        self._file = tempfile.TemporaryFile()  # noqa: SIM115
        self.samples = 0

    def add(self, samples: np.ndarray) -> None:
        pcm = np.rint(np.clip(samples, -1.0, 1.0) * PCM16_SCALE).clip(-32768, 32767)
        self._file.write(pcm.astype("<i2").tobytes())
        self.samples += int(samples.shape[0])

    def write_wav(self, out: Any) -> None:
        """Write a 16-bit mono WAV file to `out` (anything with `write(bytes)`)."""
        size = self.samples * 2
        out.write(b"RIFF" + struct.pack("<I", 36 + size) + b"WAVEfmt "
                  + struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE, SAMPLE_RATE * 2, 2, 16)
                  + b"data" + struct.pack("<I", size))
        self._file.seek(0)
        while block := self._file.read(1 << 20):
            out.write(block)

    def close(self) -> None:
        self._file.close()


class LiveSession:
    """Frames in, messages out, for one stream (and its recording, when it is kept)."""

    def __init__(self, transcriber: LiveTranscriber, options: StreamOptions,
                 model: str, max_seconds: float = float("inf")) -> None:
        self.transcriber = transcriber
        self.decoder = open_stream_decoder(options.encoding, options.sample_rate)
        # Compressed frames may hold hours of audio: what is past the limit is not
        # transcribed at all.
        self.max_seconds = max_seconds
        self.recording = StreamRecording() if options.save else None
        self.model = model
        # (samples received by then, when they arrived): for the latency of finals.
        self._arrivals: deque[tuple[int, float]] = deque(maxlen=10_000)
        metrics.LIVE_STREAMS.inc()

    @property
    def seconds(self) -> float:
        return self.transcriber.received / SAMPLE_RATE

    def feed(self, frame: bytes, *, last: bool = False) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        for samples in self.decoder.pieces(frame, last=last):
            if self.seconds >= self.max_seconds:
                break
            messages += self._feed(samples)
        return messages

    def finish(self) -> list[dict[str, Any]]:
        tail = self.feed(b"", last=True)
        return tail + self._observed(self.transcriber.finish(), time.monotonic())

    def _feed(self, samples: np.ndarray) -> list[dict[str, Any]]:
        if self.recording is not None:
            self.recording.add(samples)
        started = time.monotonic()
        self._arrivals.append((self.transcriber.received + int(samples.shape[0]), started))
        events = self.transcriber.feed(samples)
        metrics.LIVE_AUDIO_SECONDS.labels(self.model).inc(samples.shape[0] / SAMPLE_RATE)
        return self._observed(events, started)

    def _observed(self, events: list[LiveEvent], started: float) -> list[dict[str, Any]]:
        """The events as messages, their work and the latency of finals counted."""
        done = time.monotonic()
        metrics.LIVE_WORK_SECONDS.labels(self.model).inc(done - started)
        for event in events:
            if event.kind == "final" and event.segment is not None:
                arrived = self._arrival(event.segment.end)
                if arrived is not None:
                    metrics.LIVE_FINAL_LATENCY.labels(self.model).observe(done - arrived)
        return [message(e) for e in events]

    def _arrival(self, seconds: float) -> float | None:
        """When the audio at `seconds` into the stream arrived; older entries go."""
        sample = int(seconds * SAMPLE_RATE)
        while len(self._arrivals) > 1 and self._arrivals[0][0] < sample:
            self._arrivals.popleft()
        return self._arrivals[0][1] if self._arrivals else None

    def close(self) -> None:
        metrics.LIVE_STREAMS.dec()
        self.decoder.close()
        if self.recording is not None:
            self.recording.close()


def message(event: LiveEvent) -> dict[str, Any]:
    """An event as the socket sends it."""
    body: dict[str, Any] = {"type": event.kind, "time": round(event.time, 3)}
    if event.segment is not None:
        body["segment"] = segment_body(event.segment)
    if event.kind == "partial" and event.segment is not None:
        body["stable_words"] = event.stable
    return body


def segment_body(segment: Segment) -> dict[str, Any]:
    return {
        "id": segment.id, "start": round(segment.start, 3), "end": round(segment.end, 3),
        "text": segment.text,
        "confidence": None if segment.confidence is None else round(segment.confidence, 4),
        "words": [{"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3),
                   "probability": None if w.probability is None else round(w.probability, 4),
                   "leading_space": w.leading_space} for w in segment.words],
    }
