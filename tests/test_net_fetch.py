"""SSRF-safe fetching against real sockets.

The allowed server listens on 127.0.0.2 (opened by the allow-list, as an operator would
open an internal network); a "forbidden" server listens on 127.0.0.1 and, for IPv6, on
::1. Refusal tests point at those live servers, so a missing check shows up as a
successful fetch, not as a connection error that happens to look like a refusal.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from hark.errors import FetchError, OptionError, UploadTooLargeError, UrlNotAllowedError
from hark.net import BlockedAddressError, FetchResult, check_url, fetch, safe_client
from hark.net.addresses import blocked_reason, is_allowed, parse_networks, refusal
from hark.net.fetch import disposition_filename, sanitize_filename
from tests.support.common import returns_within, wait_for
from tests.support.http_servers import (
    ScriptedServer,
    SniRecorder,
    redirect,
    respond,
    stream,
    trickle,
)

ALLOW = ["127.0.0.2/32"]
AUDIO = b"RIFF....WAVEfmt fake audio bytes" * 100


class Sink:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


@pytest.fixture
def allowed() -> Iterator[ScriptedServer]:
    with ScriptedServer("127.0.0.2") as server:
        yield server


@pytest.fixture
def forbidden() -> Iterator[ScriptedServer]:
    with ScriptedServer("127.0.0.1") as server:
        server.route("/secret", respond(200, b"internal secret"))
        yield server


@pytest.fixture
def forbidden6() -> Iterator[ScriptedServer]:
    try:
        server = ScriptedServer("::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with server:
        server.route("/secret", respond(200, b"internal secret"))
        yield server


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every address a socket of this process tries to connect to, from now on."""
    tried: list[Any] = []
    connect = socket.socket.connect

    def recording(sock: socket.socket, address: Any) -> None:
        tried.append(address)
        connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", recording)
    return tried


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, list[str]], None]:
    """Make host names resolve to chosen addresses (a stand-in for an attacker's DNS)."""
    table: dict[str, list[list[str]]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        answers = table.get(str(host))
        if answers is None:
            return real(host, port, *args, **kwargs)
        addresses = answers.pop(0) if len(answers) > 1 else answers[0]
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
             (a, int(port)))
            for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    def add(host: str, *answers: list[str]) -> None:
        table[host] = list(answers)

    return add


def run_fetch(url: str, sink: Sink | None = None, **kwargs: Any) -> FetchResult:
    options: dict[str, Any] = {"max_bytes": 10_000_000, "timeout": 5.0, "allowed_networks": ALLOW}
    options.update(kwargs)
    return fetch(url, sink if sink is not None else Sink(), **options)


# --- addresses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.255.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.1.1",
        "169.254.169.254", "100.100.100.200", "192.0.0.192", "100.64.0.1", "0.0.0.0",
        "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255", "198.18.0.1",
        "::", "::1", "fe80::1", "fe80::1%eth0", "fc00::1", "fd00:ec2::254", "ff02::1",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1",
        "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "2002:a9fe:a9fe::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:db8::1", "fec0::1",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert blocked_reason(address) is not None
    assert not is_allowed(address)


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111",
                "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert blocked_reason(address) is None
    assert is_allowed(address, ALLOW)


def test_allow_list_opens_exactly_its_networks() -> None:
    assert is_allowed("127.0.0.2", ALLOW)
    assert is_allowed("::ffff:127.0.0.2", ALLOW)  # the same address on the wire
    assert not is_allowed("127.0.0.1", ALLOW)
    assert is_allowed("10.9.8.7", ["10.0.0.0/8"]) and not is_allowed("10.9.8.7", ALLOW)
    assert is_allowed("fd12::5", ["fd12::/16"])
    assert refusal("169.254.169.254", ALLOW) == "cloud metadata endpoint"


def test_bad_allow_list_names_the_setting(allowed: ScriptedServer) -> None:
    with pytest.raises(OptionError) as info:
        parse_networks(["10.0.0.0/8", "not-a-network"])
    assert info.value.details["field"] == "fetch_allowed_networks"
    allowed.route("/a", respond(200, b"x"))
    with pytest.raises(OptionError) as info:
        run_fetch(allowed.url("/a"), allowed_networks=["127.0.0.2/33"])
    assert info.value.details["field"] == "fetch_allowed_networks"
    assert allowed.requests == []


