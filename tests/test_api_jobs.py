"""The job API over HTTP against the real app and a real worker process.

Submission (shape, options, every kind of bad input, with storage and the job table
checked after each refusal), the lifecycle up to the result in every format, listing
with cursors, cancel and purge, the error envelope, health and metrics. One app with
one worker serves the whole module.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from hark.jobs.repository import JobRepository
from tests.support.common import wait_for
from tests.support.service import (
    ENVELOPE_KEYS,
    JOBS,
    TERMINAL,
    Service,
    assert_error,
    bearer,
    fixture_bytes,
    service_fixture,
    silence_wav,
    sine_wav,
    speech_wav,
    video_without_audio,
)

UPLOAD_LIMIT = 2_500_000
MAX_SECONDS = 60.0
JOB_KEYS = {"id", "status", "progress", "stage", "filename", "duration", "options", "model",
            "created_at", "started_at", "finished_at", "error", "links"}


svc = service_fixture("jobs", max_upload_bytes=UPLOAD_LIMIT, max_audio_seconds=MAX_SECONDS)


@pytest.fixture(scope="module")
def diarized(svc: Service) -> dict[str, Any]:
    """A completed job: 10 s of two alternating voices, diarized into two speakers."""
    job = svc.submit(speech_wav(10.0), "meeting.wav", diarize="true", num_speakers="2",
                     language="en")
    done = svc.wait(job["id"])
    assert done["status"] == "completed", done
    return done


def parse_time(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def drain(svc: Service, timeout: float = 60.0) -> None:
    """Wait until no job of any tenant is queued or running."""
    counts: dict[str, int] = {}

    def idle() -> bool:
        nonlocal counts
        with svc.state.db.session() as session:
            counts = JobRepository(session).counts_by_status()
        return not counts.get("queued") and not counts.get("running")

    wait_for(idle, timeout, message=lambda: f"jobs still waiting or running: {counts}")


class Unchanged:
    """Asserts that a refused request left storage and the job list as they were."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.files = svc.storage_snapshot()
        self.jobs = svc.job_ids()

    def check(self) -> None:
        assert self.svc.storage_snapshot() == self.files
        assert self.svc.job_ids() == self.jobs


# --- submission -------------------------------------------------------------------------

def test_upload_answers_202_with_the_job(svc: Service) -> None:
    before = datetime.now().astimezone()
    response = svc.upload(speech_wav(3.0), "hello.wav", content_type="audio/wav")
    assert response.status_code == 202, response.text
    job = response.json()
    assert set(job) >= JOB_KEYS
    job_id = job["id"]
    assert uuid.UUID(job_id)
    assert job["status"] == "queued"
    assert job["progress"] == 0.0
    assert job["stage"] is None
    assert job["filename"] == "hello.wav"
    assert job["duration"] == pytest.approx(3.0, abs=0.01)
    assert job["options"] == {}
    assert job["model"] == "tiny.en"  # the service's default model in these tests
    assert abs((parse_time(job["created_at"]) - before).total_seconds()) < 5
    assert job["started_at"] is None and job["finished_at"] is None
    assert job["error"] is None
    assert job["links"] == {"self": f"{JOBS}/{job_id}", "result": f"{JOBS}/{job_id}/result",
                            "events": f"{JOBS}/{job_id}/events",
                            "websocket": f"{JOBS}/{job_id}/ws"}
    assert svc.client.get(job["links"]["self"]).json()["id"] == job_id
    # The recording is kept for the worker under the job's own key.
    assert (svc.storage_root / "media" / job_id / "source").read_bytes()[:4] == b"RIFF"
    done = svc.wait(job_id)
    assert done["status"] == "completed", done


def test_auto_is_whisper_base_from_its_package_and_language_names_are_codes(
        svc: Service) -> None:
    job = svc.submit(speech_wav(2.0), "auto.wav", model="auto", language="English")
    assert job["model"] == "base"  # resolved when queued, recorded on the job
    done = svc.wait(job["id"])
    assert done["status"] == "completed", done
    assert (done["model"], done["language"], done["warnings"]) == (
        "faster-whisper/base", "en", [])
    refused = svc.upload(speech_wav(1.0), "x.wav", fields={"language": "klingon"})
    assert refused.status_code == 422
    assert refused.json()["details"]["field"] == "language"


