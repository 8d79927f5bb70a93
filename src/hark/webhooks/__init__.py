"""Webhooks: signed POSTs to a job's `webhook_url` when it completes or fails."""

from hark.webhooks.delivery import DeliveryOutcome, backoff_seconds, deliver
from hark.webhooks.signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    sign,
    verify,
)

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "DeliveryOutcome",
    "backoff_seconds",
    "deliver",
    "sign",
    "verify",
]
