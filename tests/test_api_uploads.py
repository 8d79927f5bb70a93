"""Jobs from an upload slot and from a source URL, over HTTP against the real app.

Upload slots: reserve, PUT the bytes to the returned URL, submit; every misuse
(wrong token, too many or too few bytes, reuse, non-media) refused with nothing left
in storage. Source URLs: a real HTTP server on 127.0.0.2 (allowed for these tests)
serves the recordings; loopback, private, link-local and metadata targets are refused
before any byte is sent to them, also behind a redirect, and a server on 127.0.0.1
(and ::1) records that it was never contacted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.common import returns_within, wait_for
from tests.support.http_servers import ScriptedServer, redirect, respond, stream, trickle
from tests.support.service import (
    API,
    JOBS,
    HttpResponse,
    Service,
    assert_error,
    bearer,
    service_fixture,
    speech_wav,
)

UPLOADS = f"{API}/uploads"
UPLOAD_LIMIT = 1_000_000
SPEECH = speech_wav(4.0)


svc = service_fixture("uploads", max_upload_bytes=UPLOAD_LIMIT,
                      fetch_allowed_networks=["127.0.0.2/32"], fetch_timeout_seconds=10)


@pytest.fixture(scope="module")
def source() -> Iterator[ScriptedServer]:
    """The allowed origin: recordings, a redirect, errors, and too much data."""
    with ScriptedServer("127.0.0.2") as server:
        server.route("/two.wav", respond(200, SPEECH, {"Content-Type": "audio/wav"}))
        server.route("/notes.txt", respond(200, b"not a recording\n" * 50,
                                           {"Content-Type": "text/plain"}))
        server.route("/big-declared", stream(UPLOAD_LIMIT + 1, declare_length=True))
        server.route("/big-streamed", stream(UPLOAD_LIMIT + 100_000, declare_length=False))
        yield server


@pytest.fixture(scope="module")
def forbidden() -> Iterator[ScriptedServer]:
    """A server on 127.0.0.1 that no request of Hark may ever reach."""
    with ScriptedServer("127.0.0.1") as server:
        yield server


@pytest.fixture(scope="module")
def forbidden6() -> Iterator[ScriptedServer]:
    with ScriptedServer("::1") as server:
        yield server


class Unchanged:
    """Asserts that a refused request left storage and the job list as they were."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.files = svc.storage_snapshot()
        self.jobs = svc.job_ids()

    def check(self) -> None:
        assert self.svc.storage_snapshot() == self.files
        assert self.svc.job_ids() == self.jobs


