"""Small helpers every kind of test uses: a free port, and waiting for a condition."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (bound and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(condition: Callable[[], T], timeout: float = 10.0, *, interval: float = 0.05,
             message: str | None = None) -> T:
    """Poll `condition` until it returns something truthy, and return that. Past
    `timeout` seconds the test fails (with `message`), or, without a message, the last
    (falsy) value is returned for the caller to assert on."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            break
        time.sleep(interval)
    if not value and message is not None:
        raise AssertionError(f"{message} (waited {timeout:g} s)")
    return value