def test_every_option_is_accepted_and_recorded(svc: Service) -> None:
    options = {
        "model": "pocketsphinx", "language": "en", "task": "transcribe", "diarize": "true",
        "num_speakers": "2", "min_speakers": "1", "max_speakers": "3",
        "identify_speakers": "true", "word_timestamps": "false", "vad": "false",
        "beam_size": "3", "temperature": "0.2", "initial_prompt": "A meeting about trains.",
        "hotwords": "Lisbon cello", "priority": "7",
        "webhook_url": "https://hooks.example.com/hark?x=1",
    }
    job = svc.submit(speech_wav(2.0), "options.wav", fields=options)
    try:
        expected = {
            "model": "pocketsphinx", "language": "en", "task": "transcribe", "diarize": True,
            "num_speakers": 2, "min_speakers": 1, "max_speakers": 3, "identify_speakers": True,
            "word_timestamps": False, "vad": False, "beam_size": 3, "temperature": 0.2,
            "initial_prompt": "A meeting about trains.", "hotwords": "Lisbon cello",
            "priority": 7,
        }
        assert job["options"] == expected
        assert job["model"] == "pocketsphinx"
        assert job["priority"] == 7
        assert job["webhook"]["url"] == "https://hooks.example.com/hark?x=1"
        stored = svc.job(job["id"])
        assert stored["options"] == expected
        assert stored["webhook"]["url"] == options["webhook_url"]
    finally:
        # Only the recording of the options matters here: spare the worker the run.
        svc.client.delete(f"{JOBS}/{job['id']}")


@pytest.mark.parametrize(("options", "status", "code", "field"), [
    ({"model": "no-such-model"}, 422, "UNKNOWN_MODEL", "model"),
    ({"language": "xx"}, 422, "UNSUPPORTED_LANGUAGE", "language"),
    ({"min_speakers": "3", "max_speakers": "2"}, 422, "INVALID_OPTION", "min_speakers"),
    ({"num_speakers": "5", "max_speakers": "3"}, 422, "INVALID_OPTION", "num_speakers"),
    ({"beam_size": "abc"}, 422, "INVALID_REQUEST", "beam_size"),
    ({"beam_size": "0"}, 422, "INVALID_REQUEST", "beam_size"),
    ({"temperature": "2.5"}, 422, "INVALID_REQUEST", "temperature"),
    ({"diarize": "maybe"}, 422, "INVALID_REQUEST", "diarize"),
    ({"priority": "high"}, 422, "INVALID_REQUEST", "priority"),
    ({"task": "summarize"}, 422, "INVALID_REQUEST", "task"),
    ({"num_speakers": "0"}, 422, "INVALID_REQUEST", "num_speakers"),
    ({"identify_speakers": "true"}, 422, "INVALID_OPTION", "identify_speakers"),
    ({"colour": "blue"}, 422, "INVALID_REQUEST", "colour"),
    ({"webhook_url": "http://127.0.0.1/hook"}, 422, "URL_NOT_ALLOWED", "webhook_url"),
    ({"webhook_url": "ftp://example.com/hook"}, 422, "URL_NOT_ALLOWED", "webhook_url"),
])
def test_bad_options_are_refused_naming_the_field(
    svc: Service, options: dict[str, str], status: int, code: str, field: str,
) -> None:
    unchanged = Unchanged(svc)
    response = svc.upload(sine_wav(1.0), "tone.wav", fields=options)
    assert_error(response, status, code, field)
    unchanged.check()


