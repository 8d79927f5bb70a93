"""The service's guards against browsers being turned on it, against the real app.

Security headers on every kind of response; the `Host` allow-list (DNS rebinding);
cross-site requests refused when no key is used (CSRF in anonymous local mode); the
operations detail kept for operators. One app without workers (anonymous on
loopback, as the embedded default may be) serves the module: nothing here runs a job.
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import WebSocketDenialResponse

from hark.api.security import host_name
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
    sine_wav,
)

PAGE_POLICY = "default-src 'self'"
DATA_POLICY = "default-src 'none'"
EVIL = "http://evil.example"
CROSS_SITE = {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}


svc = service_fixture(
    "security", workers=False, allowed_hosts=["hark.example.com", "*.corp.example"],
    public_url="https://public.example.org", allowed_origins=["https://app.example"])


def assert_security_headers(response: HttpResponse, policy: str = DATA_POLICY) -> None:
    headers = response.headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["content-security-policy"].startswith(policy), headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


def refused_websocket(svc: Service, path: str, headers: dict[str, str]) -> Any:
    with pytest.raises(WebSocketDenialResponse) as denied, \
            svc.client.websocket_connect(path, headers=headers):
        pass
    return denied.value


# --- headers ------------------------------------------------------------------------------

def test_every_response_carries_the_security_headers(svc: Service) -> None:
    job = svc.submit(sine_wav(0.5), "tone.wav")
    # The page and the API reference keep their own policies (scripts of this origin).
    for path in ("/", "/docs", "/redoc"):
        response = svc.client.get(path)
        assert response.status_code == 200
        assert_security_headers(response, PAGE_POLICY)
        assert "script-src 'self'" in response.headers["content-security-policy"]
    # Everything else is data: nothing may run in it or frame it, and it is sandboxed.
    for path in (JOBS, f"{JOBS}/{job['id']}", f"{JOBS}/no-such-job", f"{API}/nothing",
                 "/static/js/main.js", "/health/live", "/metrics", "/openapi.json",
                 "/v1/models"):
        response = svc.client.get(path)
        assert_security_headers(response)
        assert "sandbox" in response.headers["content-security-policy"], path
    refused = svc.client.post(JOBS, json={"source": {}})
    assert refused.status_code == 422
    assert_security_headers(refused)


# --- Host ---------------------------------------------------------------------------------

@pytest.mark.parametrize("host", [
    "127.0.0.1", "127.0.0.1:8000", "localhost", "LOCALHOST:8000", "localhost.", "[::1]:8000",
    "127.8.9.10", "hark.example.com", "HARK.example.com:443", "a.corp.example",
    "b.a.corp.example", "public.example.org",
])
def test_loopback_and_configured_hosts_are_answered(svc: Service, host: str) -> None:
    response = svc.client.get(JOBS, headers={"Host": host})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("host", [
    "evil.example", "localhost.evil.example", "127.0.0.1.evil.example", "corp.example",
    "xcorp.example", "hark.example.com.evil.example", "192.168.1.5", "[::2]",
    "localhost:notaport", "user@localhost", "localhost/path", "",
])
def test_any_other_host_is_refused(svc: Service, host: str) -> None:
    key = svc.create_key("local", "host-check")
    # With or without a key, for the page, the API, the OpenAI API and a WebSocket.
    for headers in ({"Host": host}, {"Host": host, **bearer(key)}):
        for path in ("/", JOBS, "/health/detailed", "/static/js/main.js"):
            assert_error(svc.client.get(path, headers=headers), 400, "HOST_NOT_ALLOWED")
        openai = svc.client.get("/v1/models", headers=headers)
        assert openai.status_code == 400
        assert openai.json()["error"]["code"] == "host_not_allowed"
        denied = refused_websocket(svc, f"{API}/ws", headers)
        assert_error(denied, 400, "HOST_NOT_ALLOWED")
        assert_security_headers(denied)


def test_probes_and_scrapes_are_answered_on_any_host(svc: Service) -> None:
    """Orchestrators probe a replica and Prometheus scrapes it by its IP address."""
    for path in ("/health", "/health/live", "/health/ready", "/metrics"):
        response = svc.client.get(path, headers={"Host": "10.1.2.3:8000"})
        assert response.status_code == 200, (path, response.text)


def test_host_names_are_read_strictly() -> None:
    assert host_name("LocalHost:8000") == "localhost"
    assert host_name("[::1]:80") == "::1"
    assert host_name("example.com.") == "example.com"
    for header in ("", "a b", "a:b", "a@b", "a/b", "a?b", "a#b", "a\\b", "[::1"):
        assert host_name(header) is None, header


# --- cross-site requests ------------------------------------------------------------------

def test_a_cross_site_request_without_a_key_changes_nothing(svc: Service) -> None:
    before = svc.storage_snapshot()
    jobs_before = svc.job_ids()
    for headers in (CROSS_SITE, {"Origin": EVIL, "Sec-Fetch-Site": "same-site"},
                    {"Origin": EVIL},  # a browser that sends no Sec-Fetch-Site
                    {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        body = assert_error(svc.upload(sine_wav(0.5), "a.wav", headers=headers), 403,
                            "CROSS_SITE_REQUEST")
        assert "API key" in body["error"]
        assert_error(svc.client.post(JOBS, json={"source": {"url": "https://x.example/a"}},
                                     headers=headers), 403, "CROSS_SITE_REQUEST")
        assert_error(svc.client.delete(f"{JOBS}/{jobs_before[0]}", headers=headers)
                     if jobs_before else svc.client.delete(f"{JOBS}/x", headers=headers),
                     403, "CROSS_SITE_REQUEST")
        assert_error(refused_websocket(svc, f"{API}/ws", headers), 403, "CROSS_SITE_REQUEST")
        assert_error(refused_websocket(svc, f"{JOBS}/x/ws", headers), 403,
                     "CROSS_SITE_REQUEST")
        openai = svc.client.post("/v1/audio/transcriptions", headers=headers,
                                 files={"file": ("a.wav", sine_wav(0.5), "audio/wav")},
                                 data={"model": "whisper-1"})
        assert openai.status_code == 403
        assert openai.json()["error"]["code"] == "cross_site_request"
    assert svc.storage_snapshot() == before
    assert svc.job_ids() == jobs_before
    # Reading is not refused: the browser keeps another site from seeing the answer.
    assert svc.client.get(JOBS, headers=CROSS_SITE).status_code == 200


@pytest.mark.parametrize("headers", [
    {},  # a program: curl, an SDK
    {"Origin": "http://127.0.0.1", "Sec-Fetch-Site": "same-origin"},  # the page itself
    {"Origin": "http://127.0.0.1"},  # the page, in a browser without Sec-Fetch-Site
    {"Sec-Fetch-Site": "none"},  # the person, not a page
    {"Origin": "https://app.example", "Sec-Fetch-Site": "cross-site"},  # HARK_ALLOWED_ORIGINS
    {"Origin": "https://public.example.org", "Sec-Fetch-Site": "same-site"},  # HARK_PUBLIC_URL
], ids=["program", "page", "page-no-fetch-site", "person", "allowed-origin", "public-url"])
def test_requests_of_the_page_and_of_programs_pass(svc: Service,
                                                   headers: dict[str, str]) -> None:
    job = svc.submit(sine_wav(0.5), "ok.wav", headers=headers)
    response = svc.client.delete(f"{JOBS}/{job['id']}", headers=headers)
    assert response.status_code == 200, response.text
    with svc.client.websocket_connect(f"{API}/ws", headers=headers) as socket:
        assert socket.receive_json() == {"type": "ready"}


def test_a_cross_site_request_with_a_key_is_not_a_forgery(svc: Service) -> None:
    """Browsers never attach a key by themselves: a request that carries one was
    sent on purpose by a program that holds it."""
    key = svc.create_key("local", "cross-site")
    job = svc.submit(sine_wav(0.5), "keyed.wav", headers={**CROSS_SITE, **bearer(key)})
    assert svc.client.delete(f"{JOBS}/{job['id']}", headers={**CROSS_SITE, **bearer(key)}
                             ).status_code == 200
    with svc.client.websocket_connect(f"{API}/ws?api_key={key}", headers=CROSS_SITE) as socket:
        assert socket.receive_json() == {"type": "ready"}


# --- operations detail --------------------------------------------------------------------

def test_operations_detail_is_for_operator_tenants(tmp_path: Any) -> None:
    settings = service_settings(tmp_path, allow_anonymous=False, operator_tenants=["ops"])
    with serve(settings, workers=False) as server:
        ops = bearer(server.create_key("ops"))
        local = bearer(server.create_key("local"))
        for path in ("/health/detailed", f"{API}/metrics"):
            assert_error(server.client.get(path), 401, "UNAUTHORIZED")
            body = assert_error(server.client.get(path, headers=local), 403, "OPERATOR_ONLY")
            assert "HARK_OPERATOR_TENANTS" in body["error"]
            assert server.client.get(path, headers=ops).status_code == 200
        for path in ("/health", "/health/live", "/health/ready", "/metrics"):
            assert server.client.get(path).status_code == 200, path
        assert server.client.get("/health/detailed", headers=ops).json()["workers"] is None
