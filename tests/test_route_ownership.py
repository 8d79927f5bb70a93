"""Every route that names a resource, from the app's route table, against real
resources of organisation acme: nobody of another organisation reaches one (not even
its owner), and a member changes only what they submitted. With `test_accounts`
(every route × every role) and `test_key_scopes` (every route × every scope) this is
the whole matrix: a route added later is checked by all three."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from hark.accounts.service import create_user
from hark.audit.actor import COMMAND_LINE, Actor
from hark.speakers import service as speakers
from tests.support.service import (
    API,
    JOBS,
    Service,
    bearer,
    service_fixture,
    speech_wav,
)

svc = service_fixture("ownership", allow_anonymous=False)
PASSWORD = "correct horse battery"
# Not an organisation's: the server's model list; an upload slot's PUT carries the
# slot's own token.
NOT_OWNED = {"/v1/models/{model_id}", "/api/v1/uploads/{upload_id}"}


def token(svc: Service, email: str, role: str, org: str) -> str:
    with svc.state.db.session(write=True) as session:
        create_user(session, email=email, organisation=org, role=role, password=PASSWORD,
                    actor=COMMAND_LINE)
    answer = svc.client.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


@pytest.fixture(scope="module")
def world(svc: Service) -> Iterator[dict[str, Any]]:
    """acme: a member's finished job, a voice profile, a key and a viewer; people of acme
    and the owner of another organisation."""
    people = {"member": token(svc, "member@acme.test", "member", "acme"),
              "colleague": token(svc, "colleague@acme.test", "member", "acme"),
              "stranger": token(svc, "owner@globex.test", "owner", "globex")}
    viewer = token(svc, "viewer@acme.test", "viewer", "acme")
    job = svc.submit(speech_wav(6), headers=bearer(people["member"]), diarize="true")
    assert svc.wait(job["id"], headers=bearer(people["member"]), timeout=180
                    )["status"] == "completed"
    sample = speakers.NewSample(embedding=np.ones(4, np.float32), speech_seconds=3.0,
                                embedder="test")
    with svc.state.db.session(write=True) as session:
        profile = speakers.enroll(session, "acme", "Ada", [sample],
                                  actor=Actor(kind="cli")).id
    me = svc.client.get(f"{API}/auth/me", headers=bearer(viewer)).json()
    key_id = svc.client.get(f"{API}/keys", headers=bearer(svc.create_key(
        "acme", scopes="admin"))).json()[0]["id"]
    transcript = svc.client.get(f"{JOBS}/{job['id']}/transcript",
                                headers=bearer(people["member"])).json()
    speaker = transcript["transcript"]["segments"][0].get("speaker") or "SPEAKER_00"
    yield {"people": people, "ids": {"job_id": job["id"], "speaker_id": profile,
                                     "user_id": me["user"]["id"], "key_id": key_id},
           "job_speaker": speaker}


def owned_routes(svc: Service) -> Iterator[tuple[str, str]]:
    for route, operations in svc.app.openapi()["paths"].items():
        if "{" not in route or route in NOT_OWNED or route.startswith(f"{API}/auth/"):
            continue
        for method in sorted(m.upper() for m in operations if m != "head"):
            yield method, route


def fill(route: str, world: dict[str, Any]) -> str:
    path = route.replace("{job_id}", world["ids"]["job_id"])
    if route.startswith(f"{JOBS}/"):  # a speaker of the job's transcript
        path = path.replace("{speaker_id}", world["job_speaker"])
    for name, value in world["ids"].items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, route
    return path


BODIES = {"enroll": {"name": "Someone"}}


def call(svc: Service, method: str, path: str, who: str) -> tuple[int, dict[str, Any]]:
    body = BODIES.get(path.rsplit("/", 1)[-1], {})
    with svc.client.stream(method, path, headers=bearer(who), json=body) as answer:
        status = answer.status_code
        # Streamed: an event stream that was let through would never end.
        data = json.loads(answer.read()) if status >= 400 else {}
    return status, data


def test_nobody_of_another_organisation_reaches_anything(svc: Service,
                                                        world: dict[str, Any]) -> None:
    checked = 0
    for method, route in owned_routes(svc):
        status, body = call(svc, method, fill(route, world), world["people"]["stranger"])
        # Not found, as if it did not exist (a malformed body may be refused first).
        allowed = (404,) if method in ("GET", "DELETE") else (404, 422)
        assert status in allowed, (method, route, status, body)
        checked += 1
    assert checked >= 15


def test_a_member_changes_only_what_they_submitted(svc: Service,
                                                   world: dict[str, Any]) -> None:
    changing = [(m, r) for m, r in owned_routes(svc)
                if r.startswith(f"{JOBS}/") and m != "GET"]
    assert len(changing) >= 5
    colleague = world["people"]["colleague"]
    for method, route in changing:
        status, body = call(svc, method, fill(route, world), colleague)
        assert (status, body.get("error_code")) == (403, "ROLE_NOT_ALLOWED"), \
            (method, route, status, body)
    # Reading the organisation's jobs is every member's.
    for method, route in owned_routes(svc):
        if route.startswith(f"{JOBS}/") and method == "GET":
            status, body = call(svc, method, fill(route, world), colleague)
            assert status < 400, (route, status, body)
    # Nothing was made by the refused enrolment.
    profiles = svc.client.get(f"{API}/speakers", headers=bearer(colleague)).json()
    assert [p["name"] for p in profiles["items"]] == ["Ada"]
