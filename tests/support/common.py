"""Small helpers every kind of test uses: a free port, and waiting for a condition.

Tests never measure elapsed time to decide a pass: a loaded machine stretches every
duration. They wait for what should happen with `wait_for` (or `wait_for_async` on an
event loop), whose generous timeout only ends a wait that would otherwise never end;
where a bound on time is the very behaviour under test ("the stream ends within
seconds"), `returns_within` gives it, and the test says why.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar, overload

T = TypeVar("T")

Message = str | Callable[[], str] | None


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (bound and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _fail(message: Message, timeout: float) -> AssertionError:
    text = message() if callable(message) else message
    return AssertionError(f"{text} (waited {timeout:g} s)")


def wait_for(condition: Callable[[], T], timeout: float = 10.0, *, interval: float = 0.05,
             message: Message = None) -> T:
    """Poll `condition` until it returns something truthy, and return that. Past
    `timeout` seconds the test fails (with `message`, a string or a function that makes
    one then), or, without a message, the last (falsy) value is returned for the caller
    to assert on. An exception from `condition` ends the wait at once."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            break
        time.sleep(interval)
    if not value and message is not None:
        raise _fail(message, timeout)
    return value


@overload
async def wait_for_async(condition: Callable[[], Awaitable[T]], timeout: float = ..., *,
                         interval: float = ..., message: Message = ...) -> T: ...


@overload
async def wait_for_async(condition: Callable[[], T], timeout: float = ..., *,
                         interval: float = ..., message: Message = ...) -> T: ...


async def wait_for_async(condition: Callable[[], Any], timeout: float = 10.0, *,
                         interval: float = 0.05, message: Message = None) -> Any:
    """`wait_for` on an event loop: sleeps with `asyncio.sleep`, so the loop goes on
    running, and `condition` may be a coroutine function."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        value = await result if inspect.isawaitable(result) else result
        if value or time.monotonic() > deadline:
            break
        await asyncio.sleep(interval)
    if not value and message is not None:
        raise _fail(message, timeout)
    return value


def returns_within(call: Callable[[], T], timeout: float, message: Message) -> T:
    """Run `call` on a thread of its own and return what it returns (or raise what it
    raises); the test fails if it has not returned within `timeout` seconds.

    Only for a bound on time that is itself the behaviour under test, and then with a
    generous `timeout`: it tells "returns" from "hangs, or waits for something it should
    not", never "fast" from "a little slower". A call that does not return is left
    running on its (daemon) thread."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(call())
        except BaseException as exc:  # handed to the test's thread
            future.set_exception(exc)

    threading.Thread(target=run, name="returns-within", daemon=True).start()
    wait_for(future.done, timeout, interval=0.01, message=message)
    return future.result()