def reserve(svc: Service, filename: str, size: int,
            headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = svc.client.post(UPLOADS, json={"filename": filename, "size": size},
                               headers=headers or {})
    assert response.status_code == 201, response.text
    slot: dict[str, Any] = response.json()
    return slot


def put(svc: Service, slot: dict[str, Any], data: bytes) -> HttpResponse:
    """PUT to the slot's URL as a client would: its path and query, no other credentials."""
    url = urlsplit(slot["url"])
    return svc.client.put(f"{url.path}?{url.query}", content=data)


def submit_json(svc: Service, body: dict[str, Any],
                headers: dict[str, str] | None = None) -> HttpResponse:
    return svc.client.post(JOBS, json=body, headers=headers or {})


# --- upload slots ---------------------------------------------------------------------------

def test_upload_slot_then_job_completes(svc: Service) -> None:
    slot = reserve(svc, "meeting.wav", len(SPEECH))
    assert set(slot) == {"upload_id", "url", "method", "expires_at"}
    assert slot["method"] == "PUT"
    url = urlsplit(slot["url"])
    assert url.path == f"{UPLOADS}/{slot['upload_id']}"
    assert parse_qs(url.query)["token"][0]
    expires = datetime.fromisoformat(slot["expires_at"].replace("Z", "+00:00"))
    assert timedelta(minutes=55) < expires - datetime.now(UTC) <= timedelta(hours=1)

    response = put(svc, slot, SPEECH)
    assert response.status_code == 200, response.text
    assert response.json() == {"upload_id": slot["upload_id"], "size": len(SPEECH),
                               "status": "ready"}

    response = submit_json(svc, {"source": {"upload_id": slot["upload_id"]},
                                 "language": "en", "priority": 3, "word_timestamps": False})
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "queued"
    assert job["filename"] == "meeting.wav"
    assert job["duration"] == pytest.approx(4.0, abs=0.01)
    assert job["options"] == {"language": "en", "priority": 3, "word_timestamps": False}
    done = svc.wait(job["id"])
    assert done["status"] == "completed", done
    transcript = svc.client.get(f"{JOBS}/{job['id']}/result").json()
    assert transcript["text"].strip() and transcript["language"] == "en"

    # A slot is used once: neither a second job nor a second PUT may take it.
    again = submit_json(svc, {"source": {"upload_id": slot["upload_id"]}})
    assert_error(again, 409, "UPLOAD_NOT_READY", "source.upload_id")
    assert_error(put(svc, slot, SPEECH), 409, "UPLOAD_NOT_READY")


def test_wrong_or_missing_token(svc: Service) -> None:
    slot = reserve(svc, "a.wav", len(SPEECH))
    path = urlsplit(slot["url"]).path
    unchanged = Unchanged(svc)
    assert_error(svc.client.put(f"{path}?token=wrong", content=SPEECH), 404,
                 "UPLOAD_NOT_FOUND")
    assert_error(svc.client.put(path, content=SPEECH), 422, "INVALID_REQUEST", "token")
    token = parse_qs(urlsplit(slot["url"]).query)["token"][0]
    assert_error(svc.client.put(f"{UPLOADS}/{uuid.uuid4()}?token={token}", content=SPEECH),
                 404, "UPLOAD_NOT_FOUND")
    unchanged.check()
    # The slot is untouched by those attempts.
    assert put(svc, slot, SPEECH).status_code == 200


def test_put_with_more_bytes_than_declared(svc: Service) -> None:
    slot = reserve(svc, "a.wav", len(SPEECH))
    unchanged = Unchanged(svc)
    body = assert_error(put(svc, slot, SPEECH + b"\0" * 5000), 413, "PAYLOAD_TOO_LARGE")
    assert body["details"]["limit"] == len(SPEECH)
    unchanged.check()
    # Nothing was taken: the slot can still receive the right bytes.
    assert put(svc, slot, SPEECH).status_code == 200


def test_put_with_fewer_bytes_than_declared(svc: Service) -> None:
    slot = reserve(svc, "a.wav", len(SPEECH))
    unchanged = Unchanged(svc)
    assert_error(put(svc, slot, SPEECH[:-10]), 422, "INVALID_REQUEST", "body")
    assert_error(put(svc, slot, b""), 422, "INVALID_REQUEST", "body")
    unchanged.check()
    response = submit_json(svc, {"source": {"upload_id": slot["upload_id"]}})
    assert_error(response, 409, "UPLOAD_NOT_READY", "source.upload_id")
    unchanged.check()


def test_job_from_an_unknown_or_foreign_upload(svc: Service) -> None:
    slot = reserve(svc, "a.wav", len(SPEECH))
    assert put(svc, slot, SPEECH).status_code == 200
    unchanged = Unchanged(svc)
    response = submit_json(svc, {"source": {"upload_id": str(uuid.uuid4())}})
    assert_error(response, 404, "UPLOAD_NOT_FOUND", "source.upload_id")
    other = bearer(svc.create_key("someone-else"))
    response = submit_json(svc, {"source": {"upload_id": slot["upload_id"]}}, other)
    assert_error(response, 404, "UPLOAD_NOT_FOUND", "source.upload_id")
    assert svc.job_ids(other) == []
    unchanged.check()


def test_non_media_upload_is_refused_when_the_job_is_created(svc: Service) -> None:
    unchanged = Unchanged(svc)
    text = b"These are the minutes, not the recording.\n" * 30
    slot = reserve(svc, "minutes.txt", len(text))
    assert put(svc, slot, text).status_code == 200
    assert any(slot["upload_id"] in path for path in svc.storage_snapshot())
    response = submit_json(svc, {"source": {"upload_id": slot["upload_id"]}})
    body = assert_error(response, 415, "UNSUPPORTED_MEDIA", "source.upload_id")
    assert "minutes.txt" in body["error"]
    unchanged.check()  # the uploaded bytes are gone too


@pytest.mark.parametrize(("body", "status", "code", "field"), [
    ({"filename": "big.wav", "size": UPLOAD_LIMIT + 1}, 413, "PAYLOAD_TOO_LARGE", "size"),
    ({"filename": "a.wav", "size": 0}, 422, "INVALID_REQUEST", "size"),
    ({"filename": "a.wav", "size": "lots"}, 422, "INVALID_REQUEST", "size"),
    ({"filename": "a.wav"}, 422, "INVALID_REQUEST", "size"),
    ({"size": 100}, 422, "INVALID_REQUEST", "filename"),
    ({"filename": "", "size": 100}, 422, "INVALID_REQUEST", "filename"),
    ({"filename": "a.wav", "size": 100, "public": True}, 422, "INVALID_REQUEST", "public"),
])
def test_bad_upload_slot_requests(svc: Service, body: dict[str, Any], status: int, code: str,
                                  field: str) -> None:
    unchanged = Unchanged(svc)
    assert_error(svc.client.post(UPLOADS, json=body), status, code, field)
    unchanged.check()


# --- JSON job requests -------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "status", "code", "field"), [
    ({}, 422, "INVALID_REQUEST", "source"),
    ({"source": {}}, 422, "INVALID_REQUEST", None),
    ({"source": "http://127.0.0.2/two.wav"}, 422, "INVALID_REQUEST", None),
    ({"source": {"url": "{source}/two.wav", "upload_id": "x"}}, 422, "INVALID_REQUEST", None),
    ({"source": {"url": "{source}/two.wav"}, "beam_size": "abc"}, 422, "INVALID_REQUEST",
     "beam_size"),
    ({"source": {"url": "{source}/two.wav"}, "diarize": "perhaps"}, 422, "INVALID_REQUEST",
     "diarize"),
    ({"source": {"url": "{source}/two.wav"}, "speakers": 2}, 422, "INVALID_REQUEST",
     "speakers"),
    ({"source": {"url": "{source}/two.wav"}, "model": "giant"}, 422, "UNKNOWN_MODEL", "model"),
    ({"source": {"url": "{source}/two.wav"}, "language": "klingon"}, 422,
     "UNSUPPORTED_LANGUAGE", "language"),
    ({"source": {"url": "{source}/two.wav"}, "min_speakers": 4, "max_speakers": 2}, 422,
     "INVALID_OPTION", "min_speakers"),
    ({"source": {"url": "{source}/two.wav"}, "webhook_url": "http://127.0.0.1/hook"}, 422,
     "URL_NOT_ALLOWED", "webhook_url"),
    ({"source": {"url": "{source}/two.wav"}, "webhook_url": "http://10.0.0.1/hook"}, 422,
     "URL_NOT_ALLOWED", "webhook_url"),
    ({"source": {"url": "{source}/two.wav"},
      "webhook_url": "http://169.254.169.254/latest/meta-data"}, 422, "URL_NOT_ALLOWED",
     "webhook_url"),
    ({"source": {"url": "{source}/two.wav"}, "webhook_url": "file:///etc/passwd"}, 422,
     "URL_NOT_ALLOWED", "webhook_url"),
])
def test_bad_json_job_requests_fetch_nothing(
    svc: Service, source: ScriptedServer, body: dict[str, Any], status: int, code: str,
    field: str | None,
) -> None:
    origin = source.url("").rstrip("/")
    if isinstance(body.get("source"), dict) and "url" in body["source"]:
        body = {**body, "source": {**body["source"],
                                   "url": body["source"]["url"].replace("{source}", origin)}}
    unchanged = Unchanged(svc)
    requests_before = len(source.requests)
    assert_error(submit_json(svc, body), status, code, field)
    assert len(source.requests) == requests_before  # options are checked before fetching
    unchanged.check()


