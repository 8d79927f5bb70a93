"""Outbound HTTP that cannot be pointed at Hark's own network (SSRF protection)."""

from hark.net.addresses import blocked_reason, is_allowed, parse_networks, refusal
from hark.net.fetch import FetchResult, check_url, fetch
from hark.net.transport import BlockedAddressError, safe_client

__all__ = [
    "BlockedAddressError",
    "FetchResult",
    "blocked_reason",
    "check_url",
    "fetch",
    "is_allowed",
    "parse_networks",
    "refusal",
    "safe_client",
]