@pytest.mark.parametrize(("name", "data", "status", "code"), [
    ("notes.txt", b"Minutes of the meeting, not a recording.\n" * 20, 415, "UNSUPPORTED_MEDIA"),
    ("data.json", b'{"recording": null, "note": "not audio"}\n' * 8, 415, "UNSUPPORTED_MEDIA"),
    ("silent-film.mkv", video_without_audio(), 422, "NO_AUDIO_STREAM"),
    ("empty.wav", b"", 422, "EMPTY_MEDIA"),
    ("cut.wav", speech_wav(3.0)[:20_000], 422, "CORRUPT_MEDIA"),
    ("long.wav", silence_wav(MAX_SECONDS + 1), 422, "AUDIO_TOO_LONG"),
], ids=["text", "json", "video-without-audio", "empty", "truncated", "too-long"])
def test_bad_media_is_refused_and_nothing_is_kept(
    svc: Service, name: str, data: bytes, status: int, code: str,
) -> None:
    unchanged = Unchanged(svc)
    body = assert_error(svc.upload(data, name), status, code, "file")
    assert name in body["error"]  # the client's name, never a server path
    assert str(svc.storage_root) not in json.dumps(body)
    unchanged.check()


@pytest.mark.parametrize("size", [UPLOAD_LIMIT + 1, UPLOAD_LIMIT + 2_000_000],
                         ids=["while-streaming", "by-content-length"])
def test_oversized_upload_is_413_and_nothing_is_kept(svc: Service, size: int) -> None:
    # Just over the limit is caught while streaming; far over, by Content-Length first.
    unchanged = Unchanged(svc)
    response = svc.upload(b"\0" * size, "huge.wav")
    body = assert_error(response, 413, "PAYLOAD_TOO_LARGE", "file")
    assert body["details"]["limit"] == UPLOAD_LIMIT
    unchanged.check()


def test_upload_without_a_file_part(svc: Service) -> None:
    unchanged = Unchanged(svc)
    # A multipart form with fields only.
    response = svc.client.post(f"{JOBS}/upload", files={"model": (None, "pocketsphinx")})
    assert_error(response, 422, "INVALID_REQUEST", "file")
    # A file under another name.
    response = svc.client.post(f"{JOBS}/upload", files={"audio": ("a.wav", sine_wav(0.5))})
    assert_error(response, 422, "INVALID_REQUEST", "audio")
    # Not multipart at all.
    response = svc.client.post(f"{JOBS}/upload", data={"model": "pocketsphinx"})
    assert_error(response, 422, "INVALID_REQUEST", "body")
    response = svc.client.post(f"{JOBS}/upload", content=sine_wav(0.5),
                               headers={"Content-Type": "audio/wav"})
    assert_error(response, 422, "INVALID_REQUEST", "body")
    unchanged.check()


# --- lifecycle and results ----------------------------------------------------------------

def test_completed_job_has_its_record_filled(diarized: dict[str, Any]) -> None:
    job = diarized
    assert job["status"] == "completed"
    assert job["progress"] == 1.0
    assert job["stage"] == "done"
    assert job["error"] is None
    assert job["model"] == "faster-whisper/tiny.en"  # the model that made the transcript
    assert job["language"] == "en"
    assert job["duration"] == pytest.approx(10.0, abs=0.05)
    created, started, finished = (parse_time(job[k]) for k in
                                  ("created_at", "started_at", "finished_at"))
    assert created <= started <= finished
    assert set(job["timings"]) >= {"decode", "vad", "transcribe", "diarize"}
    assert all(value >= 0 for value in job["timings"].values())
    assert job["timings"]["transcribe"] > 0
    assert job["attempts"] == 1


def test_a_late_subscriber_hears_the_whole_outcome(svc: Service,
                                                   diarized: dict[str, Any]) -> None:
    with svc.client.stream("GET", f"{JOBS}/{diarized['id']}/events") as events:
        received = [json.loads(line[5:]) for line in events.iter_lines()
                    if line.startswith("data:")]
    assert [event["type"] for event in received] == ["status", "completed"]
    done = received[1]
    assert (done["language"], done["model"]) == ("en", diarized["model"])
    assert done["duration"] == diarized["duration"] and done["timings"] == diarized["timings"]


