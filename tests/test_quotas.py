"""Organisation quotas: concurrent jobs, audio a month, stored bytes and live streams,
refused before any work starts and with nothing left behind; usage as the API and the
`hark orgs` command tell it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect
from typer.testing import CliRunner

from hark.audit.actor import COMMAND_LINE
from hark.cli import app as cli
from hark.organisations.service import set_quotas
from tests.support.service import (
    API,
    JOBS,
    Service,
    assert_error,
    bearer,
    commands_on,
    service_fixture,
    speech_wav,
    tree,
)

svc = service_fixture("quotas", workers=False)
runner = CliRunner()


def quotas(svc: Service, tenant: str, **values: float | None) -> None:
    with svc.state.db.session(write=True) as session:
        set_quotas(session, tenant, values, actor=COMMAND_LINE)


def upload(svc: Service, key: str, seconds: float) -> Any:
    return svc.client.post(f"{JOBS}/upload", headers=bearer(key),
                           files={"file": ("talk.wav", speech_wav(seconds), "audio/wav")})


def usage(svc: Service, key: str) -> dict[str, Any]:
    answer = svc.client.get(f"{API}/usage", headers=bearer(key))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_concurrent_jobs_are_limited_per_organisation(svc: Service) -> None:
    key, neighbour = svc.create_key("q-busy"), svc.create_key("q-free")
    quotas(svc, "q-busy", concurrent_jobs=1)
    first = upload(svc, key, 2)
    assert first.status_code == 202, first.text
    media_before = tree(svc.storage_root)
    refused = upload(svc, key, 2)
    body = assert_error(refused, 429, "QUOTA_EXCEEDED")
    assert body["details"]["quota"] == "concurrent_jobs" and body["details"]["limit"] == 1
    assert int(refused.headers["retry-after"]) > 0
    assert tree(svc.storage_root) == media_before  # the refused upload was not kept
    # Another organisation is not affected; a finished job frees the place.
    assert upload(svc, neighbour, 2).status_code == 202
    assert svc.client.delete(f"{JOBS}/{first.json()['id']}",
                             headers=bearer(key)).status_code == 200
    assert upload(svc, key, 2).status_code == 202


def test_audio_a_month_and_stored_bytes(svc: Service) -> None:
    key = svc.create_key("q-audio")
    quotas(svc, "q-audio", audio_seconds_per_month=10)
    assert upload(svc, key, 6).status_code == 202
    body = assert_error(upload(svc, key, 6), 403, "QUOTA_EXCEEDED")
    assert body["details"]["quota"] == "audio_seconds_per_month"
    assert body["details"]["used"] == pytest.approx(6, abs=0.05)
    assert upload(svc, key, 3).status_code == 202  # what fits still goes
    seen = usage(svc, key)
    assert seen["audio_seconds"]["used"] == pytest.approx(9, abs=0.1)
    assert seen["audio_seconds"]["limit"] == 10
    assert seen["concurrent_jobs"] == {"used": 2, "limit": None}

    stored = seen["storage_bytes"]["used"]
    assert stored == (6 + 3) * 16000 * 2 + 2 * 44  # the two WAV files kept
    quotas(svc, "q-audio", audio_seconds_per_month=None, storage_bytes=stored + 1000)
    body = assert_error(upload(svc, key, 1), 403, "QUOTA_EXCEEDED")
    assert body["details"]["quota"] == "storage_bytes"
    assert usage(svc, key)["storage_bytes"] == {"used": stored, "limit": stored + 1000}


def test_live_streams_follow_the_organisations_quota(svc: Service) -> None:
    key = svc.create_key("q-live")
    quotas(svc, "q-live", live_streams=0)
    with pytest.raises(WebSocketDisconnect) as closed, \
            svc.client.websocket_connect(f"{API}/live", headers=bearer(key)) as socket:
        message = socket.receive_json()
        socket.receive_json()
    assert closed.value.code == 4429 and message["error_code"] == "LIVE_STREAMS_FULL"
    assert usage(svc, key)["live_streams"] == {"used": 0, "limit": 0}


@pytest.fixture
def local_cli(svc: Service, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with commands_on(svc, monkeypatch):
        yield


def test_admins_set_retention_and_everyone_reads_the_organisation(svc: Service) -> None:
    admin = svc.create_key("kappa", scopes="admin jobs:read")
    worker = svc.create_key("kappa")  # no admin scope
    quotas(svc, "kappa", concurrent_jobs=3, audio_seconds_per_month=7200)
    shown = svc.client.get(f"{API}/organisation", headers=bearer(worker)).json()
    assert shown["id"] == "kappa"
    assert shown["quotas"] == {"audio_hours_per_month": 2.0, "concurrent_jobs": 3,
                               "storage_bytes": None, "live_streams": None}
    assert shown["retention"] == {"media_days": None, "results_days": None}

    changed = svc.client.patch(f"{API}/organisation/retention", headers=bearer(admin),
                               json={"media_days": 30})
    assert changed.status_code == 200, changed.text
    assert changed.json()["retention"] == {"media_days": 30, "results_days": None}
    # Only the fields given change; null keeps for ever.
    both = svc.client.patch(f"{API}/organisation/retention", headers=bearer(admin),
                            json={"results_days": 365, "media_days": None}).json()
    assert both["retention"] == {"media_days": None, "results_days": 365}
    assert svc.client.get(f"{API}/organisation", headers=bearer(worker)
                          ).json()["retention"]["results_days"] == 365
    for body in ({"media_days": 0}, {"media_days": "soon"}, {"quota": 1}):
        assert_error(svc.client.patch(f"{API}/organisation/retention", headers=bearer(admin),
                                      json=body), 422, "INVALID_REQUEST")
    assert_error(svc.client.patch(f"{API}/organisation/retention", headers=bearer(worker),
                                  json={"media_days": 1}), 403, "SCOPE_NOT_ALLOWED")
    # A tenant nothing was set for: no quotas, everything kept.
    fresh = svc.client.get(f"{API}/organisation", headers=bearer(svc.create_key("lambda")))
    assert fresh.json()["retention"] == {"media_days": None, "results_days": None}


def test_orgs_command(svc: Service, local_cli: None) -> None:
    assert runner.invoke(cli, ["orgs", "create", "q-cli", "--name", "Q  Corp"]).exit_code == 0
    set_ = runner.invoke(cli, ["orgs", "quota", "q-cli", "--audio-hours", "2.5",
                               "--concurrent-jobs", "3", "--live-streams", "unlimited"])
    assert set_.exit_code == 0, set_.output
    shown = json.loads(set_.stdout)
    assert shown["audio_hours_per_month"] == 2.5 and shown["concurrent_jobs"] == 3
    listed = {o["id"]: o for o in json.loads(
        runner.invoke(cli, ["orgs", "list", "--json"]).stdout)}
    assert listed["q-cli"]["name"] == "Q Corp" and listed["q-cli"]["live_streams"] is None
    assert "local" in listed  # the tenant of anonymous use is one too
    cleared = runner.invoke(cli, ["orgs", "quota", "q-cli", "--concurrent-jobs", "unlimited"])
    assert json.loads(cleared.stdout)["concurrent_jobs"] is None
    # A key made for a tenant brings its organisation.
    svc.create_key("q-new")
    assert "q-new" in runner.invoke(cli, ["orgs", "list"]).stdout


@pytest.mark.parametrize(("args", "message"), [
    (["orgs", "quota", "nobody", "--concurrent-jobs", "1"], "NOT_FOUND"),
    (["orgs", "quota", "local", "--concurrent-jobs", "many"], "INVALID_OPTION"),
    (["orgs", "quota", "local", "--storage-bytes", "-5"], "INVALID_OPTION"),
    (["orgs", "create", "no spaces/allowed"], "INVALID_OPTION"),
])
def test_orgs_command_refuses_bad_input(local_cli: None, args: list[str],
                                        message: str) -> None:
    result = runner.invoke(cli, args)
    assert result.exit_code == 1 and message in result.output, result.output
