"""Webhook signing and single-attempt delivery against a real receiver."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from hark.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    DeliveryOutcome,
    backoff_seconds,
    deliver,
    sign,
    verify,
)
from tests.support.common import returns_within
from tests.support.http_servers import Exchange, ScriptedServer, redirect, respond, trickle

ALLOW = ["127.0.0.2/32"]
SECRET = "whsec-test-1234"
BODY = json.dumps({"type": "completed", "job_id": "job_1", "status": "completed"}).encode()


@pytest.fixture
def receiver() -> Iterator[ScriptedServer]:
    with ScriptedServer("127.0.0.2") as server:
        yield server


def verifying(exchange: Exchange) -> None:
    """A receiver as a customer would write it: 204 if the signature holds, else 401."""
    request = exchange.request
    good = verify(SECRET, request.body, request.headers.get(SIGNATURE_HEADER))
    exchange.send_head(204 if good else 401, {"Content-Length": "0"})


def send(url: str, *, secret: str = SECRET, timeout: float = 5.0, **kwargs: Any) -> DeliveryOutcome:
    return deliver(url, BODY, secret=secret, event="job.completed", delivery_id="dlv_42",
                   timeout=timeout, allowed_networks=kwargs.pop("allowed_networks", ALLOW),
                   **kwargs)


# --- signing ------------------------------------------------------------------------


def test_sign_and_verify_round_trip() -> None:
    signature = sign(SECRET, BODY)
    assert signature.startswith("sha256=") and len(signature) == len("sha256=") + 64
    assert signature == sign(SECRET, BODY)  # deterministic
    assert verify(SECRET, BODY, signature)
    assert not verify(SECRET, BODY + b" ", signature)  # tampered body
    assert not verify(SECRET, BODY.replace(b"completed", b"failed", 1), signature)
    assert not verify("other-secret", BODY, signature)
    assert not verify(SECRET, BODY, signature.replace("sha256=", "sha1="))
    assert not verify(SECRET, BODY, None)
    assert not verify(SECRET, BODY, "")
    assert not verify(SECRET, BODY, "sha256=é")  # non-ASCII header value: False, no error


def test_signature_matches_the_documented_recipe() -> None:
    # Receivers in any language: hex(HMAC_SHA256(key=secret, msg=raw body)).
    assert sign("key", b"The quick brown fox jumps over the lazy dog") == (
        "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    )


# --- delivery -----------------------------------------------------------------------


def test_delivery_is_signed_and_verified_by_receiver(receiver: ScriptedServer) -> None:
    receiver.route("/hook", verifying)
    outcome = send(receiver.url("/hook"))
    assert outcome == DeliveryOutcome(ok=True, status_code=204, error=None, retryable=False)
    [request] = receiver.requests
    assert request.method == "POST"
    assert request.body == BODY
    assert request.headers[EVENT_HEADER] == "job.completed"
    assert request.headers[DELIVERY_HEADER] == "dlv_42"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("Hark/")


def test_wrong_secret_is_rejected_by_receiver(receiver: ScriptedServer) -> None:
    receiver.route("/hook", verifying)
    outcome = send(receiver.url("/hook"), secret="not-the-secret")
    assert outcome.ok is False
    assert outcome.status_code == 401
    assert outcome.retryable is False


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (502, True), (503, True), (408, True), (429, True),
     (400, False), (401, False), (404, False), (410, False), (422, False)],
)
def test_status_decides_retry(receiver: ScriptedServer, status: int, retryable: bool) -> None:
    receiver.route("/hook", respond(status, b"{}"))
    outcome = send(receiver.url("/hook"))
    assert outcome.ok is False
    assert outcome.status_code == status
    assert outcome.retryable is retryable
    assert outcome.error is not None and str(status) in outcome.error


def test_any_2xx_is_success(receiver: ScriptedServer) -> None:
    receiver.route("/hook", respond(200, b"thanks" * 10_000))
    assert send(receiver.url("/hook")).ok


def test_redirect_is_a_failure_and_not_followed(receiver: ScriptedServer) -> None:
    receiver.route("/hook", redirect("/elsewhere", 307))
    receiver.route("/elsewhere", respond(204))
    outcome = send(receiver.url("/hook"))
    assert (outcome.ok, outcome.status_code, outcome.retryable) == (False, 307, False)
    assert receiver.paths() == ["/hook"]


def test_refused_address_is_not_retryable() -> None:
    with ScriptedServer("127.0.0.1") as forbidden:
        forbidden.route("/hook", respond(204))
        for url in (forbidden.url("/hook"), f"http://localhost:{forbidden.port}/hook",
                    f"http://2130706433:{forbidden.port}/hook",
                    "http://169.254.169.254/latest/meta-data/"):
            outcome = send(url)
            assert outcome.ok is False, url
            assert outcome.retryable is False, url
            assert outcome.status_code is None
            assert outcome.error is not None and "not allowed" in outcome.error
        assert forbidden.requests == []


def test_bad_scheme_is_not_retryable() -> None:
    outcome = send("ftp://127.0.0.2/hook")
    assert (outcome.ok, outcome.retryable) == (False, False)


def test_unreachable_receiver_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.2", 0))
        port = probe.getsockname()[1]
    outcome = send(f"http://127.0.0.2:{port}/hook")
    assert (outcome.ok, outcome.status_code, outcome.retryable) == (False, None, True)


@pytest.mark.timeout(15)
def test_slow_receiver_times_out_and_is_retryable(receiver: ScriptedServer) -> None:
    receiver.route("/hook", trickle(0.1, head_delay=60.0))
    # The attempt's own 0.5 s timeout ends it: a generous bound tells that from waiting
    # for the receiver's answer (a minute away).
    outcome = returns_within(lambda: send(receiver.url("/hook"), timeout=0.5), 5.0,
                             "the delivery waited for the slow receiver")
    assert receiver.paths() == ["/hook"]  # delivered, then given up on
    assert (outcome.ok, outcome.status_code, outcome.retryable) == (False, None, True)
    assert outcome.error is not None and "timed out" in outcome.error


def test_bad_allow_list_is_reported_not_raised() -> None:
    outcome = send("http://127.0.0.2/hook", allowed_networks=["nonsense"])
    assert (outcome.ok, outcome.retryable) == (False, False)
    assert outcome.error is not None and "fetch_allowed_networks" in outcome.error


# --- backoff ------------------------------------------------------------------------


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    for attempt in range(1, 8):
        samples = [backoff_seconds(attempt) for _ in range(200)]
        assert min(samples) >= 0.8 * 2**attempt
        assert max(samples) <= 1.2 * 2**attempt
        assert len(set(samples)) > 1  # jittered
        # With ±20 % the ranges of successive attempts never overlap: strictly growing.
        assert max(samples) < min(backoff_seconds(attempt + 1) for _ in range(200))
    for attempt in (9, 12, 50, 10_000):
        samples = [backoff_seconds(attempt) for _ in range(200)]
        assert all(240.0 <= s <= 300.0 for s in samples)
    assert 0.8 <= backoff_seconds(0) <= 1.2
    assert 0.8 <= backoff_seconds(-3) <= 1.2