@pytest.mark.timeout(120)
def test_a_storage_outage_hands_the_job_back_without_using_an_attempt(svc: Service) -> None:
    job = svc.submit(speech_wav(20.0), "outage.wav", language="en")
    # Where the result goes, a file: writing it fails as a broken disk or bucket would.
    blocker = svc.storage_root / "results" / job["id"]
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_bytes(b"")
    seen: list[str] = []
    with svc.client.stream("GET", f"{JOBS}/{job['id']}/events") as events:
        for line in events.iter_lines():
            if not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            seen.append(event["type"] if event["type"] != "status" else event["status"])
            if event["type"] == "status" and event["status"] == "queued" and \
                    "running" in seen and blocker.is_file():
                blocker.unlink()  # storage is back
    assert seen[-1] == "completed", seen
    back = seen.index("queued", seen.index("running"))
    assert "running" in seen[back:], seen
    done = svc.job(job["id"])
    # The outage was not the job's fault: the attempt it interrupted does not count.
    assert done["status"] == "completed" and done["attempts"] == 1, done
    assert done["error"] is None
    assert sorted(p.name for p in blocker.iterdir()) == ["transcript-1.json"]


def test_json_result_is_the_transcript(svc: Service, diarized: dict[str, Any]) -> None:
    response = svc.client.get(f"{JOBS}/{diarized['id']}/result")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-disposition"].startswith(
        'attachment; filename="meeting.json"')
    transcript = response.json()
    assert {"text", "language", "duration", "model", "segments", "speakers",
            "timings"} <= set(transcript)
    assert transcript["language"] == "en"
    assert transcript["model"] == diarized["model"]
    assert transcript["duration"] == pytest.approx(10.0, abs=0.05)
    assert transcript["timings"] == pytest.approx(diarized["timings"])
    segments = transcript["segments"]
    assert segments and transcript["text"].strip()
    assert " ".join(s["text"].strip() for s in segments).split() == transcript["text"].split()
    speakers = {s["id"] for s in transcript["speakers"]}
    assert speakers == {"SPEAKER_00", "SPEAKER_01"}  # num_speakers=2
    for segment in segments:
        assert 0 <= segment["start"] < segment["end"] <= transcript["duration"] + 0.01
        assert segment["speaker"] in speakers
        assert segment["words"], segment
        for word in segment["words"]:
            assert {"word", "start", "end", "probability", "speaker"} <= set(word)
            assert segment["start"] - 0.01 <= word["start"] <= word["end"] <= segment["end"] + 0.01
            assert word["speaker"] in speakers
    # The voices alternate at 4.4 s and 8.3 s: the first and a middle segment differ.
    assert {s["speaker"] for s in segments} == speakers


@pytest.mark.parametrize(("fmt", "content_type", "check"), [
    ("txt", "text/plain; charset=utf-8", lambda t: re.match(r"SPEAKER_0\d: \w", t)),
    ("srt", "application/x-subrip",
     lambda t: re.match(r"1\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n", t)),
    ("vtt", "text/vtt; charset=utf-8",
     lambda t: t.startswith("WEBVTT") and re.search(r"\d\d:\d\d\.\d{3} --> ", t)),
    ("tsv", "text/tab-separated-values; charset=utf-8",
     lambda t: t.splitlines()[0].split("\t") == ["start", "end", "speaker", "text"]
     and re.match(r"\d+\t\d+\tSPEAKER_0\d\t", t.splitlines()[1])),
    ("rttm", "text/plain; charset=utf-8",
     lambda t: all(re.match(r"SPEAKER meeting 1 \d+\.\d+ \d+\.\d+ <NA> <NA> SPEAKER_0\d ", line)
                   for line in t.splitlines()) and t.strip()),
])
def test_result_in_every_format(svc: Service, diarized: dict[str, Any], fmt: str,
                                content_type: str, check: Any) -> None:
    response = svc.client.get(f"{JOBS}/{diarized['id']}/result", params={"format": fmt})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == content_type
    assert response.headers["content-disposition"] == (
        f"attachment; filename=\"meeting.{fmt}\"; filename*=UTF-8''meeting.{fmt}")
    assert check(response.text), response.text[:300]


