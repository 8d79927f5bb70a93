"""What the OpenAPI document says beyond what FastAPI infers: the error envelope every
route can answer with, the request bodies of routes that stream their uploads (FastAPI
cannot see those), and how to authenticate.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel


class ErrorEnvelope(BaseModel):
    """Every 4xx and 5xx of the job API and the operations endpoints."""

    error: str
    error_code: str
    details: dict[str, Any]
    timestamp: str
    request_id: str | None


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(BaseModel):
    """Errors of the OpenAI-compatible `/v1` routes, in OpenAI's shape."""

    error: OpenAIErrorDetail


_STATUSES = {400: "Bad request (a malformed body or header)", 401: "No valid credentials",
             403: "Not allowed", 404: "Not found", 409: "Conflicts with the current state",
             410: "Gone for good (purged)", 413: "Too large", 415: "Not a readable recording",
             422: "Invalid input (details.field names it)", 429: "Too many (retry later)",
             503: "The database or storage is unavailable"}


def error_responses(model: type[BaseModel] = ErrorEnvelope) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": model, "description": text} for status, text in _STATUSES.items()}


ERRORS = error_responses()
OPENAI_ERRORS = error_responses(OpenAIError)


def multipart_body(properties: dict[str, Any], required: Iterable[str]) -> dict[str, Any]:
    """`openapi_extra` for a route that parses its multipart body itself."""
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {
        "schema": {"type": "object", "properties": properties, "required": list(required)}}}}}


def form_fields(model: type[BaseModel], *, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """A pydantic model's fields as multipart form fields: each one's own schema, with
    "or null" dropped (a field left out is the null)."""
    skipped = set(exclude)
    fields: dict[str, Any] = {}
    for name, schema in model.model_json_schema()["properties"].items():
        if name in skipped:
            continue
        choices = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
        single = dict(choices[0]) if len(choices) == 1 else {
            k: v for k, v in schema.items() if k != "anyOf"}
        single.pop("default", None)
        single.pop("title", None)
        fields[name] = single
    return fields


# Routes anyone may call (probes and scrapers have no key).
OPEN_PATHS = frozenset({"/health", "/health/live", "/health/ready", "/metrics"})


def install(app: FastAPI) -> None:
    """Declare the two ways to present an API key, on every route that needs one."""

    def schema() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version,
                                   description=app.description, routes=app.routes)
            document.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "Authorization: Bearer <API key>"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}
            for path, operations in document.get("paths", {}).items():
                if path in OPEN_PATHS:
                    continue
                for operation in operations.values():
                    operation["security"] = [{"bearer": []}, {"apiKey": []}]
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = schema  # type: ignore[method-assign]
