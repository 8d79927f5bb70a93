"""The access log: one line per HTTP request, through the process's structured logs
(`hark.logs`). Run uvicorn with `access_log=False`: this replaces its own. Probes and
scrapes (`/health*`, `/metrics`) are logged at debug level only, so they do not drown
the log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from hark.api.asgi import call_observed
from hark.api.request_id import request_id_from_scope
from hark.logs import get_logger, min_level

ACCESS_LOGGER = "hark.access"


def _is_quiet(path: str, quiet_paths: Iterable[str]) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in quiet_paths)


class AccessLogMiddleware:
    """One log line per HTTP request: method, path, status, duration_ms, client, request_id.

    Pure ASGI (a send wrapper and a timer). Requests under `quiet_paths` (exact path or
    below it) are logged at debug level unless they fail with a 5xx. A request whose
    handler raised before sending a response is logged with status 500; the exception
    itself is logged by the error handler, not here.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        quiet_paths: Iterable[str] = ("/health", "/metrics"),
        logger_name: str = ACCESS_LOGGER,
    ) -> None:
        self.app = app
        self.quiet_paths = tuple(quiet_paths)
        self._log = get_logger(logger_name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        await call_observed(self.app, scope, receive, send,
                            lambda status, elapsed: self._emit(scope, status, elapsed))

    def _emit(self, scope: Scope, status: int, elapsed: float) -> None:
        path: str = scope.get("path", "")
        level = logging.INFO
        if status < 500 and _is_quiet(path, self.quiet_paths):
            level = logging.DEBUG
        if level < min_level():  # quiet probes cost nothing when debug is off
            return
        client = scope.get("client")
        self._log.log(
            level,
            "http_request",
            method=scope.get("method"),
            path=path,
            status=status,
            duration_ms=round(elapsed * 1000.0, 2),
            client=client[0] if client else None,
            request_id=request_id_from_scope(scope),
        )
