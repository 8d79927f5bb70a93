"""Single sign-on against a real OpenID Connect provider running in the test (the
`oidc-provider-mock` package: authlib's authorization server behind Flask, with PKCE
required in front of it by tests/support/pkce.py): the browser's round trip driven over
HTTP, the user made on first sign-in, and every way the answer can be wrong."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.pkce import RequirePkce, serve_in_thread
from tests.support.service import API, JOBS, Service, assert_error, bearer, serve, service_settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    oidc_mock = pytest.importorskip("oidc_provider_mock")


@pytest.fixture(scope="module")
def provider() -> RequirePkce:
    users = [oidc_mock.User(sub="ada-1", claims={"email": "ada@example.test",
                                                 "email_verified": True, "name": "Ada"})]
    return RequirePkce(oidc_mock.app(user_claims=users))


@pytest.fixture(scope="module")
def issuer(provider: RequirePkce) -> Iterator[str]:
    with serve_in_thread(provider) as port:
        yield f"http://localhost:{port}"


@pytest.fixture(scope="module")
def svc(issuer: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    settings = service_settings(tmp_path_factory.mktemp("oidc"), allow_anonymous=False,
                                oidc_issuer=issuer, oidc_client_id="hark-test",
                                oidc_client_secret="s3cret", oidc_organisation="sso-org",
                                oidc_default_role="viewer")
    with serve(settings, workers=False) as service:
        yield service


def start(svc: Service) -> tuple[str, dict[str, str]]:
    svc.client.cookies.clear()
    answer = svc.client.get(f"{API}/auth/oidc/start", follow_redirects=False)
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    return location, {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def authorize(location: str, subject: str) -> dict[str, str]:
    """What the person does at the provider: choose who they are, and allow."""
    answer = httpx.post(location, data={"sub": subject, "action": "authorize"},
                        follow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    back = answer.headers["location"]
    assert back.startswith("http://127.0.0.1/api/v1/auth/oidc/callback?")
    return {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()}


def finish(svc: Service, answer: dict[str, str]) -> Any:
    return svc.client.get(f"{API}/auth/oidc/callback", params=answer, follow_redirects=False)


def test_the_providers_answer_signs_a_new_person_in(svc: Service) -> None:
    assert svc.client.get(f"{API}/auth/providers").json()["oidc"] == {
        "start": f"{API}/auth/oidc/start"}
    location, asked = start(svc)
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
    assert asked["client_id"] == "hark-test" and "openid" in asked["scope"].split()
    assert asked["state"] and asked["nonce"]
    landed = finish(svc, authorize(location, "ada-1"))
    assert landed.status_code == 302 and landed.headers["location"] == "/", landed.text
    assert "hark_refresh=" in landed.headers["set-cookie"]
    tokens = svc.client.post(f"{API}/auth/refresh", json={"cookie": True}).json()
    assert tokens["user"]["email"] == "ada@example.test" and tokens["user"]["name"] == "Ada"
    assert tokens["organisation"] == "sso-org" and tokens["role"] == "viewer"
    assert svc.client.get(JOBS, headers=bearer(tokens["access_token"])).status_code == 200
    # The second time, the same person (no second account).
    location, _ = start(svc)
    finish(svc, authorize(location, "ada-1"))
    again = svc.client.post(f"{API}/auth/refresh", json={"cookie": True}).json()
    assert again["user"]["id"] == tokens["user"]["id"]


def test_wrong_answers_are_refused(svc: Service) -> None:
    location, _ = start(svc)
    answer = authorize(location, "eve@example.test")
    # Another state: not this browser's sign-in.
    reason = assert_error(finish(svc, {**answer, "state": "forged"}), 401,
                          "UNAUTHORIZED")["details"]["reason"]
    assert reason == "oidc_bad_state"
    # The right one works once; the code cannot be used again.
    assert finish(svc, answer).status_code == 302
    location, _ = start(svc)
    fresh = authorize(location, "eve@example.test")
    replay = {**fresh, "code": answer["code"]}
    assert assert_error(finish(svc, replay), 401, "UNAUTHORIZED")["details"]["reason"] == \
        "oidc_code_refused"
    # Without the flow cookie (another browser), or after the person said no.
    svc.client.cookies.clear()
    assert assert_error(finish(svc, fresh), 401, "UNAUTHORIZED")["details"]["reason"] == \
        "oidc_no_flow"
    start(svc)
    denied = finish(svc, {"error": "access_denied", "state": fresh["state"]})
    assert_error(denied, 401, "UNAUTHORIZED")


def test_a_code_is_worth_nothing_without_the_verifier(svc: Service, issuer: str,
                                                      provider: RequirePkce) -> None:
    """PKCE: the code comes back through the browser, where it can leak; the verifier
    never leaves Hark. A stolen code sent to the provider without it is refused (and
    spent), and Hark's own exchanges pass because it sends the right one."""
    refused = provider.refused
    location, asked = start(svc)
    answer = authorize(location, "ada-1")
    stolen = httpx.post(f"{issuer}/oauth2/token", auth=("hark-test", "s3cret"), timeout=10,
                        data={"grant_type": "authorization_code", "code": answer["code"],
                              "redirect_uri": asked["redirect_uri"]})
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    assert assert_error(finish(svc, answer), 401, "UNAUTHORIZED")["details"]["reason"] == \
        "oidc_code_refused"
    assert provider.refused == refused + 2  # the thief's try, then the spent code
    location, _ = start(svc)
    assert finish(svc, authorize(location, "ada-1")).status_code == 302
    assert provider.refused == refused + 2
