"""HMAC-SHA256 signatures over webhook bodies.

The receiver recomputes `sha256=<hex>` over the raw request body with its secret and
compares it with the `X-Hark-Signature` header (GitHub's scheme, so existing verifier
code works). The body carries the job id and event type, so the signature covers them.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Hark-Signature"
EVENT_HEADER = "X-Hark-Event"
DELIVERY_HEADER = "X-Hark-Delivery"

_PREFIX = "sha256="


def sign(secret: str, body: bytes) -> str:
    """The signature header value for `body`: "sha256=" + hex HMAC-SHA256."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return _PREFIX + digest


def verify(secret: str, body: bytes, signature: str | None) -> bool:
    """True when `signature` is the signature of `body` under `secret` (constant-time)."""
    if not signature:
        return False
    expected = sign(secret, body)
    # compare_digest on bytes: a non-ASCII header value must not raise.
    return hmac.compare_digest(expected.encode("ascii"), signature.strip().encode("utf-8"))