def test_unknown_result_format(svc: Service, diarized: dict[str, Any]) -> None:
    response = svc.client.get(f"{JOBS}/{diarized['id']}/result", params={"format": "docx"})
    assert_error(response, 422, "INVALID_REQUEST", "format")


def test_cancel_queued_and_running_jobs(svc: Service) -> None:
    """One worker: the first job runs, the rest wait; canceled ones never run."""
    drain(svc)
    running = svc.submit(fixture_bytes("two_voices"), "long.ogg")  # ~5 s of work
    waiting = svc.submit(speech_wav(2.0), "later.wav", priority="-100")  # runs last
    after = svc.submit(sine_wav(0.5), "after.wav")

    # Nothing is ready yet: the result is a conflict naming the status.
    body = assert_error(svc.client.get(f"{JOBS}/{running['id']}/result"), 409, "JOB_NOT_READY")
    assert body["details"]["status"] in ("queued", "running")

    response = svc.client.delete(f"{JOBS}/{waiting['id']}")
    assert response.status_code == 200, response.text
    canceled = response.json()
    assert canceled["status"] == "canceled"
    assert canceled["started_at"] is None  # it was still queued
    assert canceled["finished_at"] is not None
    again = svc.client.delete(f"{JOBS}/{waiting['id']}")
    assert again.status_code == 200 and again.json()["status"] == "canceled"
    assert_error(svc.client.get(f"{JOBS}/{waiting['id']}/result"), 409, "JOB_NOT_READY")

    # Cancel the first one while it transcribes: it stops, the worker moves on.
    def transcribing() -> dict[str, Any] | None:
        job = svc.job(running["id"])
        return job if job["stage"] == "transcribing" or job["status"] in TERMINAL else None

    job = wait_for(transcribing, 30, message="the long job never began transcribing")
    assert job is not None and job["status"] == "running", \
        f"the job ended before it could be canceled: {job}"
    response = svc.client.delete(f"{JOBS}/{running['id']}")
    assert response.status_code == 200
    assert response.json()["status"] == "canceled"
    done = svc.wait(after["id"], timeout=30)
    assert done["status"] == "completed"
    drain(svc)

    stopped = svc.job(running["id"])
    assert stopped["status"] == "canceled"
    assert stopped["started_at"] is not None
    # It stopped mid-way: no result was ever written for it.
    assert not (svc.storage_root / "results" / running["id"]).exists()
    never = svc.job(waiting["id"])
    assert never["status"] == "canceled"
    assert never["started_at"] is None and never["attempts"] == 0
    assert not (svc.storage_root / "results" / waiting["id"]).exists()

    # A late subscriber hears the outcome and the stream ends.
    with svc.client.stream("GET", f"{JOBS}/{running['id']}/events") as events:
        types = [json.loads(line[5:])["type"] for line in events.iter_lines()
                 if line.startswith("data:")]
    assert types == ["status", "canceled"]


def test_uninstalled_model_is_refused_at_submission(svc: Service) -> None:
    # A known Whisper size that is not installed, with downloads off: refused at once,
    # not accepted and failed later.
    before = svc.storage_snapshot()
    body = assert_error(svc.upload(sine_wav(0.5), "tone.wav", model="small"), 409,
                        "MODEL_NOT_INSTALLED")
    assert body["details"]["field"] == "model"
    assert "hark models pull small" in body["error"]
    assert svc.storage_snapshot() == before


@pytest.mark.parametrize("model", ["/etc", "/nonexistent", "../models", "~/x", ".",
                                   "small/../../etc", "x" * 5000])
def test_a_model_is_a_name_never_a_path(svc: Service, model: str) -> None:
    """Paths are refused alike whether or not they exist (nothing about the server's
    folders leaks), and an over-long name is a 422, not a server error."""
    before = svc.storage_snapshot()
    body = assert_error(svc.upload(sine_wav(0.5), "tone.wav", model=model), 422,
                        "UNKNOWN_MODEL" if len(model) < 200 else "INVALID_REQUEST")
    assert body["details"]["field"] == "model"
    if len(model) < 200:
        assert "paths to model folders work only on the command line" in body["error"]
        assert "/etc" not in body["error"].replace(repr(model), "")
    assert svc.storage_snapshot() == before