# --- URL syntax ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.2/a.mp3", "file:///etc/passwd", "gopher://127.0.0.2/", "data:,hello",
     "http:///nohost", "http://user:pw@127.0.0.2/a.mp3", "https://token@example.com/a",
     "not a url", ""],
)
def test_urls_hark_will_not_fetch(url: str) -> None:
    sink = Sink()
    with pytest.raises(UrlNotAllowedError) as info:
        run_fetch(url, sink)
    assert info.value.details["field"] == "source.url"
    assert sink.chunks == []


def test_check_url_accepts_plain_http_and_names_the_field() -> None:
    assert check_url("https://example.com/a.mp3?x=1", field="webhook_url").host == "example.com"
    with pytest.raises(UrlNotAllowedError) as info:
        check_url("ftp://example.com/", field="webhook_url")
    assert info.value.details == {"field": "webhook_url"}


# --- successful fetches -------------------------------------------------------------


def test_fetch_from_allowed_server(allowed: ScriptedServer) -> None:
    allowed.route("/dl", respond(200, AUDIO, {
        "Content-Type": "audio/wav; charset=binary",
        "Content-Disposition": 'attachment; filename="../../etc/interview 1.wav"',
    }))
    sink = Sink()
    result = run_fetch(allowed.url("/dl?token=1"), sink)
    assert sink.data == AUDIO
    assert result == FetchResult(final_url=allowed.url("/dl?token=1"), filename="interview 1.wav",
                                 content_type="audio/wav", size=len(AUDIO))
    assert allowed.requests[0].headers["User-Agent"].startswith("Hark/")


def test_relative_redirect_within_allowed_server(allowed: ScriptedServer) -> None:
    allowed.route("/start", redirect("/media/talk%20one.mp3", 301))
    allowed.route("/media/talk%20one.mp3", respond(200, b"abc", {"Content-Type": "audio/mpeg"}))
    sink = Sink()
    result = run_fetch(allowed.url("/start"), sink)
    assert sink.data == b"abc"
    assert result.final_url == allowed.url("/media/talk%20one.mp3")
    assert result.filename == "talk one.mp3"
    assert allowed.paths() == ["/start", "/media/talk%20one.mp3"]


def test_filename_star_wins_and_fallbacks() -> None:
    header = "attachment; filename=\"plain.mp3\"; filename*=UTF-8''%E2%82%AC%20rates.mp3"
    assert disposition_filename(header) == "€ rates.mp3"
    assert disposition_filename('inline; filename="a \\"q\\".wav"') == 'a "q".wav'
    assert disposition_filename("attachment") is None
    assert sanitize_filename("..\\..\\evil\x00name.wav") == "evilname.wav"
    assert sanitize_filename("/../..") is None
    assert len(sanitize_filename("a" * 400 + ".flac").encode()) <= 255  # type: ignore[union-attr]
    assert sanitize_filename("a" * 400 + ".flac").endswith(".flac")  # type: ignore[union-attr]


def test_filename_falls_back_to_download(allowed: ScriptedServer) -> None:
    allowed.route("/", respond(200, b"abc"))
    assert run_fetch(allowed.url("/")).filename == "download"


def test_hostname_is_connected_by_vetted_address(
    allowed: ScriptedServer, fake_dns: Callable[..., None]
) -> None:
    fake_dns("media.test", ["127.0.0.2"])
    allowed.route("/a.wav", respond(200, b"abc"))
    result = run_fetch(f"http://media.test:{allowed.port}/a.wav")
    assert result.size == 3
    assert allowed.requests[0].headers["Host"] == f"media.test:{allowed.port}"


def test_tls_uses_the_host_name_for_sni(fake_dns: Callable[..., None]) -> None:
    fake_dns("sni.test", ["127.0.0.2"])
    # The recorder has no certificate, so the handshake must fail after the hello.
    with SniRecorder("127.0.0.2") as recorder, pytest.raises(FetchError):
        run_fetch(f"https://sni.test:{recorder.port}/a.wav", timeout=3.0)
    assert recorder.names == ["sni.test"]


# --- refused targets ----------------------------------------------------------------


def forbidden_urls(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/secret",
        f"http://localhost:{port}/secret",
        f"http://0.0.0.0:{port}/secret",  # Linux routes 0.0.0.0 to the local host
        f"http://2130706433:{port}/secret",
        f"http://0x7f.1:{port}/secret",
        f"http://0177.0.0.1:{port}/secret",
        f"http://127.1:{port}/secret",
        f"http://[::ffff:127.0.0.1]:{port}/secret",
        f"http://[::ffff:7f00:1]:{port}/secret",
    ]


