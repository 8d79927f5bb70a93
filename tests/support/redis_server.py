"""A private, throwaway `redis-server` for tests, restartable on the same port.

    with RedisServer(tmp_path) as server:     # starts on a free 127.0.0.1 port
        url = server.url                      # redis://127.0.0.1:<port>/0
        server.stop()                         # the server goes away (clients see a reset)
        server.start()                        # back on the same port, empty
        server.pause(); server.resume()       # SIGSTOP/SIGCONT: a hung server, sockets open

Nothing is persisted (`--save "" --appendonly no`), so a restart also loses every key,
as a crashed cache would. The process is killed on exit, whatever the test did.
A machine without `redis-server` skips the test, unless HARK_REQUIRE_SERVICES=1 (CI).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from types import TracebackType

import pytest

from tests.support.common import free_port, wait_for

DEFAULT_BINARY = "/usr/bin/redis-server"
START_TIMEOUT_SECONDS = 10.0


def redis_server_binary() -> str:
    """The redis-server executable; skips (or fails in CI) when there is none."""
    found = shutil.which("redis-server")
    if found is None and os.access(DEFAULT_BINARY, os.X_OK):
        found = DEFAULT_BINARY
    if found is None:
        reason = "redis-server is not installed (needed for the Redis tests)"
        if os.environ.get("HARK_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason}; HARK_REQUIRE_SERVICES=1 requires it")
        pytest.skip(reason)
    return found




class RedisServer:
    def __init__(self, directory: Path, port: int | None = None,
                 host: str = "127.0.0.1") -> None:
        self.binary = redis_server_binary()
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port or free_port(host)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self.starts += 1
        log = self.directory / f"redis-{self.starts}.log"
        self.process = subprocess.Popen(
            [self.binary, "--bind", self.host, "--port", str(self.port),
             "--dir", str(self.directory), "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--logfile", str(log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        process = self.process

        def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {process.returncode}: "
                                   f"{log.read_text(errors='replace')[-2000:]}")
            return self._answers_ping()

        if not wait_for(answers, START_TIMEOUT_SECONDS, interval=0.02):
            self.kill()
            raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self, *, hard: bool = False) -> None:
        """SIGTERM (a clean shutdown) or, with `hard`, SIGKILL (a crash)."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            self.resume()  # a stopped process would not act on SIGTERM
            if hard:
                process.kill()
            else:
                process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.process = None

    def kill(self) -> None:
        self.stop(hard=True)

    def restart(self, *, hard: bool = False) -> None:
        self.stop(hard=hard)
        self.start()

    def pause(self) -> None:
        """Freeze the server: connections stay open but nothing answers, like a host
        that vanished from the network without resetting its connections."""
        if self.running:
            assert self.process is not None
            os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.running:
            assert self.process is not None
            os.kill(self.process.pid, signal.SIGCONT)

    def command(self, *args: str, timeout: float = 5.0) -> bytes:
        """One command over a raw socket; the server's raw RESP reply (for CLIENT LIST and
        the like, without needing a client library)."""
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
            sock.sendall(b"".join(parts))
            return _read_reply(sock)

    def client_names(self) -> list[str]:
        """The name of every connected client (empty for unnamed ones), this probe excluded."""
        listing = self.command("CLIENT", "LIST").decode()
        names = []
        for line in listing.splitlines():
            fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
            if fields.get("cmd") == "client|list":
                continue
            names.append(fields.get("name", ""))
        return names

    def _answers_ping(self) -> bool:
        try:
            return self.command("PING", timeout=0.5).startswith(b"+PONG")
        except OSError:
            return False

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.kill()


def _read_reply(sock: socket.socket) -> bytes:
    """A whole simple-string, error, integer or bulk-string reply (its payload for bulk)."""
    buffer = b""
    while b"\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("redis-server closed the connection")
        buffer += chunk
    header, _, rest = buffer.partition(b"\r\n")
    if not header.startswith(b"$"):
        return header
    length = int(header[1:])
    if length < 0:
        return b""
    while len(rest) < length + 2:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("redis-server closed the connection")
        rest += chunk
    return rest[:length]
