"""The OpenAI-compatible audio API, driven by the official `openai` package.

The real app runs behind uvicorn (the SDK needs a real HTTP server) with one spawned
worker process; requests go through the sync and the async client exactly as an
application written against OpenAI would send them, and through raw multipart the way
curl sends it. Every request is a job of the job service, which the tests check
through the job API. A second app without workers keeps its jobs queued, for the
queue limit and for clients that leave while their job waits.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import srt
import webvtt
from openai import AsyncOpenAI, OpenAI
from openai.types.audio import Transcription, Translation

from hark.errors import UploadTooLargeError
from hark.openai_api import endpoints
from hark.openai_api.languages import LANGUAGE_NAMES
from hark.openai_api.schemas import map_model
from hark.pipeline.audio import SAMPLE_RATE
from hark.pipeline.languages import LANGUAGES
from tests.support.common import wait_for
from tests.support.conversations import load_fixture
from tests.support.openai_client import LiveServer, live_server
from tests.support.service import (
    bearer,
    service_settings,
    sine_wav,
    speech_wav,
    tree,
    video_without_audio,
    wav_bytes,
)

UPLOAD_LIMIT = 1_000_000
TINY = "tiny-test"
SEGMENT_KEYS = {"id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob",
                "compression_ratio", "no_speech_prob"}
ERROR_KEYS = {"message", "type", "param", "code"}
CLIP_TEXT_SECONDS = 4.0  # the first turn of two_voices: one voice, one segment


# --- servers and clients ----------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           tiny_whisper_dir: Path) -> Iterator[LiveServer]:
    settings = service_settings(tmp_path_factory.mktemp("openai"), allow_anonymous=False,
                                max_upload_bytes=UPLOAD_LIMIT, max_audio_seconds=120.0)
    # An installed Whisper model under a name of its own: the default stays pocketsphinx.
    shutil.copytree(tiny_whisper_dir, settings.models_path / TINY)
    with live_server(settings) as live:
        yield live


@pytest.fixture(scope="module")
def key(server: LiveServer) -> str:
    return server.create_key("openai-tenant")


@pytest.fixture(scope="module")
def client(server: LiveServer, key: str) -> Iterator[OpenAI]:
    with OpenAI(base_url=server.openai_url, api_key=key, max_retries=0, timeout=120) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def idle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """An app without workers: its jobs stay queued."""
    settings = service_settings(tmp_path_factory.mktemp("openai-idle"), allow_anonymous=False,
                                max_queued_jobs=2)
    with live_server(settings, workers=False) as live:
        yield live


def jobs_api(server: LiveServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers=bearer(key), trust_env=False,
                        timeout=30)


def latest_job(server: LiveServer, key: str) -> dict[str, Any]:
    with jobs_api(server, key) as api:
        job: dict[str, Any] = api.get("/api/v1/jobs", params={"limit": 1}).json()["items"][0]
        return job


def media(server: LiveServer) -> set[str]:
    return tree(server.settings.storage_path / "media")


def clip(seconds: float = CLIP_TEXT_SECONDS, start: float = 0.0) -> tuple[str, bytes, str]:
    return ("clip.wav", speech_wav(seconds, start), "audio/wav")


def data_url(audio: np.ndarray) -> str:
    return "data:audio/wav;base64," + base64.b64encode(wav_bytes(audio)).decode()


def voice(name: str, speaker: str, *turns: int) -> np.ndarray:
    """`turns` of one voice of a fixture conversation, joined with short pauses."""
    conversation = load_fixture(name)
    own = [t for t in conversation.turns if t.speaker == speaker]
    pause = np.zeros(SAMPLE_RATE // 3, dtype=np.float32)
    pieces: list[np.ndarray] = []
    for index in turns:
        turn = own[index]
        pieces += [conversation.audio[int(turn.start * SAMPLE_RATE):
                                      int(turn.end * SAMPLE_RATE)], pause]
    return np.concatenate(pieces)


def error_of(exc: openai.APIStatusError) -> dict[str, Any]:
    """The error object of an OpenAI-shaped error response, checked for its keys."""
    body = exc.response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == ERROR_KEYS, body
    assert body["error"]["message"], body
    error: dict[str, Any] = body["error"]
    return error


# --- models -------------------------------------------------------------------------------

def test_models_are_listed_and_retrieved(client: OpenAI) -> None:
    page = client.models.list()
    ids = [m.id for m in page.data]
    for name in ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe",
                 "gpt-4o-transcribe-diarize", "pocketsphinx", TINY,
                 "tiny.en", "base"):  # the last two from their model packages
        assert name in ids
    assert all(m.object == "model" and m.owned_by == "hark" and m.created > 0
               for m in page.data)
    assert client.models.retrieve("whisper-1").id == "whisper-1"
    # Names the transcription endpoint accepts without listing them.
    for name in ("gpt-4o-mini-transcribe-2025-12-15", "pocketsphinx-diarize"):
        assert client.models.retrieve(name).id == name
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert error_of(caught.value)["code"] == "model_not_found"


# --- response formats ----------------------------------------------------------------------

def test_json_is_a_job_of_the_job_service(server: LiveServer, key: str, client: OpenAI) -> None:
    result = client.audio.transcriptions.create(model="whisper-1", file=clip())
    assert isinstance(result, Transcription)
    assert len(result.text.split()) >= 5
    assert result.usage is not None and result.usage.type == "duration"
    assert result.usage.seconds == pytest.approx(CLIP_TEXT_SECONDS, abs=0.01)
    assert result.logprobs is None  # not asked for
    # The request ran as a job, on the default model, and its stored result is what came back.
    job = latest_job(server, key)
    assert job["status"] == "completed" and job["model"] == "faster-whisper/tiny.en"
    assert job["filename"] == "clip.wav"
    assert job["options"]["word_timestamps"] is False  # nothing used words
    with jobs_api(server, key) as api:
        stored = api.get(f"/api/v1/jobs/{job['id']}/result").json()
    assert stored["text"] == result.text


def test_text_srt_and_vtt_are_plain_bodies(client: OpenAI) -> None:
    text = client.audio.transcriptions.with_raw_response.create(
        model="gpt-4o-transcribe", file=clip(), response_format="text")
    assert text.headers["content-type"] == "text/plain; charset=utf-8"
    body = text.parse()
    assert isinstance(body, str) and body.endswith("\n") and "\n" not in body[:-1]
    words = body.split()

    raw_srt = client.audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=clip(), response_format="srt")
    assert raw_srt.headers["content-type"].startswith("application/x-subrip")
    cues = list(srt.parse(raw_srt.parse()))
    assert cues and " ".join(c.content for c in cues).split() == words
    assert all(c.start < c.end for c in cues)

    raw_vtt = client.audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=clip(), response_format="vtt")
    assert raw_vtt.headers["content-type"].startswith("text/vtt")
    vtt_text = raw_vtt.parse()
    assert vtt_text.startswith("WEBVTT")
    captions = webvtt.from_string(vtt_text).captions
    assert " ".join(c.text for c in captions).split() == words


@pytest.mark.parametrize(("granularities", "segments", "words"), [
    (None, True, False), (["word"], False, True), (["word", "segment"], True, True)])
def test_verbose_json_returns_what_the_granularities_ask(
    client: OpenAI, granularities: list[str] | None, segments: bool, words: bool,
) -> None:
    extra: dict[str, Any] = {} if granularities is None else \
        {"timestamp_granularities": granularities}
    result = client.audio.transcriptions.create(
        model="whisper-1", file=clip(), response_format="verbose_json", language="en",
        temperature=0.0, **extra)
    raw = result.model_dump(exclude_unset=True)
    assert raw["language"] == "english" and raw["duration"] == pytest.approx(4.0)
    assert raw["usage"] == {"type": "duration", "seconds": pytest.approx(4.0)}
    assert ("segments" in raw) is segments and ("words" in raw) is words
    if segments:
        assert result.segments
        for index, segment in enumerate(raw["segments"]):
            assert set(segment) == SEGMENT_KEYS
            assert segment["id"] == index and segment["start"] < segment["end"]
            assert segment["seek"] == round(segment["start"] * 100)
            assert segment["temperature"] == 0.0 and segment["tokens"] == []
            assert segment["avg_logprob"] < 0 and segment["compression_ratio"] > 0
        assert " ".join(s.text for s in result.segments) == result.text
    if words:
        assert result.words is not None
        assert [w.word for w in result.words] == result.text.split()
        assert all(set(w) == {"word", "start", "end"} for w in raw["words"])
        assert all(a.end <= b.start + 1e-6 for a, b in zip(result.words, result.words[1:],
                                                             strict=False))


def test_language_names_cover_every_language_code() -> None:
    assert set(LANGUAGE_NAMES) == LANGUAGES
    assert LANGUAGE_NAMES["en"] == "english" and LANGUAGE_NAMES["de"] == "german"


def test_logprobs_come_from_word_probabilities(client: OpenAI) -> None:
    result = client.audio.transcriptions.create(model="gpt-4o-transcribe", file=clip(),
                                                include=["logprobs"])
    assert result.logprobs is not None
    assert [p.token for p in result.logprobs] == result.text.split()
    assert all(p.logprob is not None and p.logprob <= 0 for p in result.logprobs)
    assert all(bytes(int(b) for b in p.bytes or []) == (p.token or "").encode()
               for p in result.logprobs)


# --- streaming ------------------------------------------------------------------------------

def test_stream_sends_deltas_then_done(client: OpenAI) -> None:
    stream = client.audio.transcriptions.create(
        model="gpt-4o-mini-transcribe", file=clip(10.0), stream=True, include=["logprobs"])
    events = list(stream)
    assert [e.type for e in events[:-1]] == ["transcript.text.delta"] * (len(events) - 1)
    assert len(events) >= 3  # one delta per segment, as the job produced them
    done = events[-1]
    assert done.type == "transcript.text.done"
    deltas = "".join(e.delta for e in events[:-1] if e.type == "transcript.text.delta")
    assert deltas == done.text
    assert done.usage is not None
    assert done.usage.model_dump(exclude_unset=True) == {"type": "duration",
                                                         "seconds": pytest.approx(10.0)}
    assert done.logprobs and [p.token for p in done.logprobs] == done.text.split()


def test_async_client_json_diarized_and_diarized_stream(client: OpenAI, key: str,
                                                        server: LiveServer) -> None:
    async def run() -> tuple[Any, Any, list[Any]]:
        async with AsyncOpenAI(base_url=server.openai_url, api_key=key, max_retries=0,
                               timeout=120) as sdk:
            plain = await sdk.audio.transcriptions.create(model="whisper-1", file=clip())
            diarized = await sdk.audio.transcriptions.create(
                model="gpt-4o-transcribe-diarize", file=clip(10.0),
                response_format="diarized_json")
            stream = await sdk.audio.transcriptions.create(
                model="gpt-4o-transcribe-diarize", file=clip(10.0),
                response_format="diarized_json", stream=True)
            return plain, diarized, [event async for event in stream]

    plain, diarized, events = asyncio.run(run())
    assert plain.text == client.audio.transcriptions.create(model="whisper-1",
                                                            file=clip()).text
    # Two voices: the first turn (0.5-3.6 s) and the third (8.3 s-) are one voice.
    assert diarized.task == "transcribe" and diarized.duration == pytest.approx(10.0)
    speakers = [s.speaker for s in diarized.segments]
    assert speakers[0] == "A" and "B" in speakers and set(speakers) == {"A", "B"}
    assert all(s.type == "transcript.text.segment" and s.id == f"seg_{i}"
               for i, s in enumerate(diarized.segments))
    assert diarized.segments[0].start < 1.0 and diarized.segments[-1].end > 8.5
    assert [s.speaker for s in diarized.segments if s.start > 4.0 and s.end < 8.2] == ["B"]

    kinds = [e.type for e in events]
    assert kinds[-1] == "transcript.text.done"
    assert set(kinds[:-1]) == {"transcript.text.delta", "transcript.text.segment"}
    streamed = [e for e in events if e.type == "transcript.text.segment"]
    assert [(s.speaker, s.text) for s in streamed] == \
        [(s.speaker, s.text) for s in diarized.segments]
    assert events[-1].text == diarized.text


def test_known_speakers_name_the_diarized_voices(server: LiveServer, key: str,
                                                  client: OpenAI) -> None:
    # Held-out clips: the same voices as two_voices, other sentences (three_voices).
    ada = data_url(voice("three_voices", "voice0", 1, 2))  # voice0 speaks at 4.4-7.8 s
    bea = data_url(voice("three_voices", "voice1", 0, 2))  # voice1 at 0.5-3.6 s and 8.3 s-
    result = client.audio.transcriptions.create(
        model="gpt-4o-transcribe-diarize", file=clip(10.0), response_format="diarized_json",
        known_speaker_names=["ada", "bea"], known_speaker_references=[ada, bea])
    assert [s.speaker for s in result.segments] == ["bea", "ada", "bea"]
    job = latest_job(server, key)
    # The job carries the voices; the job API shows their names only.
    assert job["options"]["known_speakers"] == [{"name": "ada"}, {"name": "bea"}]

    # Only one voice known: the other keeps a letter.
    partial = client.audio.transcriptions.create(
        model="whisper-1", file=clip(10.0), response_format="diarized_json",
        known_speaker_names=["ada"], known_speaker_references=[ada])
    assert [s.speaker for s in partial.segments] == ["A", "ada", "A"]


# --- translations and Whisper ---------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the SDK's own warning
def test_translations(client: OpenAI) -> None:
    result = client.audio.translations.create(model=TINY, file=clip())
    assert isinstance(result, Translation) and result.text
    assert set(result.model_dump(exclude_unset=True)) == {"text"}
    verbose = client.audio.translations.create(model=TINY, file=clip(),
                                               response_format="verbose_json")
    raw = verbose.model_dump(exclude_unset=True)
    assert raw["task"] == "translate" and raw["language"] == "english"
    assert raw["segments"] and all(set(s) == SEGMENT_KEYS for s in raw["segments"])
    # Whisper's own values for what the engine knows.
    assert all(s["no_speech_prob"] is not None for s in raw["segments"])
    text = client.audio.translations.create(model=TINY, file=clip(), response_format="text")
    assert text.strip() == result.text
    # The default model here is pocketsphinx, which cannot translate: the job fails.
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.translations.create(model="whisper-1", file=clip())
    assert error_of(caught.value)["param"] == "model"
    diarized: Any = "diarized_json"  # not a translation format (nor in the SDK's types)
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.translations.create(model=TINY, file=clip(), response_format=diarized)
    assert error_of(caught.value)["param"] == "response_format"


def test_whisper_language_detection_and_prompt(client: OpenAI) -> None:
    result = client.audio.transcriptions.create(
        model=TINY, file=clip(), response_format="verbose_json", prompt="Hello there.",
        timestamp_granularities=["word", "segment"])
    assert result.language == "english"  # detected (the tiny model always says English)
    assert result.words and result.segments


# --- requests as curl sends them --------------------------------------------------------------

def test_raw_multipart_like_curl(server: LiveServer, key: str) -> None:
    name, data, content_type = clip()
    with httpx.Client(base_url=server.openai_url, headers=bearer(key), trust_env=False,
                      timeout=60) as http:
        # curl -F file=@clip.wav -F model=whisper-1 -F response_format=verbose_json \
        #      -F "timestamp_granularities[]=word" -F "timestamp_granularities[]=segment"
        response = http.post("/audio/transcriptions", files={"file": (name, data, content_type)},
                             data={"model": "whisper-1", "response_format": "verbose_json",
                                   "timestamp_granularities[]": ["word", "segment"]})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["words"] and body["segments"] and body["language"] == "english"
        # The same field without brackets, a JSON chunking strategy, X-API-Key.
        response = http.post(
            "/audio/transcriptions", files={"file": (name, data, content_type)},
            data={"model": "pocketsphinx", "timestamp_granularities": "word",
                  "response_format": "verbose_json",
                  "chunking_strategy": json.dumps({"type": "server_vad", "threshold": 0.4})},
            headers={"Authorization": "", "X-API-Key": key})
        assert response.status_code == 200, response.text
        assert "words" in response.json() and "segments" not in response.json()
        job = latest_job(server, key)
        assert job["options"] == {"model": "pocketsphinx", "task": "transcribe",
                                  "vad_threshold": 0.4}
        # curl -N ... -F stream=true: Server-Sent Events, data lines only.
        response = http.post("/audio/transcriptions", files={"file": (name, data, content_type)},
                             data={"model": "whisper-1", "stream": "true"})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        blocks = [b for b in response.text.split("\n\n") if b.strip()]
        assert all(b.startswith("data: ") and "\n" not in b for b in blocks)
        events = [json.loads(b.removeprefix("data: ")) for b in blocks]
        assert events[-1]["type"] == "transcript.text.done"
        assert events[-1]["text"] == "".join(e["delta"] for e in events[:-1])


def test_chunking_strategy_reaches_the_vad(server: LiveServer, key: str,
                                           client: OpenAI) -> None:
    result = client.audio.transcriptions.create(
        model="whisper-1", file=clip(), chunking_strategy={
            "type": "server_vad", "threshold": 0.6, "silence_duration_ms": 300,
            "prefix_padding_ms": 100})
    assert result.text
    options = latest_job(server, key)["options"]
    assert (options["vad_threshold"], options["vad_min_silence_ms"],
            options["vad_speech_pad_ms"]) == (0.6, 300, 100)
    assert client.audio.transcriptions.create(model="whisper-1", file=clip(),
                                              chunking_strategy="auto").text
    assert not any(k.startswith("vad_") for k in latest_job(server, key)["options"])


# --- errors ----------------------------------------------------------------------------------

def test_a_bad_key_is_refused(server: LiveServer) -> None:
    before = media(server)
    with OpenAI(base_url=server.openai_url, api_key="hark_not-a-key", max_retries=0) as sdk:
        with pytest.raises(openai.AuthenticationError) as caught:
            sdk.audio.transcriptions.create(model="whisper-1", file=clip())
        assert caught.value.response.headers["www-authenticate"] == "Bearer"
        assert error_of(caught.value)["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            sdk.models.list()
    assert media(server) == before


@pytest.mark.parametrize("model", ["no-such-model", "small", "large-v3-diarize"])
def test_unknown_or_uninstalled_models_are_404(server: LiveServer, client: OpenAI,
                                               model: str) -> None:
    before = media(server)
    with pytest.raises(openai.NotFoundError) as caught:
        client.audio.transcriptions.create(model=model, file=clip())
    error = error_of(caught.value)
    assert (error["type"], error["code"], error["param"]) == \
        ("invalid_request_error", "model_not_found", "model")
    assert model in error["message"]
    assert media(server) == before


BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"response_format": "xml"}, "response_format"),
    ({"language": "xx"}, "language"),
    ({"temperature": 1.5}, "temperature"),
    ({"timestamp_granularities": ["char"]}, "timestamp_granularities"),
    ({"include": ["tokens"]}, "include"),
    ({"chunking_strategy": {"type": "client_vad"}}, "chunking_strategy"),
    ({"chunking_strategy": {"type": "server_vad", "threshold": 2}}, "chunking_strategy"),
    ({"prompt": "x" * 2001}, "prompt"),
    ({"extra_body": {"beam_size": "3"}}, "beam_size"),
    ({"known_speaker_names": ["ada"]}, "known_speaker_references"),
    ({"known_speaker_names": ["ada"], "known_speaker_references": ["data:audio/wav;base64,"
                                                                   + "A" * 8]},
     "known_speaker_names"),  # known speakers need a diarizing model
    ({"model": "gpt-4o-transcribe-diarize", "known_speaker_names": ["ada"],
      "known_speaker_references": ["https://example.com/ada.wav"]}, "known_speaker_references"),
    ({"model": "gpt-4o-transcribe-diarize", "known_speaker_names": ["ada"],
      "known_speaker_references": ["data:audio/wav;base64," + base64.b64encode(
          b"not audio at all").decode()]}, "known_speaker_references"),
]


@pytest.mark.parametrize(("fields", "param"), BAD_FIELDS)
def test_invalid_fields_are_400_naming_the_param(server: LiveServer, client: OpenAI,
                                                 fields: dict[str, Any], param: str) -> None:
    before = media(server)
    arguments: dict[str, Any] = {"model": "whisper-1", "file": clip(), **fields}
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(**arguments)
    error = error_of(caught.value)
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    assert media(server) == before


def test_a_reference_with_too_little_speech_is_refused(client: OpenAI) -> None:
    short = data_url(voice("three_voices", "voice0", 0)[: SAMPLE_RATE // 2])
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(
            model="gpt-4o-transcribe-diarize", file=clip(), known_speaker_names=["ada"],
            known_speaker_references=[short])
    error = error_of(caught.value)
    assert error["param"] == "known_speaker_references" and "speech" in error["message"]


def test_a_job_that_fails_answers_with_its_error(client: OpenAI) -> None:
    # Accepted (French is a language), then refused by the engine in the worker.
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="pocketsphinx", file=clip(), language="fr")
    error = error_of(caught.value)
    assert (error["param"], error["code"]) == ("language", "unsupported_language")
    # Streamed, the error arrives as an event, which the SDK raises.
    stream = client.audio.transcriptions.create(model="pocketsphinx", file=clip(),
                                                language="fr", stream=True)
    with pytest.raises(openai.APIError, match="English"):
        list(stream)


def test_too_large_unreadable_and_audioless_media(server: LiveServer, client: OpenAI) -> None:
    before = media(server)
    with pytest.raises(openai.APIStatusError) as caught:
        client.audio.transcriptions.create(
            model="whisper-1", file=("big.wav", sine_wav(UPLOAD_LIMIT / 32000 + 2), "audio/wav"))
    assert caught.value.status_code == 413 and error_of(caught.value)["param"] == "file"
    with pytest.raises(openai.APIStatusError) as caught:
        client.audio.transcriptions.create(model="whisper-1",
                                           file=("notes.txt", b"just some text\n" * 50))
    assert caught.value.status_code == 415
    assert error_of(caught.value)["code"] == "unsupported_media"
    with pytest.raises(openai.UnprocessableEntityError) as unprocessable:
        client.audio.transcriptions.create(model="whisper-1",
                                           file=("video.mkv", video_without_audio()))
    assert error_of(unprocessable.value)["code"] == "no_audio_stream"
    assert media(server) == before


def test_a_request_without_a_file_is_400(server: LiveServer, key: str) -> None:
    with httpx.Client(base_url=server.openai_url, headers=bearer(key), trust_env=False) as http:
        response = http.post("/audio/transcriptions", data={"model": "whisper-1"},
                             files={"notes": ("notes.txt", b"x")})
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "notes"  # a file under another name
        response = http.post("/audio/transcriptions", files={"model": (None, "whisper-1")})
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "file"
        response = http.post("/audio/transcriptions", data={"model": "whisper-1"},
                             files={"file": ("empty.wav", b"")})
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "empty_media"
        response = http.post("/audio/transcriptions", json={"model": "whisper-1"})
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "body"


def test_routes_outside_the_api_keep_their_shapes(server: LiveServer, key: str) -> None:
    with httpx.Client(base_url=server.base_url, headers=bearer(key), trust_env=False) as http:
        unknown = http.post("/v1/audio/speech-to-nowhere")
        assert unknown.status_code == 404
        assert unknown.json() == {"error": {
            "message": "Invalid URL (POST /v1/audio/speech-to-nowhere)",
            "type": "invalid_request_error", "param": None, "code": None}}
        # The job API keeps Hark's envelope.
        job = http.get("/api/v1/jobs/nope")
        assert job.status_code == 404 and job.json()["error_code"] == "JOB_NOT_FOUND"


# --- the queue ---------------------------------------------------------------------------------

def queued_ids(server: LiveServer, key: str) -> list[str]:
    with jobs_api(server, key) as api:
        page = api.get("/api/v1/jobs", params={"status": "queued", "limit": 200}).json()
    return [job["id"] for job in page["items"]]


def wait_for_status(server: LiveServer, key: str, job_id: str, status: str,
                    timeout: float = 10.0) -> None:
    with jobs_api(server, key) as api:
        wait_for(lambda: api.get(f"/api/v1/jobs/{job_id}").json()["status"] == status,
                 timeout, interval=0.1, message=f"job {job_id} never became {status}")


def test_a_full_queue_is_429(idle: LiveServer) -> None:
    key = idle.create_key("queue-tenant")
    submitted: list[str] = []
    with jobs_api(idle, key) as api:
        while True:  # fill the queue through the job API
            response = api.post("/api/v1/jobs/upload", files={"file": clip()})
            if response.status_code == 429:
                break
            assert response.status_code == 202, response.text
            submitted.append(response.json()["id"])
        try:
            with OpenAI(base_url=idle.openai_url, api_key=key, max_retries=0) as sdk, \
                    pytest.raises(openai.RateLimitError) as caught:
                sdk.audio.transcriptions.create(model="whisper-1", file=clip())
            error = error_of(caught.value)
            assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
            assert caught.value.response.headers["retry-after"]
        finally:
            for job_id in submitted:
                api.delete(f"/api/v1/jobs/{job_id}")


def test_a_client_that_leaves_cancels_its_job(idle: LiveServer) -> None:
    key = idle.create_key("impatient-tenant")
    with OpenAI(base_url=idle.openai_url, api_key=key, max_retries=0, timeout=1.5) as sdk:
        with pytest.raises(openai.APITimeoutError):
            sdk.audio.transcriptions.create(model="whisper-1", file=clip())
        job_id = latest_job(idle, key)["id"]
        wait_for_status(idle, key, job_id, "canceled")

        # A stream closed before its job ran.
        stream = sdk.audio.transcriptions.create(model="whisper-1", file=clip(), stream=True)
        streamed = latest_job(idle, key)
        assert streamed["id"] != job_id and streamed["status"] == "queued"
        stream.close()
        wait_for_status(idle, key, streamed["id"], "canceled")
    assert queued_ids(idle, key) == []


# --- pieces ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "expected"), [
    ("whisper-1", (None, False)), ("gpt-4o-transcribe", (None, False)),
    ("gpt-4o-mini-transcribe-2025-12-15", (None, False)),
    ("gpt-4o-transcribe-diarize", (None, True)), ("", (None, False)),
    ("pocketsphinx", ("pocketsphinx", False)), ("small-diarize", ("small", True)),
    ("faster-whisper/large-v3", ("faster-whisper/large-v3", False)), ("diarize", (None, True)),
])
def test_model_names_map_onto_hark_models(name: str, expected: tuple[str | None, bool]) -> None:
    assert map_model(name) == expected


def test_fields_beside_the_file_are_bounded_in_all() -> None:
    class Writer:
        size = 0

    async def body(chunks: int, writer: Writer | None) -> int:
        async def source() -> AsyncIterator[bytes]:
            for _ in range(chunks):
                if writer is not None:
                    writer.size += 1024 * 1024  # the parser stored the previous chunk
                yield b"x" * (1024 * 1024)

        seen = 0
        writers: list[Any] = [writer] if writer is not None else []
        async for chunk in endpoints._bounded(source(), writers):
            seen += len(chunk)
        return seen

    limit_chunks = endpoints.FIELDS_ALLOWANCE // (1024 * 1024)
    # Megabytes of file are fine; as many megabytes of fields are not.
    assert asyncio.run(body(limit_chunks + 8, Writer())) == (limit_chunks + 8) * 1024 * 1024
    with pytest.raises(UploadTooLargeError):
        asyncio.run(body(limit_chunks + 8, None))
