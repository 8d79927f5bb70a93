"""The audit log against the real app on SQLite and PostgreSQL: every audited action
writes exactly one event in its own transaction, operators read them through
`GET /api/v1/audit` (filters, paging, JSON lines), other callers are refused, and
`hark audit list` reads them from the local database.

The app runs without workers: jobs stay queued, and a finished job is made by writing
a result into storage and marking the job completed, so no model is loaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from hark.audit.actor import COMMAND_LINE
from hark.audit.models import AuditEvent, AuditEventImmutableError
from hark.cli import app as cli
from hark.jobs.keys import result_key
from hark.jobs.models import Job
from hark.keys.service import authenticate, create_key, revoke_key
from hark.pipeline.transcript import Segment, Transcript
from hark.speakers.service import NewSample
from tests.support.service import (
    API,
    JOBS,
    Service,
    assert_error,
    bearer,
    serve,
    service_settings,
    sine_wav,
)
from tests.test_db import throwaway_postgres

pytestmark = [pytest.mark.services]

AUDIT = f"{API}/audit"
runner = CliRunner()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def svc(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The app with the operator tenant `ops`; anonymous local callers (tenant `local`)
    are allowed but are not operators here."""
    folder = tmp_path_factory.mktemp(f"audit-{request.param}")
    overrides: dict[str, Any] = {"operator_tenants": ["ops"]}
    if request.param == "postgresql":
        with throwaway_postgres() as url, \
                serve(service_settings(folder, database_url=url, **overrides),
                      workers=False) as service:
            yield service
    else:
        with serve(service_settings(folder, **overrides), workers=False) as service:
            yield service


@pytest.fixture(scope="module")
def keys(svc: Service) -> dict[str, str]:
    """A key of the operator tenant and of two ordinary tenants, by tenant."""
    return {tenant: svc.create_key(tenant) for tenant in ("ops", "alpha", "beta")}


def key_id(svc: Service, secret: str) -> str:
    with svc.state.db.session() as session:
        key = authenticate(session, secret)
        assert key is not None
        return key.id


def events_about(svc: Service, target_id: str) -> list[AuditEvent]:
    """The stored events of one target, oldest first (read from the table, not the API)."""
    with svc.state.db.session() as session:
        return list(session.scalars(
            sa.select(AuditEvent).where(AuditEvent.target_id == target_id)
            .order_by(AuditEvent.created_at, AuditEvent.id)))


def actions_about(svc: Service, target_id: str) -> list[str]:
    return [event.action for event in events_about(svc, target_id)]


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


