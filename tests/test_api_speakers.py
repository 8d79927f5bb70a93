"""The speakers API against the real app: enrolment from uploaded speech, tenants, errors.

The voices are the espeak-ng voices of the committed conversation fixtures, cut along
their reference turns; the voice encoder is loaded once per test process (the
diarizer cache is process-wide), so the tests stay quick.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hark.api.app import create_app
from hark.api.state import ServiceState
from hark.audit.actor import COMMAND_LINE
from hark.config import Settings
from hark.keys.service import create_key
from hark.pipeline.audio import SAMPLE_RATE
from hark.pipeline.diarization.identify import match_speakers
from hark.speakers import service
from hark.speakers.embedding import embed_recording
from tests.support.conversations import Conversation, load_fixture
from tests.support.service import LocalTestClient

SPEAKERS = "/api/v1/speakers"
UPLOAD_LIMIT = 1_000_000
Files = list[tuple[str, tuple[str | None, bytes | str, str | None]]]


def wav(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes((np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes())
    return buffer.getvalue()


def turns(conversation: Conversation, speaker: str, *indexes: int) -> np.ndarray:
    """The speaker's turns number `indexes`, joined with short pauses."""
    own = [t for t in conversation.turns if t.speaker == speaker]
    pause = np.zeros(SAMPLE_RATE // 3, dtype=np.float32)
    pieces = []
    for i in indexes:
        turn = own[i]
        pieces += [conversation.audio[int(turn.start * SAMPLE_RATE):int(turn.end * SAMPLE_RATE)],
                   pause]
    return np.concatenate(pieces)


@pytest.fixture(scope="module")
def clips() -> dict[str, bytes]:
    """WAV recordings of one voice each; "ada" is voice0 and "bea" voice1 of the fixtures."""
    two = load_fixture("two_voices")
    three = load_fixture("three_voices")  # the same voices, other sentences
    return {
        "ada_1": wav(turns(two, "voice0", 0, 2)),
        "ada_2": wav(turns(two, "voice0", 1)),
        "ada_3": wav(turns(two, "voice0", 3, 0)),
        "bea_1": wav(turns(two, "voice1", 0, 1)),
        "bea_2": wav(turns(two, "voice1", 2, 3)),
        "ada_held_out": wav(turns(three, "voice0", 0, 1, 2)),
        "bea_held_out": wav(turns(three, "voice1", 0, 1, 2)),
        "short": wav(turns(two, "voice1", 0)[: int(1.5 * SAMPLE_RATE)]),
    }


def make_settings(tmp_path: Path, *, anonymous: bool = True) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, allow_anonymous=anonymous,
                    host="127.0.0.1", log_format="console", max_upload_bytes=UPLOAD_LIMIT)


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    return create_app(make_settings(tmp_path), workers=False)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with LocalTestClient(app) as client:
        yield client


def state_of(app: FastAPI) -> ServiceState:
    state: ServiceState = app.state.hark
    return state


def bearer(app: FastAPI, tenant: str) -> dict[str, str]:
    with state_of(app).db.session(write=True) as session:
        secret = create_key(session, name=f"{tenant} key", tenant_id=tenant,
                            actor=COMMAND_LINE).secret
    return {"Authorization": f"Bearer {secret}"}


def samples(clips: dict[str, bytes], *names: str) -> Files:
    return [("files", (f"{name}.wav", clips[name], "audio/wav")) for name in names]


def enroll(client: TestClient, name: str | None, files: Files,
           headers: dict[str, str] | None = None) -> Any:
    fields: Files = [("name", (None, name, None))] if name is not None else []
    # A multipart body even without files: httpx would send a form url-encoded.
    return client.post(SPEAKERS, files=fields + files, headers=headers)


def leftover_samples(app: FastAPI) -> list[Path]:
    root = state_of(app).settings.storage_path / "speaker-samples"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def assert_error(response: Any, status: int, code: str, field: str | None = None) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_code"] == code
    assert body["request_id"] and body["timestamp"]
    if field is not None:
        assert body["details"]["field"] == field
    return body


