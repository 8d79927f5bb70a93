"""`/health` and friends: open endpoints for load balancers and orchestrators.

`/health/live` says the process answers; `/health/ready` that it can do its job
(database reachable, storage writable, workers alive when this process runs them),
503 otherwise. Those two and `/health` are open. `/health/detailed` shows each check
with its timing, the database and storage in use and the workers' process ids, so it
needs an operator's key (HARK_OPERATOR_TENANTS; an anonymous local caller counts).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import text

from hark import __version__
from hark.api.auth import require_operator
from hark.api.openapi import ERRORS
from hark.api.state import ServiceState
from hark.db import display_url

router = APIRouter(tags=["operations"], responses=ERRORS)


def _check(fn: Callable[[], Any]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        detail = fn()
        result: dict[str, Any] = {"ok": True}
        if detail is not None:
            result.update(detail)
    except Exception as exc:
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    result["ms"] = round((time.perf_counter() - started) * 1000, 2)
    return result


def run_checks(state: ServiceState) -> dict[str, dict[str, Any]]:
    def database() -> dict[str, Any]:
        with state.db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return {"url": display_url(state.db.url)}

    def storage() -> dict[str, Any]:
        state.storage.check_writable()
        return {"backend": state.storage.name}

    def workers() -> dict[str, Any]:
        pool = state.pool
        if pool is None:
            return {"mode": "none in this process"}
        alive = pool.alive()
        if alive < pool.expected:
            raise RuntimeError(f"{alive} of {pool.expected} workers alive")
        return {"alive": alive, "expected": pool.expected}

    return {"database": _check(database), "storage": _check(storage),
            "workers": _check(workers)}


@router.get("/health", summary="Health summary")
async def health(request: Request) -> JSONResponse:
    return await _ready(request)


@router.get("/health/live", summary="The process is up")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/health/ready", summary="Ready to accept work")
async def ready(request: Request) -> JSONResponse:
    return await _ready(request)


async def _ready(request: Request) -> JSONResponse:
    state: ServiceState = request.app.state.hark
    checks = await run_in_threadpool(run_checks, state)
    ok = all(c["ok"] for c in checks.values())
    body = {"status": "ok" if ok else "unavailable",
            "checks": {name: c["ok"] for name, c in checks.items()}}
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/health/detailed", summary="Every check, with timings and versions (operators)",
            dependencies=[Depends(require_operator)])
async def detailed(request: Request) -> JSONResponse:
    state: ServiceState = request.app.state.hark
    checks = await run_in_threadpool(run_checks, state)
    ok = all(c["ok"] for c in checks.values())
    pool = state.pool
    body = {
        "status": "ok" if ok else "unavailable", "version": __version__,
        "uptime_seconds": round(time.time() - state.started_at, 1), "checks": checks,
        "workers": {"expected": pool.expected, "alive": pool.alive(), "pids": pool.pids(),
                    "queues": list(pool.queues)} if pool is not None else None,
        "anonymous_access": state.anonymous,
    }
    return JSONResponse(body, status_code=200 if ok else 503)