def audit_page(svc: Service, secret: str, **params: Any) -> dict[str, Any]:
    response = svc.client.get(AUDIT, params=params, headers=bearer(secret))
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def every_page(svc: Service, secret: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = audit_page(svc, secret, **params, **({"cursor": cursor} if cursor else {}))
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


# --- recording ------------------------------------------------------------------------------

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


def test_events_cannot_be_changed_or_removed(svc: Service, keys: dict[str, str]) -> None:
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


# --- reading: access -----------------------------------------------------------------------

def test_operators_see_their_own_tenant_and_others_on_request(
    svc: Service, keys: dict[str, str],
) -> None:
    ops = keys["ops"]
    own = every_page(svc, ops, limit=500)
    assert own and {item["tenant_id"] for item in own} == {"ops"}
    assert key_id(svc, ops) in {item["target_id"] for item in own}  # its own creation

    svc.submit(sine_wav(0.5), "seen.wav", headers=bearer(keys["alpha"]))
    alpha = every_page(svc, ops, tenant="alpha", limit=500)
    assert {item["tenant_id"] for item in alpha} == {"alpha"}
    assert "job.created" in {item["action"] for item in alpha}


def test_callers_who_are_not_operators_are_refused(svc: Service, keys: dict[str, str]) -> None:
    for headers in (bearer(keys["alpha"]), {}):  # a tenant's key; anonymous `local`
        for params in ({}, {"tenant": "alpha"}, {"format": "jsonl"}):
            assert_error(svc.client.get(AUDIT, params=params, headers=headers),
                         403, "OPERATOR_ONLY")


# --- reading: filters, paging, export ---------------------------------------------------------

@pytest.fixture(scope="module")
def ledger(svc: Service, keys: dict[str, str]) -> list[str]:
    """Tenant `ledger`: five keys made and two of them revoked (seven events). Returns
    the keys' ids, in the order they were made."""
    ids = []
    with svc.state.db.session(write=True) as session:
        for n in range(5):
            ids.append(create_key(session, name=f"k{n}", tenant_id="ledger",
                                  actor=COMMAND_LINE).key.id)
    for revoked in ids[:2]:
        with svc.state.db.session(write=True) as session:
            revoke_key(session, revoked, actor=COMMAND_LINE)
    return ids


def test_pages_follow_the_cursor_newest_first_without_gaps_or_repeats(
    svc: Service, keys: dict[str, str], ledger: list[str],
) -> None:
    pages = []
    cursor = None
    while True:
        page = audit_page(svc, keys["ops"], tenant="ledger", limit=3,
                          **({"cursor": cursor} if cursor else {}))
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [3, 3, 1]
    items = [item for page in pages for item in page]
    assert len({item["id"] for item in items}) == 7
    order = [(datetime.fromisoformat(item["created_at"]), item["id"]) for item in items]
    assert order == sorted(order, reverse=True)
    assert {item["target_id"] for item in items} == set(ledger)


def test_filters_narrow_the_list(svc: Service, keys: dict[str, str], ledger: list[str]) -> None:
    ops = keys["ops"]
    revoked = every_page(svc, ops, tenant="ledger", action="key.revoked")
    assert sorted(item["target_id"] for item in revoked) == sorted(ledger[:2])
    about = every_page(svc, ops, tenant="ledger", target_id=ledger[0])
    assert sorted(item["action"] for item in about) == ["key.created", "key.revoked"]
    assert len(every_page(svc, ops, tenant="ledger", actor="cli")) == 7
    assert every_page(svc, ops, tenant="ledger", actor="anonymous") == []
    assert every_page(svc, ops, tenant="ledger", actor=key_id(svc, ops)) == []

    newest_first = every_page(svc, ops, tenant="ledger")
    pivot = newest_first[3]["created_at"]  # ISO 8601 with Z, as the API writes it
    since = every_page(svc, ops, tenant="ledger", since=pivot)
    until = every_page(svc, ops, tenant="ledger", until=pivot)
    assert {i["id"] for i in since} | {i["id"] for i in until} == \
        {i["id"] for i in newest_first}
    assert not {i["id"] for i in since} & {i["id"] for i in until}
    assert newest_first[3]["id"] in {i["id"] for i in since}
    # No offset means UTC.
    naive = every_page(svc, ops, tenant="ledger", since=pivot.removesuffix("Z"))
    assert [i["id"] for i in naive] == [i["id"] for i in since]


@pytest.mark.parametrize(("params", "status", "code", "field"), [
    ({"since": "yesterday"}, 422, "INVALID_OPTION", "since"),
    ({"until": "2026-13-01"}, 422, "INVALID_OPTION", "until"),
    ({"since": "2026-12-02", "until": "2026-12-01"}, 422, "INVALID_OPTION", "until"),
    ({"action": "job.exploded"}, 422, "INVALID_OPTION", "action"),
    ({"cursor": "not-a-cursor"}, 422, "INVALID_OPTION", "cursor"),
    ({"cursor": "not-a-cursor", "format": "jsonl"}, 422, "INVALID_OPTION", "cursor"),
    ({"limit": "501"}, 422, "INVALID_REQUEST", "limit"),
    ({"limit": "0"}, 422, "INVALID_REQUEST", "limit"),
    ({"format": "xml"}, 422, "INVALID_REQUEST", "format"),
])
def test_bad_filters_are_refused_with_an_error_code(
    svc: Service, keys: dict[str, str], params: dict[str, str], status: int, code: str,
    field: str,
) -> None:
    assert_error(svc.client.get(AUDIT, params=params, headers=bearer(keys["ops"])),
                 status, code, field)


def test_json_lines_export_streams_every_matching_event(
    svc: Service, keys: dict[str, str], ledger: list[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    ops = keys["ops"]
    paged = [item["id"] for item in every_page(svc, ops, tenant="ledger")]
    # Batches of two, so the export has to carry on from batch to batch.
    monkeypatch.setattr("hark.audit.service.MAX_PAGE", 2)
    response = svc.client.get(AUDIT, params={"tenant": "ledger", "format": "jsonl"},
                              headers=bearer(ops))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = response.text.splitlines()
    assert [json.loads(line)["id"] for line in lines] == paged
    assert all(json.loads(line)["tenant_id"] == "ledger" for line in lines)

    by_accept = svc.client.get(AUDIT, params={"tenant": "ledger", "limit": 3},
                               headers={**bearer(ops), "Accept": "application/x-ndjson"})
    assert [json.loads(line)["id"] for line in by_accept.text.splitlines()] == paged[:3]


# --- the command line -------------------------------------------------------------------------

def test_cli_records_key_events_and_lists_them(cli_env: Path) -> None:
    made = runner.invoke(cli, ["keys", "create", "--name", "ci", "--tenant", "acme", "--json"])
    assert made.exit_code == 0, made.output
    new_key = json.loads(made.stdout)["id"]
    for _ in range(2):  # revoking a revoked key is no second event
        assert runner.invoke(cli, ["keys", "revoke", new_key]).exit_code == 0

    listed = runner.invoke(cli, ["audit", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    events = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [e["action"] for e in events] == ["key.revoked", "key.created"]
    assert {(e["tenant_id"], e["target_id"], e["actor_kind"], e["actor_key_id"],
             e["request_id"]) for e in events} == {("acme", new_key, "cli", None, None)}

    table = runner.invoke(cli, ["audit", "list", "--action", "key.created", "--tenant", "acme"])
    assert table.exit_code == 0, table.output
    (row,) = table.stdout.splitlines()
    assert row.split("\t")[1:5] == ["acme", "key.created", f"key:{new_key}", "cli"]

    none = runner.invoke(cli, ["audit", "list", "--tenant", "nobody"])
    assert none.exit_code == 0 and none.stdout == ""
    assert "No audit events match" in none.stderr
    later = runner.invoke(cli, ["audit", "list", "--since", "2999-01-01T00:00:00Z"])
    assert later.exit_code == 0 and later.stdout == ""


@pytest.mark.parametrize(("option", "value"), [("--since", "last tuesday"),
                                               ("--until", "2026-02-30"),
                                               ("--action", "key.lost")])
def test_cli_refuses_a_bad_filter_with_a_message(cli_env: Path, option: str,
                                                 value: str) -> None:
    result = runner.invoke(cli, ["audit", "list", option, value])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "error:" in result.stderr and "[INVALID_OPTION]" in result.stderr
    assert option.removeprefix("--") in result.stderr
