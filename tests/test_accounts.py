"""Signing in: passwords, access and refresh tokens (rotation, reuse detection, cookies,
sign-outs), the organisation's people, and what each role may do, checked for every
route of the app's route table."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect
from typer.testing import CliRunner

from hark.accounts.service import create_user
from hark.audit.actor import COMMAND_LINE
from hark.cli import app as cli
from tests.support.common import wait_for
from tests.support.service import (
    API,
    JOBS,
    Service,
    assert_error,
    bearer,
    commands_on,
    service_fixture,
)

svc = service_fixture("accounts", workers=False, allow_anonymous=False)
runner = CliRunner()
PASSWORD = "correct horse battery"
# Routes whose authority is a token of their own, not the caller's key or sign-in: an
# upload slot's PUT carries the slot's token (given to whoever made the slot).
OWN_AUTHORITY = {("PUT", "/api/v1/uploads/{upload_id}")}
# The organisation's people, keys and audit log: admins and owners only.
ADMIN_ROUTES = (f"{API}/users", f"{API}/keys", f"{API}/audit", f"{API}/organisation/retention")


def add_user(svc: Service, email: str, role: str, org: str = "acme",
             password: str | None = PASSWORD) -> str:
    with svc.state.db.session(write=True) as session:
        return create_user(session, email=email, organisation=org, role=role,
                           password=password, actor=COMMAND_LINE).id


def login(svc: Service, email: str, password: str = PASSWORD, **extra: Any) -> Any:
    return svc.client.post(f"{API}/auth/login",
                           json={"email": email, "password": password, **extra})


def tokens_of(svc: Service, email: str, **extra: Any) -> dict[str, Any]:
    answer = login(svc, email, **extra)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


@pytest.fixture(scope="module")
def people(svc: Service) -> dict[str, str]:
    """An access token per role in organisation acme, and one of another organisation."""
    found = {}
    for role in ("owner", "admin", "member", "viewer"):
        add_user(svc, f"{role}@acme.test", role)
        found[role] = tokens_of(svc, f"{role}@acme.test")["access_token"]
    add_user(svc, "other@globex.test", "owner", org="globex")
    found["other"] = tokens_of(svc, "other@globex.test")["access_token"]
    return found


def test_signing_in_gives_tokens_that_open_the_api(svc: Service, people: dict[str, str]
                                                   ) -> None:
    body = tokens_of(svc, "MEMBER@acme.test")  # e-mail addresses ignore case
    assert body["token_type"] == "bearer" and body["expires_in"] == 900
    assert body["refresh_token"].startswith("hrt_") and body["role"] == "member"
    me = svc.client.get(f"{API}/auth/me", headers=bearer(body["access_token"])).json()
    assert me["user"]["email"] == "member@acme.test" and me["organisation"] == "acme"
    assert me["organisations"] == [{"organisation": "acme", "role": "member"}]
    assert svc.client.get(JOBS, headers=bearer(body["access_token"])).status_code == 200
    # Wrong password and unknown account answer alike.
    wrong = assert_error(login(svc, "member@acme.test", "not the password"), 401,
                         "UNAUTHORIZED")
    unknown = assert_error(login(svc, "nobody@acme.test"), 401, "UNAUTHORIZED")
    assert wrong["error"] == unknown["error"]
    for forged in ("eyJhbGciOiJIUzI1NiJ9.e30.x", body["access_token"][:-3] + "abc"):
        assert_error(svc.client.get(JOBS, headers=bearer(forged)), 401, "UNAUTHORIZED")


def test_guessing_a_password_is_slowed(svc: Service) -> None:
    add_user(svc, "target@acme.test", "member")
    codes = [login(svc, "target@acme.test", f"guess number {i}").status_code
             for i in range(6)]
    assert codes == [401] * 5 + [429]
    refused = login(svc, "target@acme.test")  # even the right password, for now
    assert_error(refused, 429, "RATE_LIMITED")
    assert int(refused.headers["retry-after"]) >= 1


def test_refresh_tokens_rotate_and_a_reused_one_ends_the_sign_in(svc: Service) -> None:
    add_user(svc, "rotate@acme.test", "member")
    first = tokens_of(svc, "rotate@acme.test")
    second = svc.client.post(f"{API}/auth/refresh",
                             json={"refresh_token": first["refresh_token"]}).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert svc.client.get(JOBS, headers=bearer(second["access_token"])).status_code == 200
    # The first token again: a copy exists, so the whole sign-in ends.
    reused = svc.client.post(f"{API}/auth/refresh",
                             json={"refresh_token": first["refresh_token"]})
    assert assert_error(reused, 401, "UNAUTHORIZED")["details"]["reason"] == \
        "refresh_token_reused"
    later = svc.client.post(f"{API}/auth/refresh",
                            json={"refresh_token": second["refresh_token"]})
    assert_error(later, 401, "UNAUTHORIZED")
    wait_for(lambda: svc.client.get(JOBS, headers=bearer(second["access_token"]))
             .status_code == 401, timeout=10, message="access token still accepted")


def test_the_page_keeps_its_refresh_token_in_a_cookie(svc: Service) -> None:
    add_user(svc, "page@acme.test", "viewer")
    answer = login(svc, "page@acme.test", cookie=True)
    assert answer.json()["refresh_token"] is None
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and \
        "path=/api/v1/auth" in cookie
    renewed = svc.client.post(f"{API}/auth/refresh", json={})
    assert renewed.status_code == 200 and renewed.json()["refresh_token"] is None
    access = renewed.json()["access_token"]
    sessions = svc.client.get(f"{API}/auth/sessions", headers=bearer(access)).json()
    assert [s["current"] for s in sessions] == [True]
    out = svc.client.post(f"{API}/auth/logout", json={})
    assert out.status_code == 204 and 'hark_refresh=""' in out.headers["set-cookie"]
    svc.client.cookies.clear()
    wait_for(lambda: svc.client.get(JOBS, headers=bearer(access)).status_code == 401,
             timeout=10, message="signed-out token still accepted")


def test_sessions_and_password_change(svc: Service) -> None:
    add_user(svc, "two@acme.test", "member")
    laptop, phone = tokens_of(svc, "two@acme.test"), tokens_of(svc, "two@acme.test")
    listed = svc.client.get(f"{API}/auth/sessions",
                            headers=bearer(laptop["access_token"])).json()
    assert len(listed) == 2 and sum(s["current"] for s in listed) == 1
    changed = svc.client.post(f"{API}/auth/password", headers=bearer(laptop["access_token"]),
                              json={"current_password": PASSWORD,
                                    "new_password": "a much better one"})
    assert changed.status_code == 204
    # The other sign-in ended; this one goes on; the new password works.
    assert_error(svc.client.post(f"{API}/auth/refresh",
                                 json={"refresh_token": phone["refresh_token"]}), 401,
                 "UNAUTHORIZED")
    assert svc.client.get(JOBS, headers=bearer(laptop["access_token"])).status_code == 200
    assert login(svc, "two@acme.test", "a much better one").status_code == 200
    short = svc.client.post(f"{API}/auth/password", headers=bearer(laptop["access_token"]),
                            json={"current_password": "a much better one",
                                  "new_password": "short"})
    assert_error(short, 422, "INVALID_OPTION", "new_password")


def test_admins_manage_people_and_reset_links(svc: Service, people: dict[str, str]) -> None:
    admin = bearer(people["admin"])
    made = svc.client.post(f"{API}/users", headers=admin,
                           json={"email": "new@acme.test", "role": "member"})
    assert made.status_code == 201, made.text
    user_id = made.json()["user"]["id"]
    assert_error(svc.client.post(f"{API}/users", headers=admin,
                                 json={"email": "boss@acme.test", "role": "owner"}),
                 403, "ROLE_NOT_ALLOWED")
    assert_error(svc.client.post(f"{API}/users", headers=admin,
                                 json={"email": "new@acme.test", "role": "member"}),
                 409, "CONFLICT")
    link = svc.client.post(f"{API}/users/{user_id}/reset-link", headers=admin).json()
    assert link["url"].endswith(f"#/reset/{link['token']}")
    body = {"token": link["token"], "new_password": "chosen by them"}
    assert svc.client.post(f"{API}/auth/reset", json=body).status_code == 204
    assert_error(svc.client.post(f"{API}/auth/reset", json=body), 401, "UNAUTHORIZED")
    access = tokens_of(svc, "new@acme.test", password="chosen by them")["access_token"]
    # Disabled: their sign-in ends and they cannot sign in again.
    disabled = svc.client.patch(f"{API}/users/{user_id}", headers=admin,
                                json={"disabled": True})
    assert disabled.json()["user"]["disabled"] is True
    wait_for(lambda: svc.client.get(JOBS, headers=bearer(access)).status_code == 401,
             timeout=10, message="a disabled user's token still works")
    assert_error(login(svc, "new@acme.test", "chosen by them"), 401, "UNAUTHORIZED")
    # Another organisation's people are not found; the owner cannot be demoted by an admin.
    members = svc.client.get(f"{API}/users", headers=admin).json()
    owner_id = next(m["user"]["id"] for m in members if m["role"] == "owner")
    assert_error(svc.client.patch(f"{API}/users/{owner_id}", headers=admin,
                                  json={"role": "viewer"}), 403, "ROLE_NOT_ALLOWED")
    other = svc.client.get(f"{API}/users", headers=bearer(people["other"])).json()
    assert [m["user"]["email"] for m in other] == ["other@globex.test"]


def test_every_route_holds_to_each_roles_policy(svc: Service, people: dict[str, str]) -> None:
    """Generated from the app's route table (its OpenAPI document lists every HTTP
    route): a route added later is checked too."""
    checked = 0
    for route, operations in svc.app.openapi()["paths"].items():
        if not route.startswith((API, "/v1/")) or route.startswith(f"{API}/auth/"):
            continue
        path = route.replace("{", "").replace("}", "")  # parameters get made-up values
        for method in sorted(m.upper() for m in operations if m != "head"):
            if (method, route) in OWN_AUTHORITY:
                continue
            admin_only = path.startswith(ADMIN_ROUTES)
            for role, forbidden in (("viewer", method != "GET" or admin_only),
                                    ("member", admin_only), ("admin", False)):
                # Streamed: an allowed event stream would never end; a refusal is read.
                with svc.client.stream(method, path, headers=bearer(people[role]),
                                       json={}) as answer:
                    body = json.loads(answer.read()) if answer.status_code == 403 else {}
                # The job API's envelope, or OpenAI's error shape under /v1.
                refused = body.get("error_code") == "ROLE_NOT_ALLOWED" or \
                    (isinstance(body.get("error"), dict) and \
                    body["error"].get("code") == "role_not_allowed")
                assert refused == forbidden, (role, method, route, answer.status_code, body)
                checked += 1
    assert checked > 60


def test_a_viewer_cannot_start_a_live_stream_but_a_member_can(svc: Service,
                                                             people: dict[str, str]) -> None:
    with pytest.raises(WebSocketDisconnect) as closed, svc.client.websocket_connect(
            f"{API}/live", headers=bearer(people["viewer"])) as socket:
        socket.receive_json()
    assert closed.value.code == 4403
    with svc.client.websocket_connect(f"{API}/live",
                                      headers=bearer(people["member"])) as socket:
        assert socket.receive_json()["type"] == "ready"
        socket.send_text(json.dumps({"type": "stop"}))


@pytest.fixture
def local_cli(svc: Service, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with commands_on(svc, monkeypatch):
        yield


def test_the_users_command(svc: Service, local_cli: None) -> None:
    made = runner.invoke(cli, ["users", "create", "cli@acme.test", "--org", "acme",
                               "--role", "owner", "--password-stdin"], input=PASSWORD + "\n")
    assert made.exit_code == 0, made.output
    assert tokens_of(svc, "cli@acme.test")["role"] == "owner"
    assert "cli@acme.test" in runner.invoke(cli, ["users", "list", "--org", "acme"]).stdout
    assert runner.invoke(cli, ["users", "role", "cli@acme.test", "admin", "--org",
                               "acme"]).exit_code == 0
    link = runner.invoke(cli, ["users", "reset-link", "cli@acme.test"]).stdout.strip()
    assert "/#/reset/hrs_" in link
    for args, message in ((["users", "create", "cli@acme.test"], "CONFLICT"),
                          (["users", "create", "x@acme.test", "--role", "king"],
                           "INVALID_OPTION"),
                          (["users", "create", "not-an-address"], "INVALID_OPTION"),
                          (["users", "role", "nobody@acme.test", "member"], "NOT_FOUND")):
        result = runner.invoke(cli, args)
        assert result.exit_code == 1 and message in result.output, (args, result.output)
    # The last owner of an organisation stays one.
    runner.invoke(cli, ["users", "create", "solo@solo.test", "--org", "solo", "--role",
                        "owner"])
    demoted = runner.invoke(cli, ["users", "role", "solo@solo.test", "member", "--org", "solo"])
    assert demoted.exit_code == 1 and "CONFLICT" in demoted.output
    assert runner.invoke(cli, ["users", "disable", "cli@acme.test"]).exit_code == 0
    assert_error(login(svc, "cli@acme.test"), 401, "UNAUTHORIZED")


def test_sign_ins_and_changes_to_people_are_audited(svc: Service, people: dict[str, str]
                                                    ) -> None:
    from sqlalchemy import select

    from hark.audit.models import AuditEvent

    admin_id = add_user(svc, "auditor@acme.test", "admin")
    access = tokens_of(svc, "auditor@acme.test")["access_token"]
    made = svc.client.post(f"{API}/users", headers=bearer(access),
                           json={"email": "audited@acme.test", "role": "viewer"}).json()
    svc.client.patch(f"{API}/users/{made['user']['id']}", headers=bearer(access),
                     json={"role": "member"})
    svc.client.patch(f"{API}/users/{made['user']['id']}", headers=bearer(access),
                     json={"disabled": True})
    with svc.state.db.session() as session:
        events = list(session.scalars(select(AuditEvent).where(
            AuditEvent.actor_user_id == admin_id).order_by(AuditEvent.created_at)))
        seen = [(e.action, e.actor_kind, e.tenant_id, e.target_id, e.details) for e in events]
    assert [s[0] for s in seen] == ["auth.signed_in", "user.created", "user.role_changed",
                                    "user.disabled"]
    assert all(kind == "user" and tenant == "acme" for _, kind, tenant, _, _ in seen)
    assert seen[0][3] == admin_id and seen[1][3] == made["user"]["id"]
    assert seen[2][4] == {"from": "viewer", "to": "member"}


def test_members_change_only_the_jobs_they_submitted(svc: Service, people: dict[str, str]
                                                     ) -> None:
    from tests.support.service import speech_wav

    add_user(svc, "colleague@acme.test", "member")
    colleague = bearer(tokens_of(svc, "colleague@acme.test")["access_token"])
    mine = bearer(people["member"])

    def submit(headers: dict[str, str]) -> str:
        answer = svc.client.post(f"{JOBS}/upload", headers=headers,
                                 files={"file": ("talk.wav", speech_wav(2), "audio/wav")})
        assert answer.status_code == 202, answer.text
        return str(answer.json()["id"])

    job = submit(mine)
    # The organisation's jobs are seen by all its members, changed by their submitter.
    assert svc.client.get(f"{JOBS}/{job}", headers=colleague).status_code == 200
    assert_error(svc.client.delete(f"{JOBS}/{job}", headers=colleague), 403,
                 "ROLE_NOT_ALLOWED")
    assert_error(svc.client.post(f"{JOBS}/{job}/retry", headers=colleague), 403,
                 "ROLE_NOT_ALLOWED")
    assert svc.client.get(f"{JOBS}/{job}", headers=mine).json()["status"] == "queued"
    assert svc.client.delete(f"{JOBS}/{job}", headers=mine).json()["status"] == "canceled"
    # An admin changes anyone's.
    other = submit(colleague)
    purged = svc.client.delete(f"{JOBS}/{other}", params={"purge": "true"},
                               headers=bearer(people["admin"]))
    assert purged.status_code == 200 and purged.json()["purged"] is True


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_the_first_visitor_of_a_local_server_makes_the_owner(
        tmp_path_factory: pytest.TempPathFactory, host: str) -> None:
    from tests.support.service import serve, service_settings

    settings = service_settings(tmp_path_factory.mktemp("setup"), host=host,
                                allowed_hosts=["127.0.0.1"])
    with serve(settings, workers=False) as fresh:
        local = host == "127.0.0.1"
        assert fresh.client.get(f"{API}/auth/providers").json()["setup"] is local
        body = {"email": "me@home.test", "password": PASSWORD}
        made = fresh.client.post(f"{API}/auth/setup", json=body)
        if not local:  # a server others can reach: owners come from the command line
            assert_error(made, 403, "FORBIDDEN")
            return
        assert made.status_code == 201, made.text
        assert made.json()["role"] == "owner" and made.json()["organisation"] == "local"
        assert "hark_refresh=" in made.headers["set-cookie"]
        assert fresh.client.get(f"{API}/auth/providers").json()["setup"] is False
        again = fresh.client.post(f"{API}/auth/setup", json={**body, "email": "x@home.test"})
        assert assert_error(again, 409, "CONFLICT")["details"]["reason"] == "already_set_up"