def test_failed_job_reports_its_error(
    svc: Service, tiny_whisper_dir: Path, tmp_path: Path,
) -> None:
    # The job's model disappears while the job waits behind another: the worker fails it.
    model = svc.settings.models_path / "vanishing"
    shutil.copytree(tiny_whisper_dir, model)
    blocker = svc.submit(speech_wav(20.0), "blocker.wav")
    svc.wait(blocker["id"], until=frozenset({"running"}))
    job = svc.submit(sine_wav(0.5), "tone.wav", model="vanishing")
    shutil.rmtree(model)
    svc.client.delete(f"{JOBS}/{blocker['id']}")
    done = svc.wait(job["id"])
    assert done["status"] == "failed"
    assert done["error"]["error_code"] == "UNKNOWN_MODEL"
    assert done["error"]["error"]
    assert done["finished_at"] is not None and done["attempts"] == 1
    body = assert_error(svc.client.get(f"{JOBS}/{job['id']}/result"), 409, "JOB_NOT_READY")
    assert body["details"]["status"] == "failed"


def test_worker_errors_name_the_persons_file(svc: Service) -> None:
    # The stored recording is damaged after it was accepted (a bad disk, say): the
    # worker's error speaks of the file the person sent, never of storage paths.
    blocker = svc.submit(speech_wav(20.0), "blocker.wav")
    svc.wait(blocker["id"], until=frozenset({"running"}))
    job = svc.submit(speech_wav(2.0), "Board meeting.wav")
    (svc.storage_root / "media" / job["id"] / "source").write_bytes(b"\0" * 4000)
    svc.client.delete(f"{JOBS}/{blocker['id']}")
    done = svc.wait(job["id"])
    assert done["status"] == "failed"
    message = done["error"]["error"]
    assert "Board meeting.wav" in message, message
    assert "source" not in message and str(svc.storage_root) not in message
    assert "path" not in done["error"]["details"]


def test_a_priority_above_the_keys_maximum_is_refused(svc: Service) -> None:
    normal = bearer(svc.create_key("prio"))
    trusted = bearer(svc.create_key("prio", max_priority=50))
    before = svc.storage_snapshot()
    body = assert_error(svc.upload(sine_wav(0.5), headers=normal, priority="1"), 403,
                        "PRIORITY_NOT_ALLOWED")
    assert body["details"] == {**body["details"], "field": "priority", "limit": 0}
    assert svc.storage_snapshot() == before  # refused before anything was kept
    low = svc.submit(sine_wav(0.5), headers=normal, priority="-5")  # lower is always fine
    high = svc.submit(sine_wav(0.5), headers=trusted, priority="50")
    assert (low["priority"], high["priority"]) == (-5, 50)
    assert_error(svc.upload(sine_wav(0.5), headers=trusted, priority="51"), 403,
                 "PRIORITY_NOT_ALLOWED")
    for job in (low, high):
        svc.client.delete(f"{JOBS}/{job['id']}", headers=trusted)


def test_a_long_file_name_keeps_its_extension(svc: Service) -> None:
    name = "interview " + "é" * 300 + ".wav"
    job = svc.submit(speech_wav(1.0), name)
    assert job["filename"].endswith(".wav") and job["filename"].startswith("interview é")
    assert len(job["filename"].encode()) <= 255
    svc.client.delete(f"{JOBS}/{job['id']}")


def test_delete_of_a_completed_job_keeps_it(svc: Service, diarized: dict[str, Any]) -> None:
    response = svc.client.delete(f"{JOBS}/{diarized['id']}")
    assert response.status_code == 200
    assert response.json()["status"] == "completed"
    assert svc.job(diarized["id"])["status"] == "completed"
    assert svc.client.get(f"{JOBS}/{diarized['id']}/result").status_code == 200


