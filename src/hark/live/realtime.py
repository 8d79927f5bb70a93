"""OpenAI's Realtime transcription protocol over Hark's live engine, free of any web
framework: client events in, server events out.

Both shapes of the session are understood: the transcription session of the beta
(`transcription_session.update` with `input_audio_format`,
`input_audio_transcription`, `turn_detection`) and the session of type
`transcription` (`session.update` with `audio.input.format / transcription /
turn_detection`). Audio arrives base64-encoded in `input_audio_buffer.append`,
16-bit PCM at 24 kHz unless the session says otherwise.

With server VAD (the default) an item is one utterance: `speech_started`, then
`conversation.item.input_audio_transcription.delta` as words become stable (deltas are
never taken back), then `speech_stopped`, `committed` and `completed` with the whole
text. With `turn_detection: null` the client's `input_audio_buffer.commit` ends an item.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hark import metrics
from hark.errors import HarkError
from hark.pipeline.audio import SAMPLE_RATE
from hark.pipeline.engines.base import Engine
from hark.pipeline.live import LiveEvent, LiveOptions, LiveTranscriber
from hark.pipeline.options import TranscribeOptions
from hark.pipeline.pcm import SAMPLE_RATES, Pcm16Decoder
from hark.pipeline.transcript import Word, join_words

log = logging.getLogger(__name__)

OPENAI_RATE = 24000
Event = dict[str, Any]


def event_id() -> str:
    return f"event_{secrets.token_hex(12)}"


def error_event(message: str, *, code: str, param: str | None = None,
                client_event: str | None = None) -> Event:
    return {"type": "error", "event_id": event_id(),
            "error": {"type": "invalid_request_error", "code": code, "message": message,
                      "param": param, "event_id": client_event}}


@dataclass
class SessionConfig:
    model: str | None = None  # the name the client gave; mapped by the caller
    language: str | None = None
    prompt: str | None = None
    sample_rate: int = OPENAI_RATE
    server_vad: bool = True
    threshold: float = 0.5
    silence_ms: int = 500
    # "session" (of type transcription) or "transcription_session" (the beta's)
    shape: str = "session"

    def describe(self) -> Event:
        transcription = {"model": self.model or "whisper-1", "language": self.language,
                         "prompt": self.prompt or ""}
        turns = {"type": "server_vad", "threshold": self.threshold,
                 "silence_duration_ms": self.silence_ms} if self.server_vad else None
        if self.shape == "session":
            return {"type": "transcription", "audio": {"input": {
                "format": {"type": "audio/pcm", "rate": self.sample_rate},
                "transcription": transcription, "turn_detection": turns}}}
        return {"object": "realtime.transcription_session", "input_audio_format": "pcm16",
                "input_audio_transcription": transcription, "turn_detection": turns}


class ConfigError(HarkError):
    code = "invalid_value"


class CommitEmptyError(HarkError):
    code = "input_audio_buffer_commit_empty"


def parse_session(shape: str, body: Any, current: SessionConfig) -> SessionConfig:
    """The session after an update; ConfigError names the parameter at fault."""
    if not isinstance(body, dict):
        raise ConfigError("session must be an object", field="session")
    new = SessionConfig(**{**current.__dict__, "shape": shape})
    if shape == "session":
        audio_in = (body.get("audio") or {}).get("input") or {}
        fmt = audio_in.get("format")
        if fmt is not None:
            if not isinstance(fmt, dict) or fmt.get("type") != "audio/pcm":
                raise ConfigError("Only audio/pcm input is supported",
                                  field="session.audio.input.format")
            rate = fmt.get("rate", OPENAI_RATE)
            if rate not in SAMPLE_RATES:
                raise ConfigError(f"Unsupported rate {rate!r}",
                                  field="session.audio.input.format.rate")
            new.sample_rate = int(rate)
        transcription = audio_in.get("transcription")
        turns_given, turns = "turn_detection" in audio_in, audio_in.get("turn_detection")
    else:
        fmt = body.get("input_audio_format")
        if fmt is not None and fmt != "pcm16":
            raise ConfigError("Only pcm16 input is supported", field="input_audio_format")
        transcription = body.get("input_audio_transcription")
        turns_given, turns = "turn_detection" in body, body.get("turn_detection")
    if transcription is not None:
        if not isinstance(transcription, dict):
            raise ConfigError("transcription must be an object", field="transcription")
        for name in ("model", "language", "prompt"):
            value = transcription.get(name)
            if value is not None and (not isinstance(value, str) or len(value) > 2000):
                raise ConfigError(f"{name} must be a string", field=f"transcription.{name}")
        new.model = transcription.get("model") or new.model
        new.language = transcription.get("language") or None
        new.prompt = transcription.get("prompt") or None
    if turns_given:
        if turns is None:
            new.server_vad = False
        elif not isinstance(turns, dict) or turns.get("type", "server_vad") != "server_vad":
            raise ConfigError("turn_detection must be server_vad or null",
                              field="turn_detection")
        else:
            new.server_vad = True
            threshold = turns.get("threshold", new.threshold)
            silence = turns.get("silence_duration_ms", new.silence_ms)
            if not isinstance(threshold, int | float) or not 0 < threshold < 1:
                raise ConfigError("threshold must be between 0 and 1",
                                  field="turn_detection.threshold")
            if not isinstance(silence, int) or not 100 <= silence <= 10_000:
                raise ConfigError("silence_duration_ms must be 100 to 10000",
                                  field="turn_detection.silence_duration_ms")
            new.threshold, new.silence_ms = float(threshold), silence
    return new


@dataclass
class _Item:
    id: str = field(default_factory=lambda: f"item_{secrets.token_hex(12)}")
    words: list[Word] = field(default_factory=list)  # finals of this item
    delivered: str = ""  # text already sent as deltas


class RealtimeSession:
    """One connection's state. `engine_for(model name)` lends the engine (loading it)."""

    def __init__(self, engine_for: Callable[[str | None, str | None], Engine],
                 max_frame_bytes: int) -> None:
        self._engine_for = engine_for
        self.max_frame_bytes = max_frame_bytes
        self.config = SessionConfig()
        self._transcriber: LiveTranscriber | None = None
        self._decoder: Pcm16Decoder | None = None
        self._item: _Item | None = None
        self._previous_item: str | None = None

    def created(self) -> Event:
        """The first event: the session as it stands (in the shape of today's API)."""
        return {"type": "session.created", "event_id": event_id(),
                "session": SessionConfig(shape="session").describe()}

    def handle(self, event: Any) -> list[Event]:
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return [error_event("Events are JSON objects with a type", code="invalid_event")]
        kind, client_event = event["type"], event.get("event_id")
        try:
            if kind in ("session.update", "transcription_session.update"):
                return self._update(kind.split(".")[0], event.get("session"))
            if kind == "input_audio_buffer.append":
                return self._append(event.get("audio"))
            if kind == "input_audio_buffer.commit":
                return self._commit()
            if kind == "input_audio_buffer.clear":
                if self._transcriber is not None:
                    self._transcriber.clear()
                self._item = None
                return [{"type": "input_audio_buffer.cleared", "event_id": event_id()}]
        except HarkError as exc:
            param = exc.details.get("field")
            return [error_event(exc.message, code=exc.code.lower(), client_event=client_event,
                                param=str(param) if param else None)]
        except Exception:
            log.exception("realtime transcription failed")
            return self._failed()
        return [error_event(f"Unknown event type {kind[:80]!r}", code="unknown_event",
                            client_event=client_event)]

    def _failed(self) -> list[Event]:
        """Recognition broke: the item in progress fails, its audio is dropped, and the
        session goes on with the audio that comes next."""
        if self._transcriber is not None:
            self._transcriber.clear()
        item, self._item = self._item, None
        error = {"type": "server_error", "code": "recognition_failed",
                 "message": "Recognition failed", "param": None}
        if item is None:
            return [{"type": "error", "event_id": event_id(), "error": error}]
        return [{"type": "conversation.item.input_audio_transcription.failed",
                 "event_id": event_id(), "item_id": item.id, "content_index": 0,
                 "error": error}]

    def _update(self, shape: str, body: Any) -> list[Event]:
        if self._transcriber is not None:
            raise ConfigError("The session can change only before audio is sent",
                              field="session")
        self.config = parse_session(shape, body, self.config)
        return [{"type": f"{shape}.updated", "event_id": event_id(),
                 "session": self.config.describe()}]

    def _append(self, audio: Any) -> list[Event]:
        if not isinstance(audio, str):
            raise ConfigError("audio must be base64 text", field="audio")
        if len(audio) > self.max_frame_bytes:
            raise ConfigError(f"audio must be at most {self.max_frame_bytes} characters",
                              field="audio")
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError("audio is not valid base64", field="audio") from None
        transcriber = self._start()
        assert self._decoder is not None
        started = time.monotonic()
        samples = self._decoder.decode(data)
        events = transcriber.feed(samples)
        model = transcriber.engine.name
        metrics.LIVE_AUDIO_SECONDS.labels(model).inc(samples.shape[0] / SAMPLE_RATE)
        metrics.LIVE_WORK_SECONDS.labels(model).inc(time.monotonic() - started)
        return self._translate(events)

    def _commit(self) -> list[Event]:
        transcriber = self._transcriber
        if transcriber is None or (self._item is None and not transcriber.buffered_seconds):
            raise CommitEmptyError("Nothing to commit: the buffer holds no speech")
        assert self._decoder is not None
        events = self._translate(transcriber.feed(self._decoder.decode(b"", last=True)))
        events += self._translate(transcriber.finish())
        if self._item is not None:  # manual turns: the commit ends the item
            events += self._complete(self._item)
        return events

    def _start(self) -> LiveTranscriber:
        if self._transcriber is None:
            engine = self._engine_for(self.config.model, self.config.language)
            options = TranscribeOptions(model=engine.name, language=self.config.language,
                                        initial_prompt=self.config.prompt)
            self._transcriber = LiveTranscriber(engine, options, LiveOptions(
                threshold=self.config.threshold, end_silence_ms=self.config.silence_ms))
            self._decoder = Pcm16Decoder(self.config.sample_rate)
        return self._transcriber

    def _translate(self, events: list[LiveEvent]) -> list[Event]:
        out: list[Event] = []
        for event in events:
            if event.kind == "speech_started":
                self._item = self._item or _Item()
                if self.config.server_vad:
                    out.append({"type": "input_audio_buffer.speech_started",
                                "event_id": event_id(), "item_id": self._item.id,
                                "audio_start_ms": int(event.time * 1000)})
            elif event.kind in ("partial", "final") and event.segment is not None:
                item = self._item = self._item or _Item()
                if event.kind == "final":
                    item.words += event.segment.words
                    out += self._delta(item, join_words(item.words))
                else:
                    stable = event.segment.words[:event.stable]
                    out += self._delta(item, join_words(item.words + stable))
            elif event.kind == "speech_stopped" and self._item is not None and \
                    self.config.server_vad:
                item = self._item
                out.append({"type": "input_audio_buffer.speech_stopped",
                            "event_id": event_id(), "item_id": item.id,
                            "audio_end_ms": int(event.time * 1000)})
                out += self._complete(item)
        return out

    def _delta(self, item: _Item, text: str) -> list[Event]:
        if not text.startswith(item.delivered) or len(text) == len(item.delivered):
            return []
        delta, item.delivered = text[len(item.delivered):], text
        return [{"type": "conversation.item.input_audio_transcription.delta",
                 "event_id": event_id(), "item_id": item.id, "content_index": 0,
                 "delta": delta}]

    def _complete(self, item: _Item) -> list[Event]:
        self._item = None
        previous, self._previous_item = self._previous_item, item.id
        return [
            {"type": "input_audio_buffer.committed", "event_id": event_id(),
             "item_id": item.id, "previous_item_id": previous},
            {"type": "conversation.item.input_audio_transcription.completed",
             "event_id": event_id(), "item_id": item.id, "content_index": 0,
             "transcript": join_words(item.words)},
        ]