# --- source URLs --------------------------------------------------------------------------------

def test_url_source_job_is_accepted_at_once_and_fetched_by_a_worker(
        svc: Service, source: ScriptedServer) -> None:
    before = len(source.requests)
    response = submit_json(svc, {"source": {"url": source.url("/two.wav?from=archive")},
                                 "diarize": True})
    assert response.status_code == 202, response.text
    job = response.json()
    # Accepted before anything was downloaded: the request never waits on the source.
    assert job["filename"] == "two.wav" and job["duration"] is None
    assert job["options"] == {"diarize": True}
    done = svc.wait(job["id"])
    assert done["status"] == "completed", done
    assert done["duration"] == pytest.approx(4.0, abs=0.01)
    assert "diarize" in done["timings"]
    assert [r.path for r in source.requests[before:]] == ["/two.wav?from=archive"]
    assert source.requests[-1].method == "GET"
    stored = svc.storage_root / "media" / job["id"] / "source"
    assert stored.read_bytes() == SPEECH


def failed_url_job(svc: Service, url: str, code: str) -> dict[str, Any]:
    """Submit a URL the worker must refuse: accepted, then failed with `code`, and
    nothing of it kept in storage."""
    response = submit_json(svc, {"source": {"url": url}})
    assert response.status_code == 202, response.text
    done = svc.wait(response.json()["id"])
    assert done["status"] == "failed", done
    assert done["error"]["error_code"] == code, done["error"]
    assert done["error"]["details"]["field"] == "source.url"
    assert not (svc.storage_root / "media" / done["id"]).exists()
    error: dict[str, Any] = done["error"]
    return error