def test_purge_removes_media_and_results(svc: Service) -> None:
    job = svc.submit(speech_wav(2.0), "purge-me.wav")
    assert svc.wait(job["id"])["status"] == "completed"
    media = svc.storage_root / "media" / job["id"]
    results = svc.storage_root / "results" / job["id"]
    assert (media / "source").is_file() and len(list(results.glob("transcript-*.json"))) == 1

    response = svc.client.delete(f"{JOBS}/{job['id']}", params={"purge": "true"})
    assert response.status_code == 200
    assert response.json()["status"] == "completed"
    assert response.json()["purged"] is True
    assert not media.exists() and not results.exists()
    assert not any(job["id"] in path for path in svc.storage_snapshot())
    # Gone for good, said as such: not "not ready yet".
    body = assert_error(svc.client.get(f"{JOBS}/{job['id']}/result"), 410, "JOB_PURGED")
    assert "purged" in body["error"]
    kept = svc.job(job["id"])
    assert kept["status"] == "completed" and kept["purged"] is True


def test_unknown_job_is_404(svc: Service) -> None:
    missing = str(uuid.uuid4())
    for response in (svc.client.get(f"{JOBS}/{missing}"),
                     svc.client.get(f"{JOBS}/{missing}/result"),
                     svc.client.get(f"{JOBS}/{missing}/events"),
                     svc.client.delete(f"{JOBS}/{missing}"),
                     svc.client.delete(f"{JOBS}/{missing}", params={"purge": "true"})):
        body = assert_error(response, 404, "JOB_NOT_FOUND")
        assert body["details"]["job_id"] == missing


# --- listing ------------------------------------------------------------------------------

def test_list_pages_newest_first_and_filters_by_status(svc: Service) -> None:
    key = bearer(svc.create_key("lister"))
    assert svc.job_ids(key) == []
    # The fourth waits behind the three before it (lower priority, one worker), so it is
    # still queued when it is canceled right after its submission.
    submitted: list[str] = []
    for i in range(5):
        submitted.append(svc.submit(sine_wav(0.3), f"tone{i}.wav", headers=key,
                                    priority="-100" if i == 3 else "-50")["id"])
        if i == 3:
            canceled = svc.client.delete(f"{JOBS}/{submitted[3]}", headers=key).json()
            assert canceled["status"] == "canceled" and canceled["started_at"] is None

    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = svc.client.get(JOBS, params=params, headers=key)
        assert response.status_code == 200
        page = response.json()
        assert set(page) == {"items", "next_cursor"}
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    listed = [item["id"] for page in pages for item in page]
    assert listed == submitted[::-1]  # newest first, no gaps, no duplicates
    times = [parse_time(item["created_at"]) for page in pages for item in page]
    assert times == sorted(times, reverse=True)
    assert svc.client.get(JOBS, params={"limit": 5}, headers=key).json()["next_cursor"] is None

    for job_id in submitted:
        svc.wait(job_id, headers=key)
    statuses = {job_id: svc.job(job_id, key)["status"] for job_id in submitted}
    assert statuses[submitted[0]] == "completed" and statuses[submitted[3]] == "canceled"
    for status in ("completed", "canceled", "queued", "failed"):
        response = svc.client.get(JOBS, params={"status": status}, headers=key)
        assert response.status_code == 200
        items = response.json()["items"]
        assert all(item["status"] == status for item in items)
        assert [i["id"] for i in items] == [j for j in submitted[::-1] if statuses[j] == status]
    # Other tenants' jobs stay out of this tenant's list and the other way round.
    assert not set(submitted) & set(svc.job_ids())


@pytest.mark.parametrize(("params", "code", "field"), [
    ({"cursor": "not-a-cursor"}, "INVALID_OPTION", "cursor"),
    # base64 of '["not a date", 1]': decodes, but is no position in the list
    ({"cursor": "WyJub3QgYSBkYXRlIiwgMV0"}, "INVALID_OPTION", "cursor"),
    ({"status": "done"}, "INVALID_REQUEST", "status"),
    ({"limit": "0"}, "INVALID_REQUEST", "limit"),
    ({"limit": "201"}, "INVALID_REQUEST", "limit"),
    ({"limit": "many"}, "INVALID_REQUEST", "limit"),
])
def test_bad_list_parameters(svc: Service, params: dict[str, str], code: str,
                             field: str) -> None:
    assert_error(svc.client.get(JOBS, params=params), 422, code, field)


