"""One error envelope for every 4xx and 5xx of the job API and the operations endpoints:

    {"error": "...", "error_code": "UNSUPPORTED_MEDIA", "details": {"field": "file"},
     "timestamp": "...", "request_id": "..."}

HarkError subclasses carry their own code and status; FastAPI's validation errors
become INVALID_REQUEST with the offending field; anything else is a 500
INTERNAL_ERROR whose message reveals nothing of the server's internals.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from hark.api.request_id import request_id_from_scope
from hark.errors import HarkError
from hark.openai_api import errors as openai_errors

log = logging.getLogger("hark.api")

_HTTP_CODES = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND",
               405: "METHOD_NOT_ALLOWED", 406: "NOT_ACCEPTABLE", 409: "CONFLICT",
               413: "PAYLOAD_TOO_LARGE", 415: "UNSUPPORTED_MEDIA", 422: "INVALID_REQUEST",
               429: "TOO_MANY_REQUESTS", 503: "UNAVAILABLE"}


def envelope(request: Request | None, status: int, message: str, code: str,
             details: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None) -> JSONResponse:
    body = {
        "error": message, "error_code": code, "details": details or {},
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "request_id": request_id_from_scope(request.scope) if request is not None else None,
    }
    return JSONResponse(body, status_code=status, headers=headers)


def error_response(request: Request | None, exc: HarkError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    if exc.status_code == 429:
        headers = {"Retry-After": str(exc.details.get("retry_after", 5))}
    return envelope(request, exc.status_code, exc.message, exc.code, _jsonable(exc.details),
                    headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HarkError)
    async def hark_error(request: Request, exc: HarkError) -> JSONResponse:
        if exc.status_code >= 500:
            log.error("request failed: %s (%s)", exc.message, exc.code)
        if openai_errors.is_openai_path(request):  # /v1: OpenAI's error shape
            return openai_errors.hark_error_response(exc)
        return error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if openai_errors.is_openai_path(request):
            return openai_errors.validation_response(list(errors))
        first = errors[0] if errors else {}
        field = _field_name(first.get("loc", ()))
        message = f"{field}: {first.get('msg', 'invalid value')}" if field else \
            str(first.get("msg", "invalid request"))
        problems = [{"field": _field_name(e.get("loc", ())), "message": e.get("msg")}
                    for e in errors]
        return envelope(request, 422, message, "INVALID_REQUEST",
                        {"field": field, "errors": problems})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
        if exc.status_code == 405:
            # Starlette names the methods of the one route it matched; a path served by
            # several routes (GET and DELETE of a job) allows all of theirs.
            exc.headers = {**(exc.headers or {}), "Allow": _allowed_methods(request)}
        if openai_errors.is_openai_path(request):
            return openai_errors.http_error_response(request, exc.status_code, str(exc.detail),
                                                     dict(exc.headers or {}))
        return envelope(request, exc.status_code, str(exc.detail), code,
                        headers=dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        # This handler runs outside the request-id middleware: set the header here.
        request_id = request_id_from_scope(request.scope)
        if openai_errors.is_openai_path(request):
            return openai_errors.internal_error_response(
                {"X-Request-ID": request_id} if request_id else None)
        return envelope(request, 500, "internal server error", "INTERNAL_ERROR",
                        headers={"X-Request-ID": request_id} if request_id else None)


def _allowed_methods(request: Request) -> str:
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "\0"})
        if match != Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


def _field_name(loc: Any) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return ".".join(parts) or None


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, str | int | float | bool | None | list | dict) else str(v)
            for k, v in details.items()}
