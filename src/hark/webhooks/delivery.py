"""One webhook delivery attempt, and the delay before the next one.

`deliver` never raises for network trouble: it reports an outcome and whether trying
again could help, and the dispatcher (which owns the retry loop and its bookkeeping)
decides. The same address rules as source-URL fetching apply, checked at connect time,
and redirects are not followed: a receiver that answers 3xx is misconfigured.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from hark.errors import OptionError, UrlNotAllowedError
from hark.net.addresses import IPNetwork
from hark.net.fetch import check_url
from hark.net.transport import BlockedAddressError, safe_client
from hark.webhooks.signing import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign

WEBHOOK_URL_FIELD = "webhook_url"
MAX_BACKOFF_SECONDS = 300.0
_JITTER = 0.2
# The receiver is busy or rate-limiting us: worth another try, unlike other 4xx.
_RETRYABLE_4XX = frozenset({408, 429})


@dataclass(frozen=True)
class DeliveryOutcome:
    ok: bool
    status_code: int | None
    error: str | None
    retryable: bool


def deliver(
    url: str,
    body: bytes,
    *,
    secret: str,
    event: str,
    delivery_id: str,
    timeout: float,
    allowed_networks: Sequence[str] | Sequence[IPNetwork],
    content_type: str = "application/json",
) -> DeliveryOutcome:
    """POST `body` to `url`, signed with `secret`; `timeout` bounds the whole attempt."""
    try:
        target = check_url(url, field=WEBHOOK_URL_FIELD, allowed_networks=allowed_networks)
    except (UrlNotAllowedError, OptionError) as exc:
        return DeliveryOutcome(ok=False, status_code=None, error=exc.message, retryable=False)
    headers = {
        "Content-Type": content_type,
        SIGNATURE_HEADER: sign(secret, body),
        EVENT_HEADER: event,
        DELIVERY_HEADER: delivery_id,
    }
    deadline = time.monotonic() + timeout
    try:
        with (
            safe_client(timeout=timeout, allowed_networks=allowed_networks,
                        deadline=deadline) as client,
            # Streamed and left unread: the receiver's reply body is of no interest
            # and must not be able to make us buffer megabytes.
            client.stream("POST", target, content=body, headers=headers) as response,
        ):
            status = response.status_code
    except BlockedAddressError as exc:
        return DeliveryOutcome(ok=False, status_code=None, error=exc.message, retryable=False)
    except httpx.TimeoutException:
        return DeliveryOutcome(ok=False, status_code=None,
                               error=f"timed out after {timeout:g} s", retryable=True)
    except httpx.HTTPError as exc:
        return DeliveryOutcome(ok=False, status_code=None,
                               error=f"{type(exc).__name__}: {exc}", retryable=True)
    except (httpx.InvalidURL, UnicodeError, ValueError) as exc:  # e.g. a bad header value
        return DeliveryOutcome(ok=False, status_code=None, error=str(exc), retryable=False)
    return _classify(status)


def _classify(status: int) -> DeliveryOutcome:
    if 200 <= status < 300:
        return DeliveryOutcome(ok=True, status_code=status, error=None, retryable=False)
    if 300 <= status < 400:
        return DeliveryOutcome(ok=False, status_code=status, retryable=False,
                               error=f"receiver answered HTTP {status}; redirects are not followed")
    retryable = status >= 500 or status in _RETRYABLE_4XX
    return DeliveryOutcome(ok=False, status_code=status, error=f"receiver answered HTTP {status}",
                           retryable=retryable)


def backoff_seconds(attempt: int, *, cap: float = MAX_BACKOFF_SECONDS) -> float:
    """Delay before retry number `attempt` (1, 2, ...): 2**attempt s, ±20 %, at most `cap`.

    The jitter spreads retries from many jobs that failed together (a receiver outage)
    so they do not return as one burst.
    """
    base = min(2.0 ** min(max(attempt, 0), 32), cap)
    return min(base * random.uniform(1 - _JITTER, 1 + _JITTER), cap)