SSRF_TARGETS = {
    "loopback": "http://127.0.0.1:{port}/x",
    "loopback-by-name": "http://localhost:{port}/",
    "loopback-decimal": "http://2130706433:{port}/x",
    "loopback-v4-mapped": "http://[::ffff:127.0.0.1]:{port}/x",
    "loopback-v6": "http://[::1]:{port6}/",
    "metadata": "http://169.254.169.254/latest/meta-data",
    "private": "http://10.0.0.1/",
    "unspecified": "http://0.0.0.0:{port}/x",
    "ftp": "ftp://127.0.0.2/two.wav",
    "file": "file:///etc/passwd",
    "credentials": "http://user:secret@127.0.0.2:{source_port}/two.wav",
    "redirect-to-loopback": "{source}/to-loopback",
    "redirect-to-localhost": "{source}/to-localhost",
    "redirect-to-metadata": "{source}/to-metadata",
}
# Where a host name leads (directly or by a redirect) is judged by the worker at every
# connection; every other refusal is plain from the URL and answered at once.
JUDGED_BY_THE_WORKER = {"loopback-by-name", "redirect-to-loopback", "redirect-to-localhost",
                        "redirect-to-metadata"}


@pytest.mark.parametrize("target", list(SSRF_TARGETS))
def test_refused_source_urls(svc: Service, source: ScriptedServer, forbidden: ScriptedServer,
                             forbidden6: ScriptedServer, target: str) -> None:
    source.route("/to-loopback", redirect(forbidden.url("/x")))
    source.route("/to-localhost", redirect(f"http://localhost:{forbidden.port}/x", 307))
    source.route("/to-metadata", redirect("http://169.254.169.254/latest/meta-data", 301))
    url = SSRF_TARGETS[target].format(
        port=forbidden.port, port6=forbidden6.port, source_port=source.port,
        source=source.url("").rstrip("/"))
    before = len(source.requests)
    if target in JUDGED_BY_THE_WORKER:
        failed_url_job(svc, url, "URL_NOT_ALLOWED")
    else:
        unchanged = Unchanged(svc)
        assert_error(submit_json(svc, {"source": {"url": url}}), 422, "URL_NOT_ALLOWED",
                     "source.url")
        unchanged.check()
    assert forbidden.requests == [] and forbidden6.requests == []
    if target.startswith("redirect"):
        assert [r.path for r in source.requests[before:]] == [urlsplit(url).path]


@pytest.mark.parametrize(("path", "code"), [
    ("/missing.wav", "FETCH_FAILED"),
    ("/big-declared", "PAYLOAD_TOO_LARGE"),
    ("/big-streamed", "PAYLOAD_TOO_LARGE"),
    ("/notes.txt", "UNSUPPORTED_MEDIA"),
])
def test_failed_fetches_fail_the_job_and_leave_nothing(svc: Service, source: ScriptedServer,
                                                       path: str, code: str) -> None:
    error = failed_url_job(svc, source.url(path), code)
    if path == "/missing.wav":
        assert error["details"]["status"] == 404
    if code == "UNSUPPORTED_MEDIA":  # about the file as the source named it
        assert "notes.txt" in error["error"] and "source" not in error["error"].split()


def test_unreachable_source_is_fetch_failed(svc: Service) -> None:
    with ScriptedServer("127.0.0.2") as gone:
        url = gone.url("/two.wav")
    failed_url_job(svc, url, "FETCH_FAILED")