def test_enroll_list_get_add_and_delete(
    app: FastAPI, client: TestClient, clips: dict[str, bytes]
) -> None:
    created = enroll(client, "  Ada   Lovelace ", samples(clips, "ada_1", "ada_2"))
    assert created.status_code == 201, created.text
    profile = created.json()
    assert set(profile) == {"id", "name", "embedder", "sample_count", "speech_seconds",
                            "created_at", "updated_at"}
    assert profile["name"] == "Ada Lovelace"
    assert profile["embedder"] == "resemblyzer"
    assert profile["sample_count"] == 2
    assert 9.0 < profile["speech_seconds"] < 14.0  # 6.4 s + 6.5 s of turns, less silence
    assert created.headers["location"] == f"{SPEAKERS}/{profile['id']}"
    bea = enroll(client, "Bea", samples(clips, "bea_1")).json()

    listed = client.get(SPEAKERS)
    assert listed.status_code == 200
    assert [p["name"] for p in listed.json()["items"]] == ["Ada Lovelace", "Bea"]
    assert client.get(f"{SPEAKERS}/{profile['id']}").json() == profile

    more = client.post(f"{SPEAKERS}/{profile['id']}/samples", files=samples(clips, "ada_3"))
    assert more.status_code == 200, more.text
    grown = more.json()
    assert grown["id"] == profile["id"]
    assert grown["sample_count"] == 3
    assert grown["speech_seconds"] > profile["speech_seconds"] + 3.0
    assert grown["updated_at"] > profile["updated_at"]
    # Enrolling a known name adds to its profile (200, not a second profile).
    again = enroll(client, "Ada Lovelace", samples(clips, "ada_2"))
    assert again.status_code == 200, again.text
    assert (again.json()["id"], again.json()["sample_count"]) == (profile["id"], 4)

    removed = client.delete(f"{SPEAKERS}/{profile['id']}")
    assert removed.status_code == 200
    assert (removed.json()["id"], removed.json()["sample_count"]) == (profile["id"], 4)
    assert_error(client.get(f"{SPEAKERS}/{profile['id']}"), 404, "SPEAKER_NOT_FOUND")
    assert_error(client.delete(f"{SPEAKERS}/{profile['id']}"), 404, "SPEAKER_NOT_FOUND")
    assert [p["id"] for p in client.get(SPEAKERS).json()["items"]] == [bea["id"]]
    with state_of(app).db.session() as session:
        assert [p.name for p in service.list_profiles(session, "local")] == ["Bea"]
    assert leftover_samples(app) == []


def test_profiles_from_the_api_identify_held_out_recordings(
    app: FastAPI, client: TestClient, clips: dict[str, bytes], tmp_path: Path
) -> None:
    for name, files in (("Ada", ("ada_1", "ada_2")), ("Bea", ("bea_1", "bea_2"))):
        assert enroll(client, name, samples(clips, *files)).status_code == 201
    state = state_of(app)
    with state.db.session() as session:
        profiles = service.profiles_for_matching(session, "local", state.settings.diarizer)
    diarized = {}
    for label, clip in (("SPEAKER_00", "bea_held_out"), ("SPEAKER_01", "ada_held_out")):
        path = tmp_path / f"{clip}.wav"
        path.write_bytes(clips[clip])
        diarized[label] = embed_recording(path, state.settings)[0]
    matches = match_speakers(diarized, profiles, state.settings.speaker_match_threshold)
    assert {s: m.name for s, m in matches.items()} == {"SPEAKER_00": "Bea", "SPEAKER_01": "Ada"}


