"""A helper the pure-ASGI middlewares share."""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send


async def call_observed(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send,
    done: Callable[[int, float], None],
) -> None:
    """Run `app`, then call `done(status, seconds)`; a handler that raised before it
    answered counts as a 500."""
    started = time.perf_counter()
    status = 0

    async def send_with_status(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    try:
        await app(scope, receive, send_with_status)
    except BaseException:
        if status == 0:
            status = 500
        raise
    finally:
        done(status, time.perf_counter() - started)