def test_slow_sources_never_slow_the_api(svc: Service, source: ScriptedServer) -> None:
    """Fifty sources that trickle a byte at a time: the submissions return at once and
    status reads stay quick for everyone while a worker is stuck fetching."""
    source.route("/slow.wav", trickle(0.2))
    jobs = [submit_json(svc, {"source": {"url": source.url(f"/slow.wav?n={n}")}}).json()
            for n in range(50)]
    svc.wait(jobs[0]["id"], until=frozenset({"running"}))
    assert svc.job(jobs[0]["id"])["stage"] == "fetching"

    def read_statuses() -> None:
        for _ in range(200):
            assert svc.client.get(f"{JOBS}/{jobs[-1]['id']}").status_code == 200
            assert svc.client.get(JOBS, params={"limit": 10}).status_code == 200

    # The bound is the behaviour, and generous (400 reads take a second or two): reads
    # held up by the fetches would wait on sources that never finish.
    returns_within(read_statuses, 60, "status reads waited on the slow fetches")
    assert svc.job(jobs[0]["id"])["stage"] == "fetching"  # all along
    for job in jobs:  # canceled while fetching: the worker lets the source go
        svc.client.delete(f"{JOBS}/{job['id']}", params={"purge": "true"})
    svc.wait(jobs[0]["id"])
    # The worker notices at its next progress write and removes what it fetched.
    wait_for(lambda: not (svc.storage_root / "media" / jobs[0]["id"]).exists(),
             message="the fetched bytes of a canceled job stay in storage")


# --- retrying a purged job ------------------------------------------------------------------

def test_a_purged_url_job_is_retried_by_fetching_its_url_again(
        svc: Service, source: ScriptedServer) -> None:
    # The source is not there yet: the job fails, and the purge leaves nothing of its
    # recording, but its URL still says where the recording is.
    source.route("/back-later.wav", respond(404, b"not yet"))
    response = submit_json(svc, {"source": {"url": source.url("/back-later.wav")},
                                 "language": "en"})
    assert response.status_code == 202, response.text
    failed = svc.wait(response.json()["id"])
    assert failed["status"] == "failed", failed
    purged = svc.client.delete(f"{JOBS}/{failed['id']}", params={"purge": "true"})
    assert purged.status_code == 200 and purged.json()["purged"] is True

    source.route("/back-later.wav", respond(200, SPEECH, {"Content-Type": "audio/wav"}))
    before = len(source.requests)
    response = svc.client.post(f"{JOBS}/{failed['id']}/retry")
    assert response.status_code == 202, response.text
    retry = response.json()
    assert retry["id"] != failed["id"] and retry["purged"] is False
    assert retry["filename"] == "back-later.wav" and retry["options"] == {"language": "en"}
    assert retry["duration"] is None  # fetched by the worker, not by the request
    done = svc.wait(retry["id"])
    assert done["status"] == "completed", done
    assert [r.path for r in source.requests[before:]] == ["/back-later.wav"]
    assert (svc.storage_root / "media" / retry["id"] / "source").read_bytes() == SPEECH


def test_a_purged_upload_job_is_not_retried(svc: Service, source: ScriptedServer) -> None:
    # The one worker is kept fetching a source that never ends, so the uploaded job is
    # still queued when it is purged (a canceled job may be retried; a completed not).
    source.route("/hold.wav", trickle(0.2))
    holding = submit_json(svc, {"source": {"url": source.url("/hold.wav")}}).json()
    svc.wait(holding["id"], until=frozenset({"running"}))
    job = svc.submit(SPEECH, "once.wav")
    purged = svc.client.delete(f"{JOBS}/{job['id']}", params={"purge": "true"}).json()
    assert (purged["status"], purged["purged"]) == ("canceled", True)
    jobs = svc.job_ids()

    # Its recording existed only here: nothing to run again, and no new job.
    body = assert_error(svc.client.post(f"{JOBS}/{job['id']}/retry"), 410, "JOB_PURGED")
    assert "upload" in body["error"] and body["details"]["status"] == "canceled"
    assert svc.job_ids() == jobs
    svc.client.delete(f"{JOBS}/{holding['id']}", params={"purge": "true"})
    svc.wait(holding["id"])