def test_loopback_in_every_spelling_is_refused(forbidden: ScriptedServer) -> None:
    for url in forbidden_urls(forbidden.port):
        sink = Sink()
        with pytest.raises(UrlNotAllowedError) as info:
            run_fetch(url, sink)
        assert info.value.details["field"] == "source.url", url
        assert sink.chunks == [], url
    assert forbidden.requests == []


def test_transport_refuses_after_resolution_without_url_check(forbidden: ScriptedServer) -> None:
    """The client on its own (as webhooks use it) refuses, with no check_url in front."""
    with safe_client(timeout=2.0, allowed_networks=ALLOW) as client:
        for url in forbidden_urls(forbidden.port):
            if "0177." in url:  # httpx itself rejects a dotted quad with a leading zero
                with pytest.raises(httpx.InvalidURL):
                    client.get(url)
                continue
            with pytest.raises(BlockedAddressError):
                client.get(url)
    assert forbidden.requests == []


def test_ipv6_loopback_is_refused(forbidden6: ScriptedServer) -> None:
    with pytest.raises(UrlNotAllowedError):
        run_fetch(forbidden6.url("/secret"))
    with safe_client(timeout=2.0, allowed_networks=ALLOW) as client, pytest.raises(
        BlockedAddressError
    ):
        client.get(forbidden6.url("/secret"))
    assert forbidden6.requests == []


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://192.168.0.1/",
     "http://100.100.100.200/", "http://[fd00:ec2::254]/", "http://[fe80::1]/",
     "http://[::]/", "http://0/", "http://[::ffff:a9fe:a9fe]/"],
)
def test_private_and_metadata_targets_are_refused(url: str,
                                                  connections: list[Any]) -> None:
    with pytest.raises(UrlNotAllowedError):
        run_fetch(url)
    with safe_client(timeout=2.0, allowed_networks=ALLOW) as client, pytest.raises(
        BlockedAddressError
    ):
        client.get(url)
    assert connections == []  # refused, not timed out trying


def test_host_names_resolving_to_private_addresses_are_refused(
    forbidden: ScriptedServer, fake_dns: Callable[..., None]
) -> None:
    fake_dns("internal.test", ["127.0.0.1"])
    fake_dns("mixed.test", ["127.0.0.2", "127.0.0.1"])  # one bad record is enough
    fake_dns("metadata.test", ["169.254.169.254"])
    for host in ("internal.test", "mixed.test", "metadata.test"):
        with pytest.raises(UrlNotAllowedError) as info:
            run_fetch(f"http://{host}:{forbidden.port}/secret")
        assert info.value.details["host"] == host
    assert forbidden.requests == []


def test_redirect_to_loopback_is_refused_at_the_hop(
    allowed: ScriptedServer, forbidden: ScriptedServer
) -> None:
    allowed.route("/r", redirect(forbidden.url("/secret")))
    allowed.route("/r6", redirect(f"http://[::ffff:127.0.0.1]:{forbidden.port}/secret", 307))
    for path in ("/r", "/r6"):
        sink = Sink()
        with pytest.raises(UrlNotAllowedError) as info:
            run_fetch(allowed.url(path), sink)
        assert info.value.details["field"] == "source.url"
        assert sink.chunks == []
    assert forbidden.requests == []


def test_redirect_to_name_that_rebinds_is_refused(
    allowed: ScriptedServer, forbidden: ScriptedServer, fake_dns: Callable[..., None]
) -> None:
    # First answer points at the allowed server, every later one at loopback.
    fake_dns("rebind.test", ["127.0.0.2"], ["127.0.0.1"])
    allowed.route("/start", redirect(f"http://rebind.test:{forbidden.port}/secret"))
    sink = Sink()
    with pytest.raises(UrlNotAllowedError):
        run_fetch(f"http://rebind.test:{allowed.port}/start", sink)
    assert allowed.paths() == ["/start"]
    assert forbidden.requests == []
    assert sink.chunks == []


def test_redirect_to_other_scheme_is_refused(allowed: ScriptedServer) -> None:
    allowed.route("/r", redirect("file:///etc/passwd"))
    with pytest.raises(UrlNotAllowedError):
        run_fetch(allowed.url("/r"))


def test_too_many_redirects(allowed: ScriptedServer) -> None:
    allowed.route("/loop", redirect("/loop"))
    with pytest.raises(FetchError) as info:
        run_fetch(allowed.url("/loop"), max_redirects=3)
    assert info.value.details["reason"] == "too_many_redirects"
    assert len(allowed.requests) == 4  # the first request and three redirects


# --- limits and failures ------------------------------------------------------------


