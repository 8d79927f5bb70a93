"""`WS /api/v1/live` end to end in the app: PCM16 frames of a real recording in, real
Whisper (tiny.en) words out; and every way a client can get it wrong."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from hark.evaluation.asr import read_manifest
from hark.evaluation.scoring import count_errors
from hark.pipeline.audio import SAMPLE_RATE, load_audio
from hark.pipeline.pcm import Pcm16Decoder
from tests.support.encode import encode
from tests.support.service import Service, bearer, service_fixture

pytestmark = [pytest.mark.corpus, pytest.mark.slow]

LIVE = "/api/v1/live"
svc = service_fixture("live", workers=False, allow_anonymous=False,
                      live_max_streams=2, live_max_streams_per_tenant=1,
                      live_idle_seconds=2.0, live_max_frame_bytes=64_000)


@pytest.fixture(scope="module")
def alpha(svc: Service) -> str:
    return svc.create_key("alpha")


@pytest.fixture(scope="module")
def beta(svc: Service) -> str:
    return svc.create_key("beta")


@pytest.fixture(scope="module")
def speech(corpus_dir: Path) -> tuple[np.ndarray, str]:
    """A speech at 16 kHz and its reference text."""
    item = next(i for i in read_manifest(corpus_dir / "asr" / "manifest.jsonl", {"en"})
                if i.id == "jfk_inaugural_1961")
    return load_audio(item.audio)[1], item.text


def pcm16(samples: np.ndarray) -> bytes:
    data: bytes = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    return data


def open_streams(svc: Service) -> dict[str, int]:
    """Streams open per tenant (the slots exist once a stream got that far)."""
    slots = getattr(svc.app.state, "live_slots", None)
    return dict(slots.active) if slots is not None else {}


def metric(svc: Service, name: str) -> float:
    """The sum of a metric's samples in /metrics (0 when absent)."""
    text = svc.client.get("/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def receive_until_closed(socket: WebSocketTestSession) -> tuple[list[dict[str, Any]], int]:
    messages: list[dict[str, Any]] = []
    with pytest.raises(WebSocketDisconnect) as closed:
        while True:
            messages.append(socket.receive_json())
    return messages, closed.value.code


def stream_speech(socket: WebSocketTestSession, audio: bytes, frame_bytes: int) -> None:
    for start in range(0, len(audio), frame_bytes):
        socket.send_bytes(audio[start:start + frame_bytes])
    socket.send_text(json.dumps({"type": "stop"}))


def test_a_speech_streamed_over_the_socket(svc: Service, alpha: str,
                                           speech: tuple[np.ndarray, str]) -> None:
    # OpenAI's rate: the server resamples (16 kHz goes straight through, as in the
    # saved-stream test below).
    rate = 24000
    audio, reference = speech
    finals_before = metric(svc, "hark_live_final_latency_seconds_count")
    if rate != SAMPLE_RATE:
        audio = soxr.resample(audio, SAMPLE_RATE, rate).astype(np.float32)
    with svc.client.websocket_connect(f"{LIVE}?language=en&sample_rate={rate}",
                                      headers=bearer(alpha)) as socket:
        ready = socket.receive_json()
        assert ready["type"] == "ready" and ready["sample_rate"] == rate
        assert "tiny.en" in ready["model"]
        # Odd-sized frames: samples split between frames must be put back together.
        stream_speech(socket, pcm16(audio), frame_bytes=3201)
        messages, code = receive_until_closed(socket)
    assert code == 1000
    kinds = [m["type"] for m in messages]
    assert kinds[-1] == "closed" and messages[-1]["reason"] == "stopped"
    assert abs(messages[-1]["seconds"] - len(audio) / rate) < 0.1
    assert "partial" in kinds and "speech_started" in kinds
    finals = [m["segment"] for m in messages if m["type"] == "final"]
    text = " ".join(f["text"] for f in finals)
    assert count_errors(reference, text, "en").rate <= 0.15, text
    for final in finals:
        assert final["text"] == "".join(
            (" " if w["leading_space"] and i else "") + w["word"]
            for i, w in enumerate(final["words"]))
        assert final["start"] <= final["end"] <= len(audio) / rate + 0.1
    assert open_streams(svc) == {}
    # Every final's latency was observed; no stream is counted open any more.
    assert metric(svc, "hark_live_final_latency_seconds_count") == finals_before + len(finals)
    assert metric(svc, "hark_live_streams") == 0


def test_a_browser_recording_streamed_as_webm_opus(svc: Service, alpha: str,
                                                  speech: tuple[np.ndarray, str]) -> None:
    audio, reference = speech
    webm = encode(audio, "webm")
    with svc.client.websocket_connect(f"{LIVE}?language=en&encoding=container&save=true",
                                      headers=bearer(alpha)) as socket:
        assert socket.receive_json()["type"] == "ready"
        # MediaRecorder's chunks every 250 ms are about this size at Opus' 32 kb/s.
        stream_speech(socket, webm, frame_bytes=1000)
        messages, code = receive_until_closed(socket)
    assert code == 1000
    text = " ".join(m["segment"]["text"] for m in messages if m["type"] == "final")
    assert count_errors(reference, text, "en").rate <= 0.15, text
    assert "partial" in [m["type"] for m in messages]
    closed = messages[-1]
    assert abs(closed["seconds"] - len(audio) / SAMPLE_RATE) < 0.1
    # The stored recording is the decoded audio, as a WAV file.
    job = svc.job(closed["job_id"], headers=bearer(alpha))
    assert abs(job["duration"] - len(audio) / SAMPLE_RATE) < 0.1


def test_a_stream_that_is_not_audio_is_refused(svc: Service, alpha: str) -> None:
    with svc.client.websocket_connect(f"{LIVE}?encoding=container",
                                      headers=bearer(alpha)) as socket:
        assert socket.receive_json()["type"] == "ready"
        socket.send_bytes(b"<html><script>alert(1)</script></html>" * 100)
        socket.send_text(json.dumps({"type": "stop"}))
        messages, code = receive_until_closed(socket)
    assert code == 4400 and messages[-1]["error_code"] == "UNSUPPORTED_MEDIA"
    assert open_streams(svc) == {}
    assert not [t for t in threading.enumerate() if t.name == "hark-stream-decode"]


def test_no_key_no_stream(svc: Service) -> None:
    with pytest.raises(WebSocketDisconnect) as closed, \
            svc.client.websocket_connect(LIVE) as socket:
        socket.receive_json()
    assert closed.value.code == 4401


@pytest.mark.parametrize(("query", "field"), [
    ("sample_rate=7", "sample_rate"),
    ("sample_rate=abc", "sample_rate"),
    ("encoding=opus", "encoding"),
    ("model=/etc", "model"),
    ("model=" + "x" * 300, "model"),
    ("colour=blue", "colour"),
    ("language=klingon", "language"),
])
def test_bad_options_are_refused_with_the_field(svc: Service, alpha: str, query: str,
                                                field: str) -> None:
    with svc.client.websocket_connect(f"{LIVE}?{query}", headers=bearer(alpha)) as socket:
        messages, code = receive_until_closed(socket)
    assert code == 4400
    assert messages[0]["type"] == "error" and messages[0]["details"]["field"] == field
    assert open_streams(svc) == {}


def test_a_bad_text_message_and_an_oversized_frame_end_the_stream(svc: Service,
                                                                  alpha: str) -> None:
    with svc.client.websocket_connect(LIVE, headers=bearer(alpha)) as socket:
        assert socket.receive_json()["type"] == "ready"
        socket.send_text("hello")
        messages, code = receive_until_closed(socket)
    assert code == 4400 and messages[0]["error_code"] == "INVALID_REQUEST"
    with svc.client.websocket_connect(LIVE, headers=bearer(alpha)) as socket:
        assert socket.receive_json()["type"] == "ready"
        socket.send_bytes(b"\0" * 64_002)
        messages, code = receive_until_closed(socket)
    assert code == 1009 and messages[0]["error_code"] == "FRAME_TOO_LARGE"
    assert open_streams(svc) == {}


def test_a_silent_client_is_closed_and_its_slot_freed(svc: Service, alpha: str) -> None:
    with svc.client.websocket_connect(LIVE, headers=bearer(alpha)) as socket:
        assert socket.receive_json()["type"] == "ready"
        socket.send_bytes(pcm16(np.zeros(SAMPLE_RATE // 2, np.float32)))
        messages, code = receive_until_closed(socket)  # then nothing for 2 s
    assert code == 4408 and messages[-1]["error_code"] == "LIVE_IDLE"
    assert open_streams(svc) == {}


def test_streams_are_limited_per_tenant_and_per_server(svc: Service, alpha: str,
                                                       beta: str) -> None:
    gamma = svc.create_key("gamma")
    with svc.client.websocket_connect(LIVE, headers=bearer(alpha)) as first:
        assert first.receive_json()["type"] == "ready"
        # The tenant's one stream is in use.
        with svc.client.websocket_connect(LIVE, headers=bearer(alpha)) as second:
            messages, code = receive_until_closed(second)
        assert code == 4429 and messages[0]["error_code"] == "LIVE_STREAMS_FULL"
        with svc.client.websocket_connect(LIVE, headers=bearer(beta)) as other:
            assert other.receive_json()["type"] == "ready"
            # Two streams run: the server is full for every tenant.
            with svc.client.websocket_connect(LIVE, headers=bearer(gamma)) as third:
                messages, code = receive_until_closed(third)
            assert code == 4429
            other.send_text(json.dumps({"type": "stop"}))
            assert receive_until_closed(other)[1] == 1000
        first.send_text(json.dumps({"type": "stop"}))
        assert receive_until_closed(first)[1] == 1000
    assert open_streams(svc) == {}


def test_resampling_does_not_depend_on_frame_boundaries() -> None:
    rng = np.random.default_rng(9)
    audio = rng.normal(0, 0.1, 24000 * 2).astype(np.float32)
    data = pcm16(audio)
    whole = Pcm16Decoder(24000)
    at_once = np.concatenate([whole.decode(data), whole.decode(b"", last=True)])
    pieces = Pcm16Decoder(24000)
    cuts = sorted(rng.integers(0, len(data), 40).tolist())
    parts = [pieces.decode(data[a:b]) for a, b in zip([0, *cuts], [*cuts, len(data)],
                                                       strict=True)]
    in_pieces = np.concatenate([*parts, pieces.decode(b"", last=True)])
    assert abs(at_once.shape[0] - 32000) <= 1
    np.testing.assert_allclose(in_pieces, at_once, atol=1e-5)


def test_a_saved_stream_becomes_a_job(svc: Service, alpha: str,
                                      speech: tuple[np.ndarray, str]) -> None:
    audio, _ = speech
    with svc.client.websocket_connect(f"{LIVE}?language=en&save=true&diarize=true",
                                      headers=bearer(alpha)) as socket:
        assert socket.receive_json()["type"] == "ready"
        stream_speech(socket, pcm16(audio), frame_bytes=32000)
        messages, code = receive_until_closed(socket)
    assert code == 1000
    closed = messages[-1]
    assert closed["type"] == "closed" and closed["job_id"]
    job = svc.job(closed["job_id"], headers=bearer(alpha))
    # The whole recording is queued for the offline pipeline, with the asked options.
    assert job["filename"].startswith("live-") and job["filename"].endswith(".wav")
    assert abs(job["duration"] - len(audio) / SAMPLE_RATE) < 0.1
    assert job["options"]["diarize"] is True and job["options"]["language"] == "en"
    media = svc.client.get(f"/api/v1/jobs/{job['id']}/media", headers=bearer(alpha))
    assert media.status_code == 200
    stored = np.frombuffer(media.content[44:], dtype="<i2")
    assert abs(stored.shape[0] - len(audio)) < 512
    # Another tenant cannot see it.
    other = svc.client.get(f"/api/v1/jobs/{job['id']}", headers=bearer(svc.create_key("zeta")))
    assert other.status_code == 404


def test_diarize_needs_save(svc: Service, alpha: str) -> None:
    with svc.client.websocket_connect(f"{LIVE}?diarize=true", headers=bearer(alpha)) as socket:
        messages, code = receive_until_closed(socket)
    assert code == 4400 and messages[0]["details"]["field"] == "diarize"