def test_bad_enrolments_are_refused_and_store_nothing(
    app: FastAPI, client: TestClient, clips: dict[str, bytes]
) -> None:
    good = samples(clips, "ada_1")
    assert_error(enroll(client, None, good), 422, "INVALID_REQUEST", "name")
    assert_error(enroll(client, "   ", good), 422, "INVALID_OPTION", "name")
    assert_error(enroll(client, "x" * 201, good), 422, "INVALID_OPTION", "name")
    assert_error(enroll(client, "Ada", []), 422, "INVALID_REQUEST", "files")
    # The single-file spelling is refused with the right field named.
    assert_error(enroll(client, "Ada", [("file", ("a.wav", clips["ada_1"], "audio/wav"))]),
                 422, "INVALID_REQUEST", "file")
    assert_error(client.post(SPEAKERS, data={"name": "Ada"}), 422, "INVALID_REQUEST", "body")
    assert_error(enroll(client, "Ada", [*good, ("colour", (None, "blue", None))]),
                 422, "INVALID_REQUEST", "colour")

    text = b"these are not the voices you are looking for\n" * 50
    not_media: Files = [("files", ("notes.txt", text, "text/plain"))]
    body = assert_error(enroll(client, "Ada", good + not_media), 415, "UNSUPPORTED_MEDIA",
                        "files")
    assert body["details"]["filename"] == "notes.txt"
    assert "notes.txt" in body["error"] and "sample-" not in body["error"]
    assert "path" not in body["details"]  # the server's files are none of the client's business

    body = assert_error(enroll(client, "Ada", good + samples(clips, "short")), 422,
                        "INSUFFICIENT_SPEECH", "files")
    assert body["details"]["filename"] == "short.wav"
    assert body["details"]["speech_seconds"] < 3.0
    assert body["error"].startswith("short.wav holds")

    empty: Files = [("files", ("empty.wav", b"", "audio/wav"))]
    assert_error(enroll(client, "Ada", empty), 422, "EMPTY_MEDIA", "files")

    too_big: Files = [("files", ("big.wav", b"\0" * (UPLOAD_LIMIT + 1), "audio/wav"))]
    assert_error(enroll(client, "Ada", too_big), 413, "PAYLOAD_TOO_LARGE", "files")
    # Each file is within the limit; together they are not.
    third: Files = [("files", (f"part{i}.wav", b"\0" * (UPLOAD_LIMIT // 3 + 1), "audio/wav"))
             for i in range(3)]
    assert_error(enroll(client, "Ada", third), 413, "PAYLOAD_TOO_LARGE", "files")

    assert client.get(SPEAKERS).json() == {"items": []}
    assert leftover_samples(app) == []


def test_adding_samples_checks_the_profile_and_the_audio(
    app: FastAPI, client: TestClient, clips: dict[str, bytes]
) -> None:
    unknown = client.post(f"{SPEAKERS}/5b0c4d7e-0000-4000-8000-000000000000/samples",
                          files=samples(clips, "ada_3"))
    assert_error(unknown, 404, "SPEAKER_NOT_FOUND")
    profile = enroll(client, "Ada", samples(clips, "ada_1")).json()
    url = f"{SPEAKERS}/{profile['id']}/samples"
    assert_error(client.post(url, files=samples(clips, "short")), 422, "INSUFFICIENT_SPEECH",
                 "files")
    assert_error(client.post(url, files=[("files", ("x.bin", b"\x00\x01" * 999, None))]),
                 415, "UNSUPPORTED_MEDIA", "files")
    assert_error(client.post(url, files=[("name", (None, "Ada", None))]), 422,
                 "INVALID_REQUEST", "name")
    assert client.get(f"{SPEAKERS}/{profile['id']}").json() == profile
    two_more = client.post(url, files=samples(clips, "ada_2", "ada_3"))
    assert two_more.json()["sample_count"] == 3
    assert leftover_samples(app) == []


def test_tenants_see_only_their_own_profiles(tmp_path: Path, clips: dict[str, bytes]) -> None:
    app = create_app(make_settings(tmp_path, anonymous=False), workers=False)
    with LocalTestClient(app) as client:
        alice, bob = bearer(app, "tenant-a"), bearer(app, "tenant-b")
        assert_error(client.get(SPEAKERS), 401, "UNAUTHORIZED")
        assert_error(enroll(client, "Ada", samples(clips, "ada_1")), 401, "UNAUTHORIZED")
        assert_error(client.get(SPEAKERS, headers={"Authorization": "Bearer hark_nope"}),
                     401, "UNAUTHORIZED")

        created = enroll(client, "Ada", samples(clips, "ada_1"), headers=alice)
        assert created.status_code == 201, created.text
        ada = created.json()
        url = f"{SPEAKERS}/{ada['id']}"
        assert client.get(SPEAKERS, headers=bob).json() == {"items": []}
        assert_error(client.get(url, headers=bob), 404, "SPEAKER_NOT_FOUND")
        assert_error(client.delete(url, headers=bob), 404, "SPEAKER_NOT_FOUND")
        assert_error(client.post(f"{url}/samples", files=samples(clips, "ada_2"), headers=bob),
                     404, "SPEAKER_NOT_FOUND")
        # The same name in another tenant is another person.
        bobs_ada = enroll(client, "Ada", samples(clips, "bea_1"), headers=bob)
        assert bobs_ada.status_code == 201
        assert bobs_ada.json()["id"] != ada["id"]

        assert client.get(url, headers=alice).json() == ada
        assert [p["id"] for p in client.get(SPEAKERS, headers=alice).json()["items"]] == \
            [ada["id"]]
        assert client.delete(url, headers=alice).status_code == 200
        assert [p["id"] for p in client.get(SPEAKERS, headers=bob).json()["items"]] == \
            [bobs_ada.json()["id"]]


def test_anonymous_callers_share_the_local_tenant(
    app: FastAPI, client: TestClient, clips: dict[str, bytes]
) -> None:
    ada = enroll(client, "Ada", samples(clips, "ada_1")).json()
    keyed = bearer(app, "tenant-a")
    assert client.get(SPEAKERS, headers=keyed).json() == {"items": []}
    assert_error(client.get(f"{SPEAKERS}/{ada['id']}", headers=keyed), 404,
                 "SPEAKER_NOT_FOUND")
    with state_of(app).db.session() as session:
        assert [p.id for p in service.list_profiles(session, "local")] == [ada["id"]]


def test_the_openapi_document_describes_the_multipart_bodies(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    enroll_body = paths[SPEAKERS]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert enroll_body["schema"]["required"] == ["name", "files"]
    assert "201" in paths[SPEAKERS]["post"]["responses"]
    assert "delete" in paths[f"{SPEAKERS}/{{speaker_id}}"]
    assert "multipart/form-data" in \
        paths[f"{SPEAKERS}/{{speaker_id}}/samples"]["post"]["requestBody"]["content"]