@pytest.mark.parametrize("declare_length", [True, False])
def test_max_bytes_stops_streaming_early(allowed: ScriptedServer, declare_length: bool) -> None:
    total = 256 * 1024 * 1024
    allowed.route("/big", stream(total, declare_length=declare_length))
    sink = Sink()
    with pytest.raises(UploadTooLargeError) as info:
        run_fetch(allowed.url("/big"), sink, max_bytes=200_000)
    assert info.value.details == {"field": "source.url", "limit": 200_000}
    assert len(sink.data) <= 200_000
    if declare_length:
        assert sink.chunks == []  # refused on the header, before reading any body
    # The server was cut off: its next write found the connection closed.
    wait_for(lambda: allowed.stats.get("hangups"), message="the server went on sending")
    assert allowed.stats.get("sent", 0) < total // 4


def test_exactly_max_bytes_is_fine(allowed: ScriptedServer) -> None:
    allowed.route("/a", stream(100_000, declare_length=False, chunk=7_000))
    assert run_fetch(allowed.url("/a"), max_bytes=100_000).size == 100_000


@pytest.mark.timeout(15)  # without a total deadline the trickle would go on forever
@pytest.mark.parametrize("head_delay", [0.0, 5.0])
def test_slow_server_hits_the_total_deadline(allowed: ScriptedServer, head_delay: float) -> None:
    # Each byte arrives well within any per-read timeout; only a total deadline stops it.
    allowed.route("/slow", trickle(0.1, head_delay=head_delay))
    with pytest.raises(FetchError) as info:
        # The bound is the behaviour, and generous: the trickle itself never ends.
        returns_within(lambda: run_fetch(allowed.url("/slow"), timeout=1.0), 10.0,
                       "the fetch went on past its total deadline")
    assert info.value.details["reason"] == "timeout"


def test_error_status_is_a_fetch_error(allowed: ScriptedServer) -> None:
    sink = Sink()
    with pytest.raises(FetchError) as info:
        run_fetch(allowed.url("/missing"), sink)
    assert info.value.details == {"field": "source.url", "status": 404}
    assert sink.chunks == []
    allowed.route("/oops", respond(503, b"busy"))
    with pytest.raises(FetchError) as info:
        run_fetch(allowed.url("/oops"))
    assert info.value.details["status"] == 503


def test_unreachable_and_unresolvable_hosts_are_fetch_errors() -> None:
    with socket.socket() as probe:  # a port on 127.0.0.2 with nobody listening
        probe.bind(("127.0.0.2", 0))
        port = probe.getsockname()[1]
    with pytest.raises(FetchError) as info:
        run_fetch(f"http://127.0.0.2:{port}/a")
    assert info.value.details["reason"] == "network"
    with pytest.raises(FetchError):
        run_fetch("http://does-not-exist.invalid/a")


def test_environment_proxy_is_ignored(
    allowed: ScriptedServer, forbidden: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy would make the connection on our behalf, past the address check.
    monkeypatch.setenv("HTTP_PROXY", forbidden.url("/"))
    monkeypatch.setenv("ALL_PROXY", forbidden.url("/"))
    allowed.route("/a", respond(200, b"direct"))
    sink = Sink()
    run_fetch(allowed.url("/a"), sink)
    assert sink.data == b"direct"
    assert forbidden.requests == []


def test_client_does_not_follow_redirects(allowed: ScriptedServer) -> None:
    allowed.route("/r", redirect("/a"))
    allowed.route("/a", respond(200, b"x"))
    with safe_client(timeout=2.0, allowed_networks=ALLOW) as client:
        response = client.get(allowed.url("/r"))
    assert response.status_code == 302
    assert allowed.paths() == ["/r"]
    assert isinstance(response, httpx.Response)


@pytest.mark.parametrize(("name", "expected"), [
    ("../../etc/passwd", "passwd"),
    ("C:\\Users\\ann\\talk.m4a", "talk.m4a"),
    ("..hidden.wav", "hidden.wav"),
    ("a\x00b\x1fc.mp3", "abc.mp3"),
    ("x" * 300 + ".flac", "x" * 250 + ".flac"),
    ("ü" * 200 + ".ogg", "ü" * 125 + ".ogg"),
    ("name." + "e" * 40, ("name." + "e" * 40)),
])
def test_one_file_name_rule_everywhere(name: str, expected: str) -> None:
    from hark.filenames import clean_filename

    assert clean_filename(name) == expected
    assert sanitize_filename(name) == expected
    assert len(clean_filename(name).encode()) <= 255
    assert clean_filename("   ") == "upload" and sanitize_filename("..") is None
