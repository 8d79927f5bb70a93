"""`WS /v1/realtime?intent=transcription` driven by the official `openai` SDK's realtime
client, unchanged, against a real server: 24 kHz PCM16 of a corpus speech in, deltas
and completed transcripts out."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soxr
from openai import OpenAI

from hark.evaluation.scoring import count_errors
from hark.pipeline.audio import SAMPLE_RATE, load_audio
from tests.support.common import wait_for
from tests.support.openai_client import LiveServer, live_server
from tests.support.service import service_settings

pytestmark = [pytest.mark.corpus, pytest.mark.slow]

REFERENCE = ("and so my fellow americans ask not what your country can do for you ask what "
             "you can do for your country")
TRANSCRIPTION = {"model": "whisper-1", "language": "en"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = service_settings(tmp_path_factory.mktemp("realtime"), allow_anonymous=False,
                                live_idle_seconds=2.0)
    with live_server(settings, workers=False) as live:
        yield live


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[OpenAI]:
    with OpenAI(base_url=server.openai_url, api_key=server.create_key("rt"),
                max_retries=0) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def speech_24k(corpus_dir: Path) -> bytes:
    audio = load_audio(corpus_dir / "asr" / "jfk_inaugural_1961.flac")[1]
    resampled = soxr.resample(audio, SAMPLE_RATE, 24000)
    data: bytes = (np.clip(resampled, -1, 1) * 32767).astype("<i2").tobytes()
    return data


def events_until(connection: Any, done: int) -> list[Any]:
    """Server events until `done` transcripts have completed (or an error)."""
    events: list[Any] = []
    completed = 0
    for event in connection:
        events.append(event)
        if event.type == "conversation.item.input_audio_transcription.completed":
            completed += 1
        if completed == done or event.type == "error":
            break
    return events


def metric(server: LiveServer, name: str) -> float:
    """The sum of a metric's samples in /metrics (0 when absent)."""
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith((name + " ", name + "{")))


def send_audio(connection: Any, data: bytes, piece: int = 9600) -> None:
    for start in range(0, len(data), piece):
        connection.input_audio_buffer.append(
            audio=base64.b64encode(data[start:start + piece]).decode())


@pytest.mark.parametrize("shape", ["session", "transcription_session"])
def test_server_vad_session_through_the_sdk(client: OpenAI, server: LiveServer,
                                            speech_24k: bytes, shape: str) -> None:
    heard_before = metric(server, "hark_live_audio_seconds_total")
    streams_before = metric(server, "hark_live_streams")
    with client.realtime.connect(extra_query={"intent": "transcription"}) as connection:
        if shape == "session":
            connection.session.update(session={  # type: ignore[misc, arg-type]
                "type": "transcription", "audio": {"input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": TRANSCRIPTION, "turn_detection": {"type": "server_vad"}}}})
        else:
            connection.send({"type": "transcription_session.update", "session": {  # type: ignore[arg-type]
                "input_audio_format": "pcm16", "input_audio_transcription": TRANSCRIPTION,
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}})
        send_audio(connection, speech_24k)
        # Silence after the speech ends the last utterance as a listener would hear it.
        send_audio(connection, bytes(24000 * 2))
        events = events_until(connection, done=99)  # read until the idle limit below
    types = [e.type for e in events]
    assert types[0] == "session.created" and types[1] == f"{shape}.updated", events[:3]
    completed = [e for e in events
                 if e.type == "conversation.item.input_audio_transcription.completed"]
    assert completed, types
    text = " ".join(e.transcript for e in completed)
    assert count_errors(REFERENCE, text, "en").rate <= 0.15, text
    for item in completed:
        mine = [e for e in events if getattr(e, "item_id", None) == item.item_id]
        kinds = [e.type for e in mine]
        assert kinds[0] == "input_audio_buffer.speech_started"
        assert kinds.index("input_audio_buffer.speech_stopped") < kinds.index(
            "input_audio_buffer.committed") < kinds.index(
            "conversation.item.input_audio_transcription.completed")
        # Deltas only ever add: together they are the completed text.
        deltas = "".join(e.delta for e in mine
                         if e.type == "conversation.item.input_audio_transcription.delta")
        assert item.transcript.startswith(deltas), (deltas, item.transcript)
    assert types[-1] == "error" and events[-1].error.code == "idle_timeout", events[-1]
    # Counted like Hark's own live streams: the audio heard, and the stream once closed.
    heard = metric(server, "hark_live_audio_seconds_total") - heard_before
    assert heard == pytest.approx(len(speech_24k) / 2 / 24000 + 1.0, abs=0.1)
    assert wait_for(lambda: metric(server, "hark_live_streams") == streams_before, 10)


def test_manual_turns_commit_one_item(client: OpenAI, speech_24k: bytes) -> None:
    with client.realtime.connect(extra_query={"intent": "transcription"}) as connection:
        connection.send({"type": "transcription_session.update",  # type: ignore[arg-type]
                         "session": {"input_audio_transcription": TRANSCRIPTION,
                                     "turn_detection": None}})
        send_audio(connection, speech_24k)
        connection.input_audio_buffer.commit()
        events = events_until(connection, done=1)
    types = [e.type for e in events]
    assert "input_audio_buffer.speech_started" not in types
    assert types[-2:] == ["input_audio_buffer.committed",
                          "conversation.item.input_audio_transcription.completed"]
    assert count_errors(REFERENCE, events[-1].transcript, "en").rate <= 0.15


@pytest.mark.parametrize(("event", "code"), [
    ({"type": "input_audio_buffer.append", "audio": "not base64!"}, "invalid_value"),
    ({"type": "transcription_session.update",
      "session": {"input_audio_format": "g711_ulaw"}}, "invalid_value"),
    ({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": 7}}}}}, "invalid_value"),
    ({"type": "response.create"}, "unknown_event"),
    ({"type": "input_audio_buffer.commit"}, "input_audio_buffer_commit_empty"),
])
def test_bad_events_get_an_error_and_the_session_goes_on(client: OpenAI, event: dict[str, Any],
                                                         code: str) -> None:
    with client.realtime.connect(extra_query={"intent": "transcription"}) as connection:
        connection.send(event)  # type: ignore[arg-type]  # deliberately malformed
        connection.send({"type": "input_audio_buffer.clear"})
        first = next(e for e in connection if e.type != "session.created")
        assert first.type == "error" and first.error.code == code, first
        assert next(iter(connection)).type == "input_audio_buffer.cleared"


def test_other_intents_and_bad_keys_are_refused(server: LiveServer) -> None:
    with OpenAI(base_url=server.openai_url, api_key="hark_not-a-key", max_retries=0) as sdk, \
            pytest.raises(Exception) as refused, \
            sdk.realtime.connect(extra_query={"intent": "transcription"}) as connection:
        next(iter(connection))
    assert "4401" in str(refused.value) or "key" in str(refused.value).lower()
    with OpenAI(base_url=server.openai_url, api_key=server.create_key("rt2"),
                max_retries=0) as sdk, sdk.realtime.connect(model="gpt-realtime") as connection:
        event = next(iter(connection))
        assert event.type == "error" and event.error.code == "unsupported_intent"