# --- errors -------------------------------------------------------------------------------

def test_error_envelope_on_routing_errors(svc: Service) -> None:
    assert_error(svc.client.get("/api/v1/nothing-here"), 404, "NOT_FOUND")
    response = svc.client.patch(f"{JOBS}/{uuid.uuid4()}")
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    response = svc.client.post(JOBS, content=b"{not json", headers={
        "Content-Type": "application/json"})
    assert set(assert_error(response, 422, "INVALID_REQUEST")) == ENVELOPE_KEYS
    # The request id is one per request, and a sane id from the client is kept.
    first = svc.client.get("/api/v1/nothing-here").json()["request_id"]
    second = svc.client.get("/api/v1/nothing-here").json()["request_id"]
    assert first != second
    response = svc.client.get("/api/v1/nothing-here", headers={"X-Request-ID": "trace-42"})
    assert response.json()["request_id"] == "trace-42" == response.headers["x-request-id"]


# --- health and metrics -------------------------------------------------------------------

def test_health_endpoints(svc: Service) -> None:
    assert svc.client.get("/health/live").json() == {"status": "ok"}
    for path in ("/health", "/health/ready"):
        response = svc.client.get(path)
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "checks": {
            "database": True, "storage": True, "workers": True}}
    detailed = svc.client.get("/health/detailed")
    assert detailed.status_code == 200
    body = detailed.json()
    assert body["status"] == "ok"
    assert body["workers"]["alive"] == body["workers"]["expected"] == 1
    assert len(body["workers"]["pids"]) == 1
    assert all(check["ok"] for check in body["checks"].values())
    assert body["anonymous_access"] is True


def _sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        metric, _, value = line.rpartition(" ")
        if metric.split("{")[0] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', metric))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return None


def test_metrics_count_jobs_audio_and_speed(svc: Service) -> None:
    drain(svc)
    before = svc.client.get("/metrics").text
    model = "faster-whisper/tiny.en"
    audio_before = _sample(before, "hark_audio_seconds_processed_total", model=model) or 0.0
    completed_before = _sample(before, "hark_jobs", status="completed")
    assert completed_before is not None and completed_before >= 1

    job = svc.submit(speech_wav(3.0), "metrics.wav")
    assert svc.wait(job["id"])["status"] == "completed"
    text = ""

    def counted() -> bool:  # the worker's "finished" message reaches the server a moment later
        nonlocal text
        text = svc.client.get("/metrics").text
        return (_sample(text, "hark_audio_seconds_processed_total", model=model) or 0.0) \
            > audio_before

    wait_for(counted, message="the finished job's audio was not counted")
    audio = _sample(text, "hark_audio_seconds_processed_total", model=model) or 0.0
    assert audio - audio_before == pytest.approx(3.0, abs=0.01)
    assert _sample(text, "hark_jobs", status="completed") == completed_before + 1
    assert (_sample(text, "hark_realtime_factor", model=model, stage="overall") or 0) > 0
    assert (_sample(text, "hark_realtime_factor", model=model, stage="transcribe") or 0) > 0
    assert (_sample(text, "hark_http_requests_total", method="POST",
                    route="/api/v1/jobs/upload", status="202") or 0) >= 1
    assert (_sample(text, "hark_http_requests_total", method="GET",
                    route="/api/v1/jobs/{job_id}", status="200") or 0) >= 1

    summary = svc.client.get("/api/v1/metrics")
    assert summary.status_code == 200
    data = summary.json()
    assert set(data) >= {"jobs", "queue_depth", "audio_seconds_processed", "realtime_factor",
                         "model_loads", "http_requests"}
    assert set(data["jobs"]) >= {"queued", "running", "completed", "failed", "canceled"}
    assert data["jobs"]["completed"] == completed_before + 1
    assert data["queue_depth"]["total"] == 0
    assert data["audio_seconds_processed"] >= 3.0
    assert data["realtime_factor"][model]["overall"] > 0
    assert data["http_requests"] > 0
