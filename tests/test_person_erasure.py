"""Erasing a person: everything they submitted (jobs with recordings, results, search
index), the voice profiles they enrolled, their keys and sign-ins go; nothing of them is
left in any table, file or index; the rest of the organisation stays; the last owner
is refused. Over HTTP (an admin) and with `hark users erase`, on SQLite and on
PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from hark.accounts.service import create_user
from hark.audit.actor import COMMAND_LINE, Actor
from hark.cli import app as cli
from hark.db.base import Base
from hark.speakers import service as speakers
from tests.support.service import (
    API,
    Service,
    assert_error,
    bearer,
    both_databases_fixture,
    commands_on,
)

pytestmark = [pytest.mark.corpus]

svc = both_databases_fixture("erasure", allow_anonymous=False)
runner = CliRunner()
PASSWORD = "correct horse battery"


def person(svc: Service, email: str, role: str) -> str:
    with svc.state.db.session(write=True) as session:
        return create_user(session, email=email, organisation="acme", role=role,
                           password=PASSWORD, actor=COMMAND_LINE).id


def enrol(svc: Service, user_id: str, name: str) -> str:
    """A voice profile enrolled by the person (over HTTP it would carry them as actor)."""
    sample = speakers.NewSample(embedding=np.ones(4, np.float32), speech_seconds=3.0,
                                embedder="test")
    with svc.state.db.session(write=True) as session:
        return speakers.enroll(session, "acme", name, [sample],
                               actor=Actor(kind="user", user_id=user_id)).id


def traces(svc: Service, *needles: str) -> list[tuple[str, str, Any]]:
    """Every (table, column, value) of the database holding one of `needles`."""
    found = []
    with svc.state.db.session() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(sa.select(table)).mappings():
                for column, value in row.items():
                    text = value if isinstance(value, str) else repr(value)
                    if any(n in text for n in needles):
                        found.append((table.name, column, value))
    return found


def test_an_admin_erases_a_person_and_nothing_of_them_is_left(
        svc: Service, corpus_dir: Path) -> None:
    admin = bearer(svc.create_key("acme", scopes="admin jobs:read"))
    ana = person(svc, "ana@acme.test", "member")
    bob = person(svc, "bob@acme.test", "member")
    ana_key = bearer(svc.create_key("acme", scopes="jobs:read jobs:write", user_id=ana))
    bob_key = bearer(svc.create_key("acme", scopes="jobs:read jobs:write", user_id=bob))
    speech = (corpus_dir / "asr" / "jfk_inaugural_1961.flac").read_bytes()
    ana_jobs = [svc.submit(speech, "speech.flac", headers=ana_key)["id"] for _ in range(2)]
    bob_job = svc.submit(speech, "speech.flac", headers=bob_key)["id"]
    for job_id in [*ana_jobs, bob_job]:
        assert svc.wait(job_id, headers=admin, timeout=180)["status"] == "completed"
    ana_profile = enrol(svc, ana, "Ana's voice")
    bob_profile = enrol(svc, bob, "Bob's voice")
    signed_in = svc.client.post(f"{API}/auth/login",
                                json={"email": "ana@acme.test", "password": PASSWORD})
    assert signed_in.status_code == 200
    search = svc.client.get(f"{API}/search", params={"q": "country"}, headers=admin).json()
    assert {hit["job_id"] for hit in search["items"]} == {*ana_jobs, bob_job}
    files_before = svc.storage_snapshot()
    assert any(ana_jobs[0] in path for path in files_before)

    erased = svc.client.delete(f"{API}/users/{ana}", headers=admin)
    assert erased.status_code == 200, erased.text
    report = erased.json()
    assert (report["jobs"], report["voice_profiles"], report["api_keys"]) == (2, 1, 1)
    assert report["organisations"] == ["acme"] and report["audit_events_anonymised"] >= 4

    # Nothing of her in any table (her jobs, profile, key, sign-ins, e-mail, id) ...
    left = traces(svc, ana, "ana@acme.test", *ana_jobs, ana_profile)
    assert left == [], "\n".join(map(str, left))
    # ... in storage, or in the search index; the rest of the organisation stays.
    assert not any(job_id in path for path in svc.storage_snapshot() for job_id in ana_jobs)
    search = svc.client.get(f"{API}/search", params={"q": "country"}, headers=admin).json()
    assert {hit["job_id"] for hit in search["items"]} == {bob_job}
    assert svc.job(bob_job, headers=bob_key)["status"] == "completed"
    assert svc.client.get(f"{API}/speakers/{bob_profile}", headers=admin).status_code == 200
    assert_error(svc.client.get(f"{API}/jobs", headers=ana_key), 401, "UNAUTHORIZED")
    assert_error(svc.client.post(f"{API}/auth/login", json={
        "email": "ana@acme.test", "password": PASSWORD}), 401, "UNAUTHORIZED")
    # The erasure itself is audited, without naming her.
    log = svc.client.get(f"{API}/audit", params={"action": "user.erased"}, headers=admin)
    assert [e["target_id"] for e in log.json()["items"]] == ["(erased)"]
    assert_error(svc.client.delete(f"{API}/users/{ana}", headers=admin), 404, "NOT_FOUND")


def test_the_users_command_erases_but_keeps_the_last_owner(
        svc: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    owner = person(svc, "owner@acme.test", "owner")
    person(svc, "cy@acme.test", "viewer")
    with commands_on(svc, monkeypatch):
        unsure = runner.invoke(cli, ["users", "erase", "cy@acme.test"])
        assert unsure.exit_code == 2 and "--yes" in unsure.output
        last = runner.invoke(cli, ["users", "erase", "owner@acme.test", "--yes"])
        assert last.exit_code == 1 and "last owner" in last.output
        done = runner.invoke(cli, ["users", "erase", "cy@acme.test", "--yes"])
        assert done.exit_code == 0, done.output
        assert '"jobs": 0' in done.stdout
    assert traces(svc, "cy@acme.test") == []
    assert traces(svc, owner)  # refused: the owner is all still there
    # An admin key acts as an admin: it cannot erase the owner, who is above it.
    admin = bearer(svc.create_key("acme", scopes="admin"))
    assert_error(svc.client.delete(f"{API}/users/{owner}", headers=admin),
                 403, "ROLE_NOT_ALLOWED")
