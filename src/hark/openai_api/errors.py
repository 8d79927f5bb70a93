"""Errors under /v1 in OpenAI's shape, so the official SDKs raise their usual exceptions:

    {"error": {"message": "...", "type": "invalid_request_error", "param": "model",
               "code": "model_not_found"}}

The app's error handlers (hark.api.errors) call these for every path under /v1; the
job API keeps Hark's own envelope. Statuses stay Hark's, except that a bad field is a
400 here (OpenAI's status for it, `BadRequestError` in the SDK) rather than a 422; a
recording that is readable but unusable (no audio track, too long) stays a 422.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi.responses import JSONResponse
from starlette.requests import Request

from hark.errors import HarkError, MediaError, NotFoundError

OPENAI_PREFIX = "/v1"


class ModelNotFoundError(NotFoundError):
    """A model name the OpenAI API does not know (or that is not installed here)."""

    code = "MODEL_NOT_FOUND"


# Hark codes whose OpenAI counterparts clients key on.
_OPENAI_CODES = {
    "UNAUTHORIZED": ("invalid_request_error", "invalid_api_key"),
    "MODEL_NOT_FOUND": ("invalid_request_error", "model_not_found"),
    "UNKNOWN_MODEL": ("invalid_request_error", "model_not_found"),
    "QUEUE_FULL": ("requests", "rate_limit_exceeded"),
}


def is_openai_path(request: Request) -> bool:
    path: str = request.url.path
    return path == OPENAI_PREFIX or path.startswith(OPENAI_PREFIX + "/")


def openai_error(status: int, message: str, *, type_: str | None = None,
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, type_=type_, param=param, code=code),
                        status_code=status, headers=headers)


def error_body(status: int, message: str, *, type_: str | None = None,
               param: str | None = None, code: str | None = None) -> dict[str, Any]:
    if type_ is None:
        type_ = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def hark_error_parts(exc: HarkError) -> tuple[int, dict[str, Any]]:
    """The status and body of a HarkError in OpenAI's terms."""
    status = exc.status_code
    if status == 422 and not isinstance(exc, MediaError):
        status = 400
    type_, code = _OPENAI_CODES.get(exc.code, (None, exc.code.lower()))
    param = exc.details.get("field")
    return status, error_body(status, exc.message, type_=type_,
                              param=str(param) if param is not None else None, code=code)


def hark_error_response(exc: HarkError) -> JSONResponse:
    status, body = hark_error_parts(exc)
    headers = None
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    elif status == 429:
        headers = {"Retry-After": "5"}
    return JSONResponse(body, status_code=status, headers=headers)


def validation_response(errors: list[dict[str, Any]]) -> JSONResponse:
    first = errors[0] if errors else {}
    parts = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path",
                                                                "header", "form")]
    param = ".".join(parts) or None
    message = str(first.get("msg", "invalid request"))
    return openai_error(400, f"{param}: {message}" if param else message, param=param,
                        code="invalid_value")


def http_error_response(request: Request, status: int, detail: str,
                        headers: dict[str, str] | None = None) -> JSONResponse:
    if status == 404:
        message = f"Invalid URL ({request.method} {request.url.path})"
    elif status == 405:
        message = f"Method {request.method} is not allowed for {request.url.path}"
    else:
        message = detail
    return openai_error(status, message, headers=headers)


def internal_error_response(headers: dict[str, str] | None = None) -> JSONResponse:
    return openai_error(500, "The server had an error while processing your request.",
                        headers=headers)


# --- a failed job's stored error, as the exception it was ----------------------------

def _subclasses(cls: type[HarkError]) -> Iterator[type[HarkError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def rebuild_error(body: dict[str, Any] | None) -> HarkError:
    """The HarkError a job stored as {"error", "error_code", "details"} when it failed,
    with its class (and so its status) found by its code."""
    body = body or {}
    code = str(body.get("error_code") or HarkError.code)
    message = str(body.get("error") or "the transcription failed")
    details = body.get("details") if isinstance(body.get("details"), dict) else {}
    # Codes are shared by a few classes (UNKNOWN_MODEL): the one in hark.errors wins.
    matches = sorted((c for c in _subclasses(HarkError) if c.code == code),
                     key=lambda c: c.__module__ != HarkError.__module__)
    cls = matches[0] if matches else HarkError
    # Bypass subclass constructors with other signatures: only message and details matter.
    error = cls.__new__(cls)
    HarkError.__init__(error, message, **(details or {}))
    return error
