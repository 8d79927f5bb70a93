"""Small scripted HTTP servers on real sockets, for outbound-HTTP tests.

    with ScriptedServer("127.0.0.2") as server:
        server.route("/a.mp3", respond(200, b"data"))
        server.route("/r", redirect("/a.mp3"))
        url = server.url("/r")

Every request is recorded (method, path, headers, body) so a test can assert that a
refused target was never contacted. Handlers run in daemon threads; `stop()` does not
wait for a handler that is still trickling bytes (it notices the stop and returns).
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Exchange:
    """What a handler gets: the request, a way to answer, and the server's stop flag."""

    request: Recorded
    handler: BaseHTTPRequestHandler
    stopping: threading.Event
    stats: dict[str, int] = field(default_factory=dict)

    def send_head(self, status: int, headers: Mapping[str, str] | None = None) -> None:
        self.handler.send_response(status)
        for name, value in (headers or {}).items():
            self.handler.send_header(name, value)
        self.handler.end_headers()
        self.handler.wfile.flush()

    def write(self, data: bytes) -> None:
        self.handler.wfile.write(data)
        self.handler.wfile.flush()
        self.stats["sent"] = self.stats.get("sent", 0) + len(data)


Handler = Callable[[Exchange], None]


def respond(status: int, body: bytes = b"", headers: Mapping[str, str] | None = None) -> Handler:
    def handle(exchange: Exchange) -> None:
        exchange.send_head(status, {"Content-Length": str(len(body)), **(headers or {})})
        exchange.write(body)

    return handle


def redirect(location: str, status: int = 302) -> Handler:
    return respond(status, b"moved", {"Location": location})


def stream(total: int, *, declare_length: bool, chunk: int = 64 * 1024) -> Handler:
    """`total` bytes of b"x", with or without Content-Length (then close-delimited)."""
    block = b"x" * chunk

    def handle(exchange: Exchange) -> None:
        headers = {"Content-Type": "audio/wav"}
        if declare_length:
            headers["Content-Length"] = str(total)
        exchange.send_head(200, headers)
        left = total
        while left > 0 and not exchange.stopping.is_set():
            piece = block[: min(chunk, left)]
            exchange.write(piece)
            left -= len(piece)

    return handle


def trickle(interval: float, *, head_delay: float = 0.0) -> Handler:
    """Headers after `head_delay` s, then one byte every `interval` s until stopped."""

    def handle(exchange: Exchange) -> None:
        if exchange.stopping.wait(head_delay):
            return
        exchange.send_head(200, {"Content-Type": "audio/wav"})
        while not exchange.stopping.wait(interval):
            exchange.write(b"x")

    return handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up mid-body are the point of several tests


class ScriptedServer:
    def __init__(self, host: str = "127.0.0.2") -> None:
        self.host = host
        self.routes: dict[str, Handler] = {}
        self.requests: list[Recorded] = []
        self.stats: dict[str, int] = {}
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        server_class = type(
            "_Server6" if ":" in host else "_Server4",
            (_Server,),
            {"address_family": socket.AF_INET6 if ":" in host else socket.AF_INET},
        )
        self._server: ThreadingHTTPServer = server_class((host, 0), self._handler_class())
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class _Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _dispatch(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                recorded = Recorded(self.command, self.path, dict(self.headers.items()), body)
                with owner._lock:
                    owner.requests.append(recorded)
                handler = owner.routes.get(path, respond(404, b"not found"))
                try:
                    handler(Exchange(recorded, self, owner.stopping, owner.stats))
                except (BrokenPipeError, ConnectionResetError):
                    owner.stats["hangups"] = owner.stats.get("hangups", 0) + 1

            # CONNECT too: a server named as a process's proxy then records the HTTPS
            # requests that would have left the machine (its path is host:port).
            do_GET = do_POST = do_PUT = do_HEAD = do_CONNECT = _dispatch

        return _Handler

    @property
    def authority(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return f"http://{self.authority}{path}"

    def route(self, path: str, handler: Handler) -> None:
        self.routes[path] = handler

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests]

    def start(self) -> ScriptedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class SniRecorder:
    """A TLS listener that records the SNI name of each ClientHello, then fails it.

    It has no certificate on purpose: the name arrives before one is needed, and no
    test here should need cryptography tooling.
    """

    def __init__(self, host: str = "127.0.0.2") -> None:
        self.names: list[str | None] = []
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.sni_callback = self._record
        self._sock = socket.create_server((host, 0))
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _record(self, _conn: Any, name: str | None, _ctx: Any) -> None:
        self.names.append(name)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(2)
            try:
                self._context.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                pass
            finally:
                conn.close()

    def __enter__(self) -> SniRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()


