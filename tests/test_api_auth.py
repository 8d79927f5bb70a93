"""API keys and tenants over HTTP: who may call what, and who sees which job.

The module's app refuses anonymous requests (as any server not explicitly opened on
loopback does); keys are made through the key service, and through the `hark keys`
command against the same data directory as a server.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from cachetools import TTLCache
from starlette.websockets import WebSocketDisconnect
from typer.testing import CliRunner

from hark.audit.actor import COMMAND_LINE
from hark.cli import app as cli
from hark.keys.service import revoke_key
from hark.runtime import KEY_CACHE_SECONDS
from tests.support.common import wait_for
from tests.support.service import (
    API,
    JOBS,
    HttpResponse,
    Service,
    assert_error,
    bearer,
    serve,
    service_fixture,
    service_settings,
    speech_wav,
)

OPEN_PATHS = ("/health", "/health/live", "/health/ready", "/metrics")
OPERATOR_PATHS = ("/health/detailed", f"{API}/metrics")
runner = CliRunner()


svc = service_fixture("auth", allow_anonymous=False)


@pytest.fixture(scope="module")
def alpha_job(svc: Service) -> dict[str, Any]:
    """A completed job of tenant "alpha"."""
    key = svc.create_key("alpha", "alpha-main")
    job = svc.submit(speech_wav(3.0), "alpha.wav", headers=bearer(key))
    done = svc.wait(job["id"], headers={"X-API-Key": key})
    assert done["status"] == "completed", done
    return {"key": key, **done}


def assert_unauthorized(response: HttpResponse) -> None:
    assert_error(response, 401, "UNAUTHORIZED")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer hark_not-a-real-key"},
    {"Authorization": "Bearer "},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"X-API-Key": "hark_not-a-real-key"},
    {"X-API-Key": "not-even-the-prefix"},
], ids=["none", "bad-bearer", "empty-bearer", "basic", "bad-x-api-key", "no-prefix"])
def test_requests_without_a_valid_key_are_401(svc: Service, headers: dict[str, str]) -> None:
    before = svc.storage_snapshot()
    job_id = str(uuid.uuid4())
    for method, path in (("GET", JOBS), ("GET", f"{JOBS}/{job_id}"),
                         ("GET", f"{JOBS}/{job_id}/result"), ("GET", f"{JOBS}/{job_id}/events"),
                         ("DELETE", f"{JOBS}/{job_id}"), ("POST", f"{API}/uploads"),
                         ("GET", f"{API}/speakers")):
        assert_unauthorized(svc.client.request(method, path, headers=headers))
    # A refused upload is not even read, let alone stored.
    assert_unauthorized(svc.upload(speech_wav(1.0), "a.wav", headers=headers))
    assert_unauthorized(svc.client.post(JOBS, json={"source": {"url": "https://example.com/a"}},
                                        headers=headers))
    assert svc.storage_snapshot() == before


def test_health_and_metrics_need_no_key_but_their_detail_does(svc: Service) -> None:
    for path in OPEN_PATHS:
        response = svc.client.get(path)
        assert response.status_code == 200, (path, response.text)
    # Worker pids, the database, every tenant's counts: an operator's (tenant local) key.
    operator = bearer(svc.create_key("local", "operator"))
    tenant = bearer(svc.create_key("alpha", "tenant"))
    for path in OPERATOR_PATHS:
        assert_unauthorized(svc.client.get(path))
        assert_error(svc.client.get(path, headers=tenant), 403, "OPERATOR_ONLY")
        assert svc.client.get(path, headers=operator).status_code == 200, path
    detailed = svc.client.get("/health/detailed", headers=operator).json()
    assert detailed["anonymous_access"] is False


def test_both_headers_work_and_keys_of_a_tenant_share_its_jobs(
    svc: Service, alpha_job: dict[str, Any],
) -> None:
    key = alpha_job["key"]
    for headers in (bearer(key), {"authorization": f"bearer {key}"}, {"X-API-Key": key}):
        response = svc.client.get(f"{JOBS}/{alpha_job['id']}", headers=headers)
        assert response.status_code == 200 and response.json()["status"] == "completed"
    second = bearer(svc.create_key("alpha", "alpha-second"))
    assert svc.job_ids(second) == [alpha_job["id"]]
    assert svc.client.get(f"{JOBS}/{alpha_job['id']}/result", headers=second).status_code == 200


def test_another_tenant_cannot_see_or_touch_a_job(svc: Service,
                                                  alpha_job: dict[str, Any]) -> None:
    beta = bearer(svc.create_key("beta"))
    job_id = alpha_job["id"]
    beta_job = svc.submit(speech_wav(1.0), "beta.wav", headers=beta)
    for response in (svc.client.get(f"{JOBS}/{job_id}", headers=beta),
                     svc.client.get(f"{JOBS}/{job_id}/result", headers=beta),
                     svc.client.get(f"{JOBS}/{job_id}/result", params={"format": "srt"},
                                    headers=beta),
                     svc.client.get(f"{JOBS}/{job_id}/events", headers=beta),
                     svc.client.delete(f"{JOBS}/{job_id}", headers=beta),
                     svc.client.delete(f"{JOBS}/{job_id}", params={"purge": "true"},
                                       headers=beta)):
        # Exactly what a job that does not exist answers: nothing to tell them apart.
        body = assert_error(response, 404, "JOB_NOT_FOUND")
        assert body["details"] == {"job_id": job_id}
    with pytest.raises(WebSocketDisconnect) as closed, svc.client.websocket_connect(
            f"{JOBS}/{job_id}/ws", headers=beta) as socket:
        socket.receive_json()
    assert closed.value.code == 4404

    assert svc.job_ids(beta) == [beta_job["id"]]
    alpha = bearer(alpha_job["key"])
    assert beta_job["id"] not in svc.job_ids(alpha)
    assert_error(svc.client.get(f"{JOBS}/{beta_job['id']}", headers=alpha), 404,
                 "JOB_NOT_FOUND")
    # Beta's attempts changed nothing.
    job = svc.job(job_id, alpha)
    assert job["status"] == "completed" and job["purged"] is False
    assert (svc.storage_root / "media" / job_id / "source").is_file()
    assert svc.client.get(f"{JOBS}/{job_id}/result", headers=alpha).status_code == 200
    svc.wait(beta_job["id"], headers=beta)


def test_revoked_key_stops_working_within_the_cache_ttl(svc: Service) -> None:
    assert KEY_CACHE_SECONDS <= 5.0  # the promise: a revoked key works at most 5 s more
    state = svc.state
    original = state.keys
    state.keys = TTLCache(100, 0.5)
    try:
        key = svc.create_key("alpha", "to-revoke")
        assert svc.client.get(JOBS, headers=bearer(key)).status_code == 200  # now cached
        with state.db.session(write=True) as session:
            revoke_key(session, key[:12], actor=COMMAND_LINE)
        # The cache here keeps a key 0.5 s; one whose entry never expired would work on
        # for good, so a generous bound tells the two apart.
        wait_for(lambda: svc.client.get(JOBS, headers=bearer(key)).status_code != 200,
                 KEY_CACHE_SECONDS * 2, message="revoked key still accepted")
        assert_unauthorized(svc.client.get(JOBS, headers=bearer(key)))
        assert_unauthorized(svc.client.get(JOBS, headers={"X-API-Key": key}))
    finally:
        state.keys = original


def test_anonymous_access_needs_the_setting_and_a_loopback_bind(tmp_path: Path) -> None:
    for host, allow, anonymous in (("0.0.0.0", True, False), ("::1", True, True),
                                   ("127.0.0.1", True, True), ("127.0.0.1", False, False),
                                   ("192.168.1.5", True, False)):
        settings = service_settings(tmp_path / f"{host}-{allow}", host=host,
                                    allow_anonymous=allow)
        with serve(settings, workers=False) as server:
            response = server.client.get(JOBS)
            if anonymous:
                assert response.status_code == 200, (host, allow)
                assert response.json() == {"items": [], "next_cursor": None}
            else:
                assert_unauthorized(response)
            key = server.create_key("local")
            assert server.client.get(JOBS, headers=bearer(key)).status_code == 200
            detailed = server.client.get("/health/detailed", headers=bearer(key)).json()
            assert detailed["anonymous_access"] is anonymous


def invoke(*args: str) -> Any:
    return runner.invoke(cli, list(args))


def test_keys_cli_against_a_server_on_the_same_data_dir(cli_env: Path) -> None:
    created = invoke("keys", "create", "--json", "--name", "ci robot", "--tenant", "gamma")
    assert created.exit_code == 0, created.output
    info = json.loads(created.stdout)
    assert set(info) == {"id", "name", "tenant", "user", "scopes", "max_priority",
                         "rate_limit", "key", "webhook_secret"}
    # Everything a key could do before scopes, but the organisation's admin routes.
    assert info["scopes"] == ["jobs:read", "jobs:write", "live", "speakers:write"]
    assert info["user"] is None  # the organisation's service account
    assert info["rate_limit"] is None  # the server's HARK_RATE_LIMIT
    assert info["name"] == "ci robot" and info["tenant"] == "gamma"
    assert info["max_priority"] == 0  # normal priority unless the key is given more
    key = info["key"]
    assert key.startswith("hark_") and len(key) > 40

    listed = invoke("keys", "list")
    assert listed.exit_code == 0
    row = next(line for line in listed.stdout.splitlines() if line.startswith(info["id"]))
    fields = row.split("\t")
    assert fields[1] == key[:12] + "…" and fields[2] == "gamma" and fields[3] == "ci robot"
    assert fields[-3:] == ["active", "default rate", "jobs:read,jobs:write,live,speakers:write"]
    assert key not in listed.stdout  # shown once, at creation

    settings = service_settings(cli_env, allow_anonymous=False)
    with serve(settings, workers=False) as server:
        assert server.client.get(JOBS, headers=bearer(key)).status_code == 200
        assert_unauthorized(server.client.get(JOBS))

        revoked = invoke("keys", "revoke", key[:12])
        assert revoked.exit_code == 0, revoked.output
        assert revoked.stdout.strip() == f"Revoked {info['id']}"
        server.state.keys.clear()  # skip the cache's grace period
        assert_unauthorized(server.client.get(JOBS, headers=bearer(key)))

    assert info["id"] not in invoke("keys", "list").stdout
    every = invoke("keys", "list", "--all")
    assert any(line.startswith(info["id"]) and line.split("\t")[-3] == "revoked"
               for line in every.stdout.splitlines())
    unknown = invoke("keys", "revoke", "hark_nothing-like-this")
    assert unknown.exit_code != 0


def test_keys_cli_makes_a_persons_key_with_scopes(cli_env: Path) -> None:
    made = runner.invoke(cli, ["users", "create", "ana@delta.test", "--org", "delta", "--role",
                               "member", "--password-stdin"], input="correct horse battery\n")
    assert made.exit_code == 0, made.output
    created = invoke("keys", "create", "--json", "--user", "ana@delta.test",
                     "--scopes", "jobs:read,live")
    assert created.exit_code == 0, created.output
    info = json.loads(created.stdout)
    # The person's only organisation is the key's.
    assert (info["tenant"], info["user"], info["scopes"]) == \
        ("delta", "ana@delta.test", ["jobs:read", "live"])
    bad = invoke("keys", "create", "--scopes", "jobs:read,everything")
    assert bad.exit_code != 0 and "everything" in bad.output
    stranger = invoke("keys", "create", "--user", "ana@delta.test", "--tenant", "epsilon")
    assert stranger.exit_code != 0 and "not a member" in stranger.output
