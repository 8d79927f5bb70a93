"""`WS /v1/realtime?intent=transcription`: OpenAI's Realtime transcription sessions,
spoken by the official SDKs unchanged (see `hark.live.realtime` for the protocol).

The socket shares the live slots, idle limit and model cache of `WS /api/v1/live`.
Bad events get an `error` event and the session goes on, as OpenAI's does; a key
that is missing or revoked closes it (4401), as do a full server (4429) and silence
(4408).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool

from hark import metrics
from hark.api.revocation import key_watch, run_until_revoked
from hark.api.sse import REVOKED_MESSAGE
from hark.api.state import ServiceState
from hark.errors import HarkError, LiveStreamsFullError
from hark.jobs.events_endpoints import CLOSE_UNAUTHORIZED, accept_websocket
from hark.jobs.schemas import check_model_is_a_name
from hark.live.endpoints import CLOSE_FULL, CLOSE_IDLE, take_live_slot
from hark.live.realtime import RealtimeSession, error_event
from hark.openai_api.schemas import map_model
from hark.pipeline.engines.base import Engine
from hark.pipeline.engines.select import borrow_engine, resolve_model

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])
log = logging.getLogger(__name__)


@router.websocket("/realtime")
async def realtime(websocket: WebSocket) -> None:
    state: ServiceState = websocket.app.state.hark
    settings = state.settings
    principal = await accept_websocket(websocket)
    if principal is None:
        return
    if websocket.query_params.get("intent") != "transcription":
        await _send(websocket, error_event(
            "Only transcription sessions are served here: connect with ?intent=transcription",
            code="unsupported_intent", param="intent"))
        await websocket.close(code=4400, reason="intent must be transcription")
        return
    try:
        slots = await take_live_slot(websocket, state, principal)
    except LiveStreamsFullError as exc:
        await _send(websocket, error_event(exc.message, code="rate_limit_exceeded"))
        await websocket.close(code=CLOSE_FULL, reason=exc.message[:120])
        return
    with contextlib.ExitStack() as held:
        held.callback(slots.give_back, principal.tenant_id)
        metrics.LIVE_STREAMS.inc()
        held.callback(metrics.LIVE_STREAMS.dec)

        def engine_for(model: str | None, language: str | None) -> Engine:
            """Runs in a worker thread at the first audio: loading may take seconds."""
            name, _ = map_model(model or "")
            if name is not None:
                check_model_is_a_name(name, settings)
            return held.enter_context(borrow_engine(resolve_model(name, settings, language),
                                                    settings))

        session = RealtimeSession(engine_for, settings.live_max_frame_bytes)
        try:
            await _send(websocket, session.created())
            with key_watch(websocket).watch(principal) as revoked:
                if await run_until_revoked(revoked, lambda: _pump(websocket, session,
                                                                  settings.live_idle_seconds)):
                    await websocket.close(code=CLOSE_UNAUTHORIZED, reason=REVOKED_MESSAGE)
        except WebSocketDisconnect:
            pass


async def _pump(websocket: WebSocket, session: RealtimeSession, idle_seconds: float) -> None:
    while True:
        try:
            received = await asyncio.wait_for(websocket.receive(), idle_seconds)
        except TimeoutError:
            await _send(websocket, error_event(f"Nothing received for {idle_seconds:g} s",
                                               code="idle_timeout"))
            await websocket.close(code=CLOSE_IDLE, reason="idle")
            return
        if received["type"] == "websocket.disconnect":
            return
        try:
            event: Any = json.loads(received.get("text") or received.get("bytes") or b"")
        except ValueError:
            event = None
        try:
            replies = await run_in_threadpool(session.handle, event)
        except HarkError as exc:
            replies = [error_event(exc.message, code=exc.code.lower())]
        except Exception:
            log.exception("realtime transcription failed")
            await _send(websocket, error_event("Recognition failed", code="server_error"))
            await websocket.close(code=1011)
            return
        for reply in replies:
            await _send(websocket, reply)


async def _send(websocket: WebSocket, body: dict[str, Any]) -> None:
    await websocket.send_text(json.dumps(body))
