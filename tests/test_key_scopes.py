"""API keys with scopes, keys that belong to a person, and the key API: every route of
the route table refuses a key without the scope it needs and lets one with only that
scope through; a person's key is held to their role; keys are made, listed and revoked
over HTTP by admins, and nobody gives a key more than they hold."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect

from hark.accounts.service import create_user, disable, find_user
from hark.audit.actor import COMMAND_LINE
from tests.support.service import (
    API,
    JOBS,
    Service,
    assert_error,
    bearer,
    service_fixture,
    sine_wav,
)

svc = service_fixture("key-scopes", workers=False, allow_anonymous=False)
SCOPES = ("jobs:read", "jobs:write", "speakers:write", "live", "admin")
# An upload slot's PUT carries the slot's own token, not the caller's key.
OWN_AUTHORITY = {("PUT", "/api/v1/uploads/{upload_id}")}


def expected_scope(method: str, route: str) -> str:
    if route.startswith((f"{API}/users", f"{API}/keys", f"{API}/audit",
                         f"{API}/organisation/retention")):
        return "admin"
    if method == "GET":
        return "jobs:read"
    if route.startswith(f"{API}/speakers") or route.endswith("/enroll"):
        return "speakers:write"
    return "jobs:write"


def refused_for_scope(answer: Any, body: dict[str, Any], scope: str) -> bool:
    """Refused for lacking `scope` (a key made by a key is also refused for a scope its
    maker lacks: that is not the route's)."""
    if answer.status_code != 403:
        return False
    # The job API's envelope, or OpenAI's error shape under /v1.
    return (body.get("error_code") == "SCOPE_NOT_ALLOWED"
            and body["details"]["needed"] == scope) or (
        isinstance(body.get("error"), dict) and body["error"].get("code") == "scope_not_allowed")


def person(svc: Service, email: str, role: str, org: str = "acme") -> str:
    with svc.state.db.session(write=True) as session:
        return create_user(session, email=email, organisation=org, role=role,
                           password="correct horse battery", actor=COMMAND_LINE).id


def test_every_route_needs_its_scope(svc: Service) -> None:
    """Generated from the route table, so that a route added later is checked too."""
    only = {scope: svc.create_key("acme", scopes=scope) for scope in SCOPES}
    all_but = {scope: svc.create_key("acme", scopes=" ".join(s for s in SCOPES if s != scope))
               for scope in SCOPES}
    checked = 0
    for route, operations in svc.app.openapi()["paths"].items():
        if not route.startswith((API, "/v1/")) or route.startswith(f"{API}/auth/"):
            continue
        path = route.replace("{", "").replace("}", "")
        for method in sorted(m.upper() for m in operations if m != "head"):
            if (method, route) in OWN_AUTHORITY:
                continue
            scope = expected_scope(method, route)
            for key, refused in ((all_but[scope], True), (only[scope], False)):
                # Streamed: an allowed event stream would never end.
                with svc.client.stream(method, path, headers=bearer(key), json={}) as answer:
                    body = json.loads(answer.read()) if answer.status_code == 403 else {}
                assert refused_for_scope(answer, body, scope) == refused, \
                    (scope, refused, method, route, answer.status_code, body)
                checked += 1
    assert checked > 70


@pytest.mark.parametrize(("path", "scope"), [(f"{API}/live", "live"),
                                             ("/v1/realtime?intent=transcription", "live"),
                                             (f"{API}/ws", "jobs:read")])
def test_sockets_need_their_scope(svc: Service, path: str, scope: str) -> None:
    lacking = svc.create_key("acme", scopes=" ".join(s for s in SCOPES if s != scope))
    with pytest.raises(WebSocketDisconnect) as closed, svc.client.websocket_connect(
            path, headers=bearer(lacking)) as socket:
        socket.receive_json()
    assert closed.value.code == 4403
    with svc.client.websocket_connect(path, headers=bearer(svc.create_key(
            "acme", scopes=scope))) as socket:
        assert socket.receive_json()["type"] in ("ready", "transcription_session.created",
                                                 "session.created", "hello", "snapshot")


def test_a_persons_key_acts_for_them_within_their_role(svc: Service) -> None:
    viewer = person(svc, "viewer@scopes.test", "viewer")
    member = person(svc, "member@scopes.test", "member")
    other = person(svc, "other@scopes.test", "member")
    # A viewer's key holds jobs:write, but the viewer's role does not allow writing.
    viewer_key = svc.create_key("acme", scopes="jobs:read jobs:write", user_id=viewer)
    assert_error(svc.client.post(f"{JOBS}/upload", files={"file": ("a.wav", sine_wav(0.3))},
                                 headers=bearer(viewer_key)), 403, "ROLE_NOT_ALLOWED")
    assert svc.client.get(JOBS, headers=bearer(viewer_key)).status_code == 200

    # A member's key submits jobs as the member: theirs to delete, not another member's.
    member_key = svc.create_key("acme", scopes="jobs:read jobs:write", user_id=member)
    other_key = svc.create_key("acme", scopes="jobs:read jobs:write", user_id=other)
    job = svc.submit(sine_wav(0.3), "mine.wav", headers=bearer(member_key))
    assert_error(svc.client.delete(f"{JOBS}/{job['id']}", headers=bearer(other_key)),
                 403, "ROLE_NOT_ALLOWED")
    assert svc.client.delete(f"{JOBS}/{job['id']}", headers=bearer(member_key)
                             ).status_code == 200

    # Disabled, the person's keys stop working too.
    with svc.state.db.session(write=True) as session:
        disable(session, find_user(session, "member@scopes.test"), actor=COMMAND_LINE)
    svc.state.keys.clear()  # what the cache's TTL does within seconds
    assert_error(svc.client.get(JOBS, headers=bearer(member_key)), 401, "UNAUTHORIZED")


def test_admins_make_list_and_revoke_keys_over_http(svc: Service) -> None:
    admin = svc.create_key("acme", scopes="admin jobs:read", max_priority=10)
    made = svc.client.post(f"{API}/keys", headers=bearer(admin),
                           json={"name": "ci  runner", "scopes": ["jobs:read"]})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["name"] == "ci runner" and body["scopes"] == ["jobs:read"]
    assert body["key"].startswith("hark_") and body["user_id"] is None
    assert svc.client.get(JOBS, headers=bearer(body["key"])).status_code == 200
    assert_error(svc.client.post(f"{JOBS}/upload", files={"file": ("a.wav", sine_wav(0.3))},
                                 headers=bearer(body["key"])), 403, "SCOPE_NOT_ALLOWED")

    listed = svc.client.get(f"{API}/keys", headers=bearer(admin)).json()
    mine = next(k for k in listed if k["id"] == body["id"])
    assert "key" not in mine and "webhook_secret" not in mine
    assert mine["prefix"] == body["key"][:len(mine["prefix"])]

    revoked = svc.client.delete(f"{API}/keys/{body['id']}", headers=bearer(admin))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert_error(svc.client.get(JOBS, headers=bearer(body["key"])), 401, "UNAUTHORIZED")
    assert body["id"] not in {k["id"] for k in svc.client.get(
        f"{API}/keys", headers=bearer(admin)).json()}


def test_nobody_gives_a_key_more_than_they_hold(svc: Service) -> None:
    admin = svc.create_key("acme", scopes="admin jobs:read", max_priority=10)
    assert_error(svc.client.post(f"{API}/keys", headers=bearer(admin),
                                 json={"scopes": ["jobs:write"]}), 403, "SCOPE_NOT_ALLOWED")
    assert_error(svc.client.post(f"{API}/keys", headers=bearer(admin),
                                 json={"scopes": ["jobs:read"], "max_priority": 11}),
                 403, "FORBIDDEN")
    assert_error(svc.client.post(f"{API}/keys", headers=bearer(admin),
                                 json={"scopes": ["root"]}), 422, "INVALID_OPTION")
    # An organisation's key acts as an admin: it cannot make a key that acts as an owner.
    owner = person(svc, "owner@scopes.test", "owner")
    assert_error(svc.client.post(f"{API}/keys", headers=bearer(admin),
                                 json={"scopes": ["jobs:read"], "user_id": owner}),
                 403, "FORBIDDEN")
    # Nor reach into another organisation: its people and keys are not found.
    stranger = person(svc, "stranger@scopes.test", "member", org="globex")
    assert_error(svc.client.post(f"{API}/keys", headers=bearer(admin),
                                 json={"scopes": ["jobs:read"], "user_id": stranger}),
                 404, "NOT_FOUND")
    foreign = svc.create_key("globex", scopes="admin")
    foreign_id = svc.client.get(f"{API}/keys", headers=bearer(foreign)).json()[0]["id"]
    assert_error(svc.client.delete(f"{API}/keys/{foreign_id}", headers=bearer(admin)),
                 404, "NOT_FOUND")
    assert svc.client.get(JOBS, headers=bearer(foreign)).status_code == 403  # no jobs:read
