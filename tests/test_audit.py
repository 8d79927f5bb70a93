"""The audit log records every audited action exactly once, in the action's own
transaction, on SQLite and PostgreSQL: job submission, cancel, retry and purge, result,
transcript and recording downloads, voice enrolment and removal, and key changes (the
command line's are in test_audit_api.py). Events cannot be changed afterwards.

The app runs without workers: jobs stay queued, and a finished job is made by writing
a result into storage and marking the job completed, so no model is loaded.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from hark.audit.actor import COMMAND_LINE
from hark.audit.models import AuditEvent, AuditEventImmutableError
from hark.jobs.keys import result_key
from hark.jobs.models import Job
from hark.keys.service import create_key
from hark.organisations.erasure import erase_organisation
from hark.pipeline.transcript import Segment, Transcript
from hark.speakers.service import NewSample
from tests.support.audit import actions_about, audit_service_fixture, events_about, key_id
from tests.support.service import API, JOBS, Service, assert_error, bearer, sine_wav

svc = audit_service_fixture("audit")


@pytest.fixture(scope="module")
def keys(svc: Service) -> dict[str, str]:
    return {tenant: svc.create_key(tenant) for tenant in ("alpha", "beta")}


def with_request_id(secret: str | None, request_id: str) -> dict[str, str]:
    headers = bearer(secret) if secret else {}
    return {**headers, "X-Request-ID": request_id}


def complete(svc: Service, job_id: str) -> None:
    """Give a queued job a stored result, as a worker would have."""
    transcript = Transcript(text="hello there", language="en", language_probability=1.0,
                            duration=1.0, model="pocketsphinx",
                            segments=[Segment(id=0, start=0.0, end=1.0, text="hello there")])
    key = result_key(job_id, 1)
    svc.state.storage.put_bytes(key, json.dumps(transcript.to_dict()).encode())
    with svc.state.db.session(write=True) as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.status, job.result_key, job.attempts = "completed", key, 1
        job.finished_at = datetime.now(UTC)


def test_job_submission_cancel_retry_and_purge_each_record_one_event(
    svc: Service, keys: dict[str, str],
) -> None:
    alpha = keys["alpha"]
    job = svc.submit(sine_wav(0.5), "a.wav", headers=with_request_id(alpha, "req-create"))
    (created,) = events_about(svc, job["id"])
    assert (created.action, created.tenant_id, created.actor_kind, created.actor_key_id) == \
        ("job.created", "alpha", "key", key_id(svc, alpha))
    assert (created.target_type, created.request_id, created.client_address) == \
        ("job", "req-create", "testclient")
    assert created.details == {"model": job["model"], "source": "upload"}

    canceled = svc.client.delete(f"{JOBS}/{job['id']}", headers=with_request_id(alpha, "req-x"))
    assert canceled.status_code == 200, canceled.text
    # Canceling a canceled job changes nothing, so it records nothing either.
    assert svc.client.delete(f"{JOBS}/{job['id']}", headers=bearer(alpha)).status_code == 200
    assert actions_about(svc, job["id"]) == ["job.created", "job.canceled"]
    assert events_about(svc, job["id"])[1].request_id == "req-x"

    retried = svc.client.post(f"{JOBS}/{job['id']}/retry", headers=bearer(alpha))
    assert retried.status_code == 202, retried.text
    assert actions_about(svc, retried.json()["id"]) == ["job.created"]

    for _ in range(2):  # the second purge has nothing left to delete
        purged = svc.client.delete(f"{JOBS}/{job['id']}", params={"purge": "true"},
                                   headers=bearer(alpha))
        assert purged.status_code == 200, purged.text
    assert actions_about(svc, job["id"]) == ["job.created", "job.canceled", "job.purged"]


def test_purging_a_queued_job_records_the_cancel_and_the_purge(
    svc: Service, keys: dict[str, str],
) -> None:
    job = svc.submit(sine_wav(0.5), "b.wav", headers=bearer(keys["beta"]))
    response = svc.client.delete(f"{JOBS}/{job['id']}", params={"purge": "true"},
                                 headers=bearer(keys["beta"]))
    assert response.status_code == 200, response.text
    assert sorted(actions_about(svc, job["id"])) == ["job.canceled", "job.created",
                                                     "job.purged"]
    assert {e.tenant_id for e in events_about(svc, job["id"])} == {"beta"}


def test_an_anonymous_local_caller_is_recorded_without_a_key(svc: Service) -> None:
    job = svc.submit(sine_wav(0.5), "anon.wav", headers={"X-Request-ID": "req-anon"})
    (event,) = events_about(svc, job["id"])
    assert (event.tenant_id, event.actor_kind, event.actor_key_id, event.request_id) == \
        ("local", "anonymous", None, "req-anon")


def test_downloads_of_results_and_recordings_are_recorded(
    svc: Service, keys: dict[str, str],
) -> None:
    alpha = keys["alpha"]
    job = svc.submit(sine_wav(1.0), "talk.wav", headers=bearer(alpha))
    # Not finished yet: the refused download is no download.
    assert_error(svc.client.get(f"{JOBS}/{job['id']}/result", headers=bearer(alpha)),
                 409, "JOB_NOT_READY")
    assert actions_about(svc, job["id"]) == ["job.created"]
    complete(svc, job["id"])

    result = svc.client.get(f"{JOBS}/{job['id']}/result", params={"format": "srt"},
                            headers=with_request_id(alpha, "req-srt"))
    assert result.status_code == 200 and "hello there" in result.text
    transcript = svc.client.get(f"{JOBS}/{job['id']}/transcript", headers=bearer(alpha))
    assert transcript.status_code == 200, transcript.text
    downloads = [e for e in events_about(svc, job["id"]) if e.action == "result.downloaded"]
    assert [(e.details, e.actor_key_id) for e in downloads] == [
        ({"format": "srt"}, key_id(svc, alpha)),
        ({"format": "transcript", "revision": 0}, key_id(svc, alpha))]
    assert downloads[0].request_id == "req-srt"

    media = f"{JOBS}/{job['id']}/media"
    assert svc.client.get(media, headers=bearer(alpha)).status_code == 200
    # A player seeking reads from the middle: part of the same listening, not recorded.
    seek = svc.client.get(media, headers={**bearer(alpha), "Range": "bytes=100-199"})
    assert seek.status_code == 206
    start = svc.client.get(media, headers={**bearer(alpha), "Range": "bytes=0-99"})
    assert start.status_code == 206
    assert actions_about(svc, job["id"]).count("media.downloaded") == 2

    link = svc.client.get(f"{media}/link", headers=bearer(alpha))
    assert link.status_code == 200, link.text
    assert svc.client.get(link.json()["url"]).status_code == 200  # no key: the link's
    last = events_about(svc, job["id"])[-1]
    assert (last.action, last.actor_kind, last.actor_key_id, last.tenant_id) == \
        ("media.downloaded", "link", key_id(svc, alpha), "alpha")


def test_speaker_enrolment_samples_and_removal_are_recorded(
    svc: Service, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A fixed embedding instead of the voice encoder: the audit log is what is tested.
    def fake_sample(_path: Path, settings: Any, *, filename: str, field: str) -> NewSample:
        return NewSample(embedding=np.ones(256, dtype=np.float32), speech_seconds=5.0,
                         embedder=settings.diarizer, source=filename)

    monkeypatch.setattr("hark.speakers.endpoints.sample_from_upload", fake_sample)
    beta = keys["beta"]
    files = {"files": ("ada.wav", sine_wav(0.2), "audio/wav")}
    first = svc.client.post(f"{API}/speakers", data={"name": "Ada"}, files=files,
                            headers=with_request_id(beta, "req-enrol"))
    assert first.status_code == 201, first.text
    again = svc.client.post(f"{API}/speakers", data={"name": "Ada"}, files=files,
                            headers=bearer(beta))
    assert again.status_code == 200, again.text
    speaker_id = first.json()["id"]
    more = svc.client.post(f"{API}/speakers/{speaker_id}/samples", files=files,
                           headers=bearer(beta))
    assert more.status_code == 200, more.text
    assert_error(svc.client.delete(f"{API}/speakers/not-a-profile", headers=bearer(beta)),
                 404, "SPEAKER_NOT_FOUND")
    removed = svc.client.delete(f"{API}/speakers/{speaker_id}", headers=bearer(beta))
    assert removed.status_code == 200, removed.text

    events = events_about(svc, speaker_id)
    assert [(e.action, e.details) for e in events] == [
        ("speaker.enrolled", {"created": True, "samples": 1}),
        ("speaker.enrolled", {"created": False, "samples": 1}),
        ("speaker.samples_added", {"samples": 1}),
        ("speaker.deleted", {})]
    assert {(e.tenant_id, e.target_type, e.actor_key_id) for e in events} == \
        {("beta", "speaker", key_id(svc, beta))}
    assert events[0].request_id == "req-enrol"
    assert events_about(svc, "not-a-profile") == []


def test_a_rolled_back_action_leaves_no_event(svc: Service) -> None:
    with pytest.raises(RuntimeError), svc.state.db.session(write=True) as session:
        doomed = create_key(session, name="doomed", tenant_id="gamma", actor=COMMAND_LINE)
        assert [e.action for e in session.scalars(sa.select(AuditEvent).where(
            AuditEvent.target_id == doomed.key.id))] == ["key.created"]
        raise RuntimeError("the action fails after its event was added")
    assert events_about(svc, doomed.key.id) == []


def test_a_job_submission_that_fails_after_recording_leaves_no_event(
    svc: Service, monkeypatch: pytest.MonkeyPatch,
) -> None:
    epsilon = svc.create_key("epsilon")

    def refuse(*_args: Any) -> None:
        raise RuntimeError("announcing the job failed")

    # Fails after the job and its event were added to the request's transaction.
    monkeypatch.setattr("hark.jobs.intake.announce_created", refuse)
    with pytest.raises(RuntimeError, match="announcing"):
        svc.submit(sine_wav(0.5), "lost.wav", headers=bearer(epsilon))
    with svc.state.db.session() as session:
        assert session.scalars(sa.select(Job.id).where(Job.tenant_id == "epsilon")).all() == []
        assert session.scalars(sa.select(AuditEvent.action).where(
            AuditEvent.tenant_id == "epsilon")).all() == ["key.created"]


def test_events_cannot_be_changed_or_removed(svc: Service) -> None:
    with svc.state.db.session(write=True) as session:
        created = create_key(session, name="fixed", tenant_id="delta", actor=COMMAND_LINE)
    (event,) = events_about(svc, created.key.id)
    with pytest.raises(AuditEventImmutableError), \
            svc.state.db.session(write=True) as session:
        stored = session.get(AuditEvent, event.id)
        assert stored is not None
        stored.action = "key.revoked"
        session.flush()
    with pytest.raises(AuditEventImmutableError), \
            svc.state.db.session(write=True) as session:
        stored = session.get(AuditEvent, event.id)
        assert stored is not None
        session.delete(stored)
        session.flush()
    assert [(e.id, e.action) for e in events_about(svc, created.key.id)] == \
        [(event.id, "key.created")]


def test_erasing_an_organisation_anonymises_its_events_and_no_others(
    svc: Service, keys: dict[str, str],
) -> None:
    doomed = svc.create_key("erasable")
    gone = svc.submit(sine_wav(0.5), "gone.wav", headers=with_request_id(doomed, "req-gone"))
    stays = svc.submit(sine_wav(0.5), "stays.wav",
                       headers=with_request_id(keys["alpha"], "req-stays"))
    before = {e.id: e for e in events_about(svc, gone["id"])
              + events_about(svc, key_id(svc, doomed))}
    assert len(before) == 2

    report = erase_organisation(svc.state.db, svc.state.storage, "erasable")
    assert report.audit_events_anonymised == 2
    with svc.state.db.session() as session:
        after = {e.id: e for e in session.scalars(
            sa.select(AuditEvent).where(AuditEvent.id.in_(before)))}
        assert session.scalars(sa.select(AuditEvent).where(
            AuditEvent.tenant_id == "erasable")).all() == []
    # What happened, to what and when stays; whose it was and who did it goes.
    assert {(e.action, e.target_id, e.created_at) for e in after.values()} == \
        {(e.action, e.target_id, e.created_at) for e in before.values()}
    assert {(e.tenant_id, e.actor_key_id, e.client_address, e.request_id, str(e.details))
            for e in after.values()} == {("(erased)", None, None, None, "{}")}
    (kept,) = events_about(svc, stays["id"])
    assert (kept.tenant_id, kept.client_address, kept.request_id) == \
        ("alpha", "testclient", "req-stays")
