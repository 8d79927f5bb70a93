"""The transcript API over HTTP against the real app and a real worker process:
revisions and restore, exports of the latest revision, the recording with byte
ranges, search, retry, enrolling a voice from a job, and tenancy on all of them.
One app with one worker serves the module.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from hark.audit.actor import COMMAND_LINE
from hark.db.base import utcnow
from hark.organisations.retention import sweep
from hark.organisations.service import ensure_organisation, set_retention
from tests.support.service import (
    API,
    JOBS,
    Service,
    assert_error,
    bearer,
    service_fixture,
    speech_wav,
)

SPEAKERS = ("SPEAKER_00", "SPEAKER_01")


svc = service_fixture("transcripts")


@pytest.fixture(scope="module")
def other(svc: Service) -> dict[str, str]:
    """Another tenant's credentials."""
    return bearer(svc.create_key("tenant-b", "other"))


@pytest.fixture(scope="module")
def recording() -> bytes:
    return speech_wav(10.0)


def _complete(svc: Service, data: bytes, name: str, **options: str) -> dict[str, Any]:
    job = svc.submit(data, name, fields=options)
    done = svc.wait(job["id"])
    assert done["status"] == "completed", done
    return done


def _fresh(svc: Service, recording: bytes, name: str = "meeting.wav") -> dict[str, Any]:
    """A completed, diarized job of its own (tests that edit must not share one)."""
    return _complete(svc, recording, name, diarize="true", num_speakers="2", language="en")


@pytest.fixture(scope="module")
def diarized(svc: Service, recording: bytes) -> dict[str, Any]:
    return _fresh(svc, recording, "shared.wav")


