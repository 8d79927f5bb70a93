"""Which IP addresses Hark may connect to when it fetches a URL or calls a webhook.

The rule is "public unicast internet only": loopback, private, link-local (with the
cloud metadata endpoints), shared/CGNAT, multicast, reserved and documentation ranges
are refused, as is anything `ipaddress` does not consider globally routable. IPv6
forms that embed an IPv4 address (mapped, translated, NAT64, 6to4, Teredo) are judged
by the IPv4 address they lead to, because that is where the packets end up.

An operator can open specific networks with `HARK_FETCH_ALLOWED_NETWORKS` (a list of
CIDRs); an address inside one of them is allowed whatever the rule says. Tests use this
to reach a server on 127.0.0.2 while 127.0.0.1 stays refused.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache

from hark.errors import OptionError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_NETWORKS_FIELD = "fetch_allowed_networks"

# Named so that the refusal says *why*; the order matters only for the reason shown.
# Cloud metadata endpoints come first: they are the classic SSRF prize.
_METADATA = {
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, ...
    ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
    ipaddress.ip_address("fd00:ec2::254"),  # AWS IMDS over IPv6
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    ipaddress.ip_address("192.0.0.192"),  # Oracle Cloud
}

_V4_BLOCKED: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared address space (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay anycast"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("255.255.255.255/32", "broadcast"),
)

_V6_BLOCKED: tuple[tuple[str, str], ...] = (
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    # Deprecated IPv4-compatible addresses (::a.b.c.d); nothing legitimate uses them.
    ("::/96", "IPv4-compatible (deprecated)"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("100::/64", "discard-only"),
    ("2001::/23", "IETF protocol assignments"),
    ("2001:db8::/32", "documentation"),
    ("fc00::/7", "private (unique local)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local (deprecated)"),
    ("ff00::/8", "multicast"),
)


def _compile(table: tuple[tuple[str, str], ...]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(cidr), reason) for cidr, reason in table)


_BLOCKED_V4 = _compile(_V4_BLOCKED)
_BLOCKED_V6 = _compile(_V6_BLOCKED)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")


def parse_address(value: str | IPAddress) -> IPAddress:
    """An address from a string such as getaddrinfo returns; an IPv6 zone (`%eth0`) is dropped."""
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    return ipaddress.ip_address(value.split("%", 1)[0])


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address routes to, for the forms that carry one."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64 or address in _IPV4_TRANSLATED:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # (server, client): the client is the real endpoint
    return None


def _own_reason(address: IPAddress) -> str | None:
    """Why this exact address (not what it embeds) is refused, or None."""
    if address in _METADATA:
        return "cloud metadata endpoint"
    table = _BLOCKED_V4 if isinstance(address, ipaddress.IPv4Address) else _BLOCKED_V6
    for network, reason in table:
        if address in network:
            return reason
    # Belt and braces: the stdlib's view, which tracks the IANA registries.
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_unspecified:
        return "unspecified"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "not globally routable"
    return None


def blocked_reason(address: str | IPAddress) -> str | None:
    """Why Hark refuses to connect to `address` by default; None when it is public."""
    ip = parse_address(address)
    inner = embedded_ipv4(ip)
    if inner is not None and isinstance(ip, ipaddress.IPv6Address):
        # Mapped/translated/NAT64 forms are only another spelling of the IPv4 address
        # (NAT64 is how IPv6-only hosts reach IPv4 sites): judge that address alone.
        # Tunnel forms (6to4, Teredo) must pass both checks.
        inner_reason = _own_reason(inner)
        if inner_reason is not None:
            return f"{inner_reason}, via {ip}"
        if ip.ipv4_mapped is not None or ip in _IPV4_TRANSLATED or ip in _NAT64:
            return None
    return _own_reason(ip)


def parse_networks(values: Iterable[str], *, field: str = ALLOWED_NETWORKS_FIELD) -> tuple[
    IPNetwork, ...
]:
    """CIDR strings from the allow-list; a bad one is a configuration error naming `field`."""
    networks: list[IPNetwork] = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except (ValueError, TypeError) as exc:
            raise OptionError(
                f"{field}: {value!r} is not an IP network in CIDR notation (e.g. 10.1.0.0/16)",
                field=field,
                value=value,
            ) from exc
    return tuple(networks)


@lru_cache(maxsize=32)
def _cached_networks(values: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return parse_networks(values)


def allowed_networks(values: Sequence[str] | Sequence[IPNetwork]) -> tuple[IPNetwork, ...]:
    """Normalise an allow-list given as CIDR strings (Settings) or network objects."""
    if all(isinstance(v, str) for v in values):
        return _cached_networks(tuple(str(v) for v in values))
    return tuple(
        ipaddress.ip_network(v, strict=False) if isinstance(v, str) else v for v in values
    )


def _in_allow_list(ip: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    candidates = [ip]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        candidates.append(ip.ipv4_mapped)  # ::ffff:127.0.0.2 is 127.0.0.2 on the wire
    return any(c.version == n.version and c in n for c in candidates for n in networks)


def refusal(
    address: str | IPAddress, networks: Sequence[str] | Sequence[IPNetwork] = ()
) -> str | None:
    """Why `address` is refused given the allow-list, or None when Hark may connect to it."""
    ip = parse_address(address)
    if networks and _in_allow_list(ip, allowed_networks(networks)):
        return None
    return blocked_reason(ip)


def is_allowed(
    address: str | IPAddress, networks: Sequence[str] | Sequence[IPNetwork] = ()
) -> bool:
    """True when Hark may open a connection to `address`."""
    return refusal(address, networks) is None