def transcript(svc: Service, job_id: str, **params: Any) -> dict[str, Any]:
    response = svc.client.get(f"{JOBS}/{job_id}/transcript", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def put(svc: Service, job_id: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    response = svc.client.put(f"{JOBS}/{job_id}/transcript", json=body)
    assert response.status_code == status, response.text
    answer: dict[str, Any] = response.json()
    return answer


def stored_result(svc: Service, job_id: str) -> bytes:
    (path,) = (svc.storage_root / "results" / job_id).glob("*.json")
    return path.read_bytes()


# --- revisions ----------------------------------------------------------------------------

def test_the_transcript_starts_as_the_original(svc: Service, diarized: dict[str, Any]) -> None:
    body = transcript(svc, diarized["id"])
    assert body["revision"] == 0 and body["latest_revision"] == 0
    assert body["edited"] is False
    assert body["filename"] == "shared.wav"
    assert body["transcript"] == json.loads(stored_result(svc, diarized["id"]))
    assert {s["id"] for s in body["transcript"]["speakers"]} == set(SPEAKERS)
    history = svc.client.get(f"{JOBS}/{diarized['id']}/transcript/revisions").json()["items"]
    assert [(r["revision"], r["kind"]) for r in history] == [(0, "original")]


def test_edits_make_revisions_and_keep_the_original(svc: Service, recording: bytes) -> None:
    job_id = _fresh(svc, recording)["id"]
    original_bytes = stored_result(svc, job_id)
    original = json.loads(original_bytes)
    first = original["segments"][0]
    answer = put(svc, job_id, {
        "base_revision": 0,
        "segments": [{"id": first["id"], "words": [{"index": 1, "word": "Zanzibar"}]}],
        "speakers": {"SPEAKER_00": "  Alice   Smith "}})
    assert answer["changed"] is True and answer["revision"] == 1 and answer["edited"] is True
    edited = answer["transcript"]
    word = edited["segments"][0]["words"][1]
    before = first["words"][1]
    assert word["word"].strip() == "Zanzibar"
    assert (word["start"], word["end"]) == (before["start"], before["end"])
    assert word["probability"] is None  # a typed word has no engine confidence
    assert "Zanzibar" in edited["segments"][0]["text"] and "Zanzibar" in edited["text"]
    alice = next(s for s in edited["speakers"] if s["id"] == "SPEAKER_00")
    assert alice["name"] == "Alice Smith" and alice["profile_id"] is None
    # Speaker ids stay: the name is the speaker's, shown wherever its id is.
    assert edited["segments"][0]["speaker"] == first["speaker"]
    # The original is kept as it was, and readable as revision 0.
    assert stored_result(svc, job_id) == original_bytes
    assert transcript(svc, job_id, revision=0)["transcript"] == original
    assert transcript(svc, job_id)["transcript"] == edited
    history = svc.client.get(f"{JOBS}/{job_id}/transcript/revisions").json()["items"]
    assert [(r["revision"], r["kind"], r["segments_edited"], r["speakers_renamed"])
            for r in history] == [(0, "original", 0, 0), (1, "edit", 1, 1)]
    # The same change again changes nothing and makes no revision.
    again = put(svc, job_id, {"speakers": {"SPEAKER_00": "Alice Smith"}})
    assert again["changed"] is False and again["revision"] == 1


def test_new_segment_text_keeps_the_timings_it_can(svc: Service, recording: bytes) -> None:
    job_id = _fresh(svc, recording)["id"]
    segment = transcript(svc, job_id)["transcript"]["segments"][0]
    words = [w["word"].strip() for w in segment["words"]]
    assert len(words) >= 4, words
    # Replace the second word by two, drop the last, keep the rest.
    text = " ".join([words[0], "brand", "new", *words[2:-1]])
    edited = put(svc, job_id, {"segments": [{"id": segment["id"], "text": text}]})
    new = edited["transcript"]["segments"][0]
    assert new["text"] == text
    assert (new["start"], new["end"]) == (segment["start"], segment["end"])
    assert [w["word"].strip() for w in new["words"]] == text.split()
    old = segment["words"]
    assert new["words"][0] == old[0]
    assert new["words"][1]["start"] == old[1]["start"]
    assert new["words"][2]["end"] == old[1]["end"]  # "brand new" share the old word's span
    assert new["words"][1]["end"] == new["words"][2]["start"]
    assert new["words"][3:] == old[2:-1]


def test_restore_brings_back_the_original_or_a_revision(svc: Service,
                                                        recording: bytes) -> None:
    job_id = _fresh(svc, recording)["id"]
    original = transcript(svc, job_id)["transcript"]
    put(svc, job_id, {"speakers": {"SPEAKER_01": "Bob"}})
    second = put(svc, job_id, {"segments": [{"id": 0, "text": "entirely new words"}]})
    assert second["revision"] == 2
    restored = svc.client.post(f"{JOBS}/{job_id}/transcript/restore", json={})
    assert restored.status_code == 200, restored.text
    body = restored.json()
    assert body["revision"] == 3 and body["edited"] is False and body["changed"] is True
    assert body["transcript"] == original
    srt = svc.client.get(f"{JOBS}/{job_id}/result", params={"format": "srt"}).text
    assert "Bob" not in srt and "entirely" not in srt
    # Any revision can come back: revision 1 had only the rename.
    body = svc.client.post(f"{JOBS}/{job_id}/transcript/restore", json={"revision": 1}).json()
    assert body["revision"] == 4
    assert body["transcript"]["segments"] == original["segments"]
    assert any(s.get("name") == "Bob" for s in body["transcript"]["speakers"])
    history = svc.client.get(f"{JOBS}/{job_id}/transcript/revisions").json()["items"]
    assert [r["kind"] for r in history] == ["original", "edit", "edit", "restore", "restore"]
    assert_error(svc.client.post(f"{JOBS}/{job_id}/transcript/restore", json={"revision": 9}),
                 404, "REVISION_NOT_FOUND", "revision")


def test_exports_use_the_latest_revision(svc: Service, recording: bytes) -> None:
    job_id = _fresh(svc, recording)["id"]
    first = transcript(svc, job_id)["transcript"]["segments"][0]
    put(svc, job_id, {"segments": [{"id": first["id"], "words": [{"index": 0, "word": "Quokka"}]}],
                      "speakers": {first["speaker"]: "Dana Scully"}})
    exports = {fmt: svc.client.get(f"{JOBS}/{job_id}/result", params={"format": fmt})
               for fmt in ("json", "txt", "srt", "vtt", "tsv", "rttm")}
    for fmt, response in exports.items():
        assert response.status_code == 200, (fmt, response.text)
        assert "Quokka" in response.text or fmt == "rttm", fmt
        assert ("Dana_Scully" if fmt == "rttm" else "Dana Scully") in response.text, fmt
    data = exports["json"].json()
    assert data["segments"][0]["words"][0]["start"] == first["words"][0]["start"]
    assert "[Dana Scully] Quokka" in exports["srt"].text
    assert "<v Dana Scully>Quokka" in exports["vtt"].text


@pytest.mark.parametrize(("body", "field"), [
    ({"segments": [{"id": 999, "text": "x"}]}, "segments.0.id"),
    ({"segments": [{"id": 0, "text": "x", "words": [{"index": 0, "word": "y"}]}]},
     "segments.0"),
    ({"segments": [{"id": 0}]}, "segments.0"),
    ({"segments": [{"id": 0, "words": [{"index": 500, "word": "y"}]}]},
     "segments.0.words.0.index"),
    ({"segments": [{"id": 0, "words": [{"index": 0, "word": "   "}]}]},
     "segments.0.words.0.word"),
    ({"segments": [{"id": 0, "text": "a"}, {"id": 0, "text": "b"}]}, "segments.1.id"),
    ({"speakers": {"SPEAKER_09": "Zed"}}, "speakers.SPEAKER_09"),
    ({"speakers": {"SPEAKER_00": "x" * 201}}, "name"),
])
def test_bad_edits_are_refused_naming_the_field(svc: Service, diarized: dict[str, Any],
                                                body: dict[str, Any], field: str) -> None:
    response = svc.client.put(f"{JOBS}/{diarized['id']}/transcript", json=body)
    assert_error(response, 422, "INVALID_OPTION", field)
    assert transcript(svc, diarized["id"])["revision"] == 0


def test_malformed_edit_bodies_are_invalid_requests(svc: Service,
                                                    diarized: dict[str, Any]) -> None:
    url = f"{JOBS}/{diarized['id']}/transcript"
    assert_error(svc.client.put(url, json={"segments": [{"id": "x"}]}), 422, "INVALID_REQUEST")
    assert_error(svc.client.put(url, json={"colour": 1}), 422, "INVALID_REQUEST", "colour")


def test_an_edit_on_a_stale_revision_is_a_conflict(svc: Service, recording: bytes) -> None:
    job_id = _fresh(svc, recording)["id"]
    put(svc, job_id, {"base_revision": 0, "speakers": {"SPEAKER_00": "Ann"}})
    response = svc.client.put(f"{JOBS}/{job_id}/transcript",
                              json={"base_revision": 0, "speakers": {"SPEAKER_00": "Eve"}})
    body = assert_error(response, 409, "REVISION_CONFLICT", "base_revision")
    assert body["details"]["latest_revision"] == 1
    assert transcript(svc, job_id)["revision"] == 1


def test_a_transcript_needs_a_completed_job(svc: Service, recording: bytes) -> None:
    job = svc.submit(recording, "later.wav", priority="-5")
    response = svc.client.get(f"{JOBS}/{job['id']}/transcript")
    if response.status_code != 200:  # it may have finished already on a fast machine
        assert_error(response, 409, "JOB_NOT_READY")
    svc.client.delete(f"{JOBS}/{job['id']}")
    assert_error(svc.client.get(f"{JOBS}/{job['id']}/transcript"), 409, "JOB_NOT_READY")


def test_every_route_serving_a_purged_jobs_results_or_recording_answers_410(
        svc: Service) -> None:
    job = _complete(svc, speech_wav(3.0), "gone.wav")
    assert svc.client.delete(f"{JOBS}/{job['id']}", params={"purge": "true"}).status_code == 200
    url = f"{JOBS}/{job['id']}"
    # Gone for good, said as such on every route: not "not ready yet" (409), which
    # invites a client to wait and ask again.
    for method, path, params, body in [
        ("GET", "/result", None, None),
        ("GET", "/result", {"format": "srt"}, None),
        ("GET", "/transcript", None, None),
        ("GET", "/transcript", {"revision": "0"}, None),
        ("PUT", "/transcript", None, {"speakers": {"SPEAKER_00": "Ann"}}),
        ("GET", "/transcript/revisions", None, None),
        ("POST", "/transcript/restore", None, {}),
        ("POST", "/speakers/SPEAKER_00/enroll", None, {"name": "Ann"}),
        ("GET", "/media", None, None),
        ("GET", "/media/link", None, None),
    ]:
        response = svc.client.request(method, url + path, params=params, json=body)
        answer = assert_error(response, 410, "JOB_PURGED")
        assert "purged" in answer["error"], (method, path, answer)


def test_a_voice_is_not_enrolled_from_a_recording_retention_deleted(
        svc: Service, recording: bytes) -> None:
    key = bearer(svc.create_key("tenant-retention", "kept-text"))
    job = svc.submit(recording, "kept.wav", headers=key,
                     fields={"diarize": "true", "num_speakers": "2", "language": "en"})
    assert svc.wait(job["id"], headers=key)["status"] == "completed"
    with svc.state.db.session(write=True) as session:
        ensure_organisation(session, "tenant-retention")
        set_retention(session, "tenant-retention", media_days=1, actor=COMMAND_LINE)
    report = sweep(svc.state.db, svc.state.storage, now=utcnow() + timedelta(days=2))
    assert report.media_deleted == 1 and report.jobs_purged == 0
    url = f"{JOBS}/{job['id']}"
    # The transcript stays; the recording, which the voice is taken from, is gone.
    assert svc.client.get(f"{url}/transcript", headers=key).status_code == 200
    for response in (svc.client.get(f"{url}/media", headers=key),
                     svc.client.post(f"{url}/speakers/SPEAKER_00/enroll", headers=key,
                                     json={"name": "Ann"})):
        assert_error(response, 410, "JOB_PURGED")
    assert svc.client.get(f"{API}/speakers", headers=key).json()["items"] == []


# --- the recording ------------------------------------------------------------------------

def test_the_recording_is_served_whole_and_in_ranges(svc: Service, recording: bytes,
                                                     diarized: dict[str, Any]) -> None:
    url = f"{JOBS}/{diarized['id']}/media"
    whole = svc.client.get(url)
    assert whole.status_code == 200
    assert whole.content == recording
    assert whole.headers["content-type"] == "audio/wav"
    assert whole.headers["accept-ranges"] == "bytes"
    assert int(whole.headers["content-length"]) == len(recording)
    size = len(recording)
    for header, first, last in [("bytes=0-1", 0, 1), ("bytes=1000-", 1000, size - 1),
                                ("bytes=-500", size - 500, size - 1),
                                (f"bytes=100-{size + 50}", 100, size - 1)]:
        part = svc.client.get(url, headers={"Range": header})
        assert part.status_code == 206, header
        assert part.headers["content-range"] == f"bytes {first}-{last}/{size}"
        assert part.content == recording[first:last + 1]
    refused = svc.client.get(url, headers={"Range": f"bytes={size}-"})
    assert_error(refused, 416, "RANGE_NOT_SATISFIABLE")
    assert refused.headers["content-range"] == f"bytes */{size}"
    # Several ranges, or another unit: the whole file, which HTTP allows.
    assert svc.client.get(url, headers={"Range": "bytes=0-1,5-9"}).status_code == 200


def test_the_recording_plays_from_a_signed_link_not_a_key_in_the_url(
        svc: Service, recording: bytes) -> None:
    key = svc.create_key("tenant-media", "player")
    job = svc.submit(speech_wav(3.0), "clip.wav", headers=bearer(key))
    url = f"{JOBS}/{job['id']}/media"
    body = assert_error(svc.client.get(url, params={"api_key": key}), 401, "UNAUTHORIZED")
    assert body["details"]["field"] == "api_key"
    link = svc.client.get(f"{url}/link", headers=bearer(key))
    assert link.status_code == 200, link.text
    signed = link.json()["url"]
    assert key not in signed and "token=" in signed
    # The link alone (no header, as an <audio> element asks) plays and seeks.
    assert svc.client.get(signed, headers={"Range": "bytes=0-3"}).content == b"RIFF"
    assert_error(svc.client.get(url), 404, "JOB_NOT_FOUND")  # anonymous: another tenant
    assert_error(svc.client.get(f"{url}/link"), 404, "JOB_NOT_FOUND")
    svc.client.delete(f"{JOBS}/{job['id']}", headers=bearer(key))


# --- search -------------------------------------------------------------------------------

def test_search_finds_segments_and_follows_edits(svc: Service, recording: bytes) -> None:
    job = _fresh(svc, recording, "searchable.wav")
    segments = transcript(svc, job["id"])["transcript"]["segments"]
    target = segments[-1]
    word = max((w["word"].strip() for w in target["words"]), key=len)
    found = svc.client.get(f"{API}/search", params={"q": word.upper()}).json()["items"]
    hit = next(h for h in found if h["job_id"] == job["id"] and h["segment_id"] == target["id"])
    assert hit["filename"] == "searchable.wav"
    assert (hit["start"], hit["end"]) == (target["start"], target["end"])
    assert hit["speaker"] == target["speaker"] and hit["text"] == target["text"]
    start, end = hit["highlights"][0]
    assert hit["snippet"][start:end].lower() == word.lower()
    # The last word also matches as a prefix; every word must occur.
    assert any(h["segment_id"] == target["id"] for h in svc.client.get(
        f"{API}/search", params={"q": word[:-1]}).json()["items"] if h["job_id"] == job["id"])
    assert svc.client.get(f"{API}/search", params={"q": f"{word} xylophonic"}).json()[
        "items"] == []
    # An edit is searchable at once, under the speaker's new name.
    put(svc, job["id"], {"segments": [{"id": target["id"], "text": "the xylophonic finale"}],
                         "speakers": {target["speaker"]: "Quinn"}})
    (hit,) = [h for h in svc.client.get(f"{API}/search", params={"q": "xylophonic"}).json()[
        "items"] if h["job_id"] == job["id"]]
    assert hit["speaker"] == "Quinn" and hit["snippet"] == "the xylophonic finale"
    assert hit["highlights"] == [[4, 14]]
    assert not [h for h in svc.client.get(f"{API}/search", params={"q": word}).json()["items"]
                if h["segment_id"] == target["id"] and h["job_id"] == job["id"]]


def test_search_is_per_tenant_and_forgets_purged_jobs(svc: Service, recording: bytes,
                                                      other: dict[str, str]) -> None:
    job = _fresh(svc, recording, "secret.wav")
    put(svc, job["id"], {"segments": [{"id": 0, "text": "the quinquagenarian password"}]})
    query = {"q": "quinquagenarian"}
    assert len(svc.client.get(f"{API}/search", params=query).json()["items"]) == 1
    assert svc.client.get(f"{API}/search", params=query, headers=other).json()["items"] == []
    assert svc.client.delete(f"{JOBS}/{job['id']}", params={"purge": "true"}).status_code == 200
    assert svc.client.get(f"{API}/search", params=query).json()["items"] == []
    assert_error(svc.client.get(f"{JOBS}/{job['id']}/transcript"), 410, "JOB_PURGED")


@pytest.mark.parametrize(("params", "field"), [({"q": "?!"}, "q"), ({"q": ""}, "q"),
                                               ({"q": "a", "limit": "0"}, "limit")])
def test_bad_searches_are_refused(svc: Service, params: dict[str, str], field: str) -> None:
    response = svc.client.get(f"{API}/search", params=params)
    assert response.status_code == 422 and response.json()["details"]["field"] == field


# --- retry --------------------------------------------------------------------------------

def test_a_canceled_job_is_retried_with_its_recording_and_options(
    svc: Service, recording: bytes,
) -> None:
    job = svc.submit(recording, "again.wav", language="en", diarize="true", num_speakers="2",
                     priority="-50")
    svc.client.delete(f"{JOBS}/{job['id']}")
    response = svc.client.post(f"{JOBS}/{job['id']}/retry")
    assert response.status_code == 202, response.text
    retry = response.json()
    assert retry["id"] != job["id"] and retry["status"] == "queued"
    assert response.headers["location"] == f"{JOBS}/{retry['id']}"
    assert retry["options"] == job["options"] and retry["filename"] == "again.wav"
    # Its own copy of the recording: purging the old job leaves the new one whole.
    svc.client.delete(f"{JOBS}/{job['id']}", params={"purge": "true"})
    assert (svc.storage_root / "media" / retry["id"] / "source").read_bytes() == recording
    done = svc.wait(retry["id"])
    assert done["status"] == "completed", done
    # Only failed or canceled jobs; a purged upload has nothing left to run.
    assert_error(svc.client.post(f"{JOBS}/{retry['id']}/retry"), 409, "JOB_NOT_READY")
    assert_error(svc.client.post(f"{JOBS}/{job['id']}/retry"), 410, "JOB_PURGED")


# --- enrolling a voice from a job ---------------------------------------------------------

def test_a_speaker_of_a_job_is_enrolled_and_named(svc: Service, recording: bytes) -> None:
    job_id = _fresh(svc, recording)["id"]
    response = svc.client.post(f"{JOBS}/{job_id}/speakers/SPEAKER_00/enroll",
                               json={"name": "Grace Hopper"})
    assert response.status_code == 200, response.text
    body = response.json()
    profile = body["speaker"]
    assert profile["name"] == "Grace Hopper" and profile["sample_count"] == 1
    assert profile["speech_seconds"] >= 3.0
    named = next(s for s in body["transcript"]["transcript"]["speakers"]
                 if s["id"] == "SPEAKER_00")
    assert named["name"] == "Grace Hopper" and named["profile_id"] == profile["id"]
    assert body["transcript"]["revision"] == 1
    listed = svc.client.get(f"{API}/speakers").json()["items"]
    assert [p["id"] for p in listed if p["name"] == "Grace Hopper"] == [profile["id"]]
    assert "[Grace Hopper]" in svc.client.get(f"{JOBS}/{job_id}/result",
                                              params={"format": "srt"}).text
    # The enrolled voice names the speaker of the next recording.
    again = _complete(svc, recording, "again.wav", diarize="true", num_speakers="2",
                      identify_speakers="true", language="en")
    speakers = transcript(svc, again["id"])["transcript"]["speakers"]
    assert any(s["profile_id"] == profile["id"] for s in speakers), speakers
    assert_error(svc.client.post(f"{JOBS}/{job_id}/speakers/SPEAKER_07/enroll",
                                 json={"name": "Nobody"}), 404, "SPEAKER_NOT_FOUND")
    svc.client.delete(f"{API}/speakers/{profile['id']}")


# --- tenancy ------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/transcript", None),
    ("PUT", "/transcript", {"speakers": {"SPEAKER_00": "Mallory"}}),
    ("GET", "/transcript/revisions", None),
    ("POST", "/transcript/restore", {}),
    ("GET", "/media", None),
    ("GET", "/media/link", None),
    ("POST", "/retry", None),
    ("POST", "/speakers/SPEAKER_00/enroll", {"name": "Mallory"}),
])
def test_another_tenants_job_is_not_found(svc: Service, diarized: dict[str, Any],
                                          other: dict[str, str], method: str, path: str,
                                          body: dict[str, Any] | None) -> None:
    response = svc.client.request(method, f"{JOBS}/{diarized['id']}{path}", json=body,
                                  headers=other)
    assert_error(response, 404, "JOB_NOT_FOUND")
    assert transcript(svc, diarized["id"])["revision"] == 0


def test_the_page_is_served(svc: Service) -> None:
    page = svc.client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/static/js/main.js">' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    script = svc.client.get("/static/js/main.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert script.headers["cache-control"] == "no-cache"
    assert_error(svc.client.get("/static/nothing.js"), 404, "NOT_FOUND")
    # The page's routes never shadow the API's.
    assert svc.client.get("/health/live").status_code == 200
    assert_error(svc.client.get(f"{API}/no-such-thing"), 404, "NOT_FOUND")

