"""`WS /api/v1/live`: binary frames of audio in, JSON messages out.

Options ride in the query (`model`, `language`, `save` to keep the stream as a job,
with `diarize`, and the audio's `encoding`: `pcm16` at `sample_rate`, or `container`
for compressed audio such as MediaRecorder's WebM/Opus, Ogg/Opus or MP3); the key as
on every socket. The server sends `ready`, then `speech_started`, `partial`, `final`,
`speech_stopped` as the audio gives them, and on `{"type": "stop"}` the rest of the
utterance in progress and `closed` (with the saved job's id). Refusals and failures
send an `error` message (the error envelope's code and message) before the close code:

    4400 bad options or message   4401 no valid key or key revoked
    4408 nothing received for HARK_LIVE_IDLE_SECONDS   4429 no live slot free
    1009 frame over HARK_LIVE_MAX_FRAME_BYTES   1011 the recogniser failed
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool

from hark.api.revocation import key_watch, run_until_revoked
from hark.api.sse import REVOKED_MESSAGE
from hark.api.state import Principal, ServiceState
from hark.config import Settings
from hark.db.base import new_id
from hark.errors import (
    FrameTooLargeError,
    HarkError,
    LiveIdleError,
    LiveStreamsFullError,
    RequestError,
)
from hark.jobs import intake
from hark.jobs.events_endpoints import CLOSE_UNAUTHORIZED, accept_websocket
from hark.jobs.keys import media_key
from hark.jobs.schemas import check_model_is_a_name
from hark.live.service import LiveSession, LiveSlots, StreamOptions
from hark.organisations.service import live_stream_quota
from hark.pipeline.engines.select import borrow_engine, resolve_model
from hark.pipeline.live import LiveTranscriber
from hark.pipeline.options import TranscribeOptions

router = APIRouter(prefix="/api/v1", tags=["live"])
log = logging.getLogger(__name__)

CLOSE_BAD_REQUEST = 4400
CLOSE_IDLE = 4408
CLOSE_FULL = 4429
CLOSE_TOO_BIG = 1009
CLOSE_FAILED = 1011


def live_slots(websocket: WebSocket, settings: Settings) -> LiveSlots:
    """The app's slots, made on first use."""
    slots: LiveSlots | None = getattr(websocket.app.state, "live_slots", None)
    if slots is None:
        slots = websocket.app.state.live_slots = LiveSlots(
            settings.live_max_streams, settings.live_max_streams_per_tenant)
    return slots


async def take_live_slot(websocket: WebSocket, state: ServiceState,
                         principal: Principal) -> LiveSlots:
    """A slot for the caller's stream, within its organisation's quota; raises
    LiveStreamsFullError when none is free."""

    def quota() -> int | None:
        with state.db.session() as session:
            return live_stream_quota(session, principal.tenant_id)

    slots = live_slots(websocket, state.settings)
    slots.take(principal.tenant_id, await run_in_threadpool(quota))
    return slots


@router.websocket("/live")
async def live(websocket: WebSocket) -> None:
    state: ServiceState = websocket.app.state.hark
    settings = state.settings
    principal = await accept_websocket(websocket)
    if principal is None:
        return
    try:
        options = StreamOptions.from_query(dict(websocket.query_params))
        if options.model is not None:
            check_model_is_a_name(options.model, settings)
        model = resolve_model(options.model, settings, options.language)
        asked = TranscribeOptions(model=model, language=options.language)
    except HarkError as exc:
        await _refuse(websocket, exc, CLOSE_BAD_REQUEST)
        return
    try:
        slots = await take_live_slot(websocket, state, principal)
    except LiveStreamsFullError as exc:
        await _refuse(websocket, exc, CLOSE_FULL)
        return
    with contextlib.ExitStack() as held:
        held.callback(slots.give_back, principal.tenant_id)
        try:
            # Loading a model takes seconds the first time: off the event loop.
            engine = await run_in_threadpool(held.enter_context, borrow_engine(model, settings))
            session = LiveSession(LiveTranscriber(engine, asked), options, engine.name,
                                  settings.live_max_seconds)
            held.callback(session.close)
        except HarkError as exc:
            await _refuse(websocket, exc, CLOSE_BAD_REQUEST)
            return

        def saver() -> str | None:
            return _save(state, principal, session, options)

        try:
            await _send(websocket, {"type": "ready", "model": engine.name,
                                    "language": options.language,
                                    "sample_rate": options.sample_rate})
            with key_watch(websocket).watch(principal) as revoked:
                if await run_until_revoked(revoked, lambda: _pump(websocket, session, settings,
                                                                  saver)):
                    await websocket.close(code=CLOSE_UNAUTHORIZED, reason=REVOKED_MESSAGE)
        except WebSocketDisconnect:
            pass  # the client left: its slot and model are given back below


async def _pump(websocket: WebSocket, session: LiveSession, settings: Settings,
                saver: Callable[[], str | None]) -> None:
    """Frames in, messages out, until the client stops, leaves, or a limit is reached."""
    while True:
        try:
            received = await asyncio.wait_for(websocket.receive(), settings.live_idle_seconds)
        except TimeoutError:
            await _refuse(websocket, LiveIdleError(
                f"Nothing received for {settings.live_idle_seconds:g} s"), CLOSE_IDLE)
            return
        if received["type"] == "websocket.disconnect":
            return
        frame: bytes | None = received.get("bytes")
        if frame is not None:
            if len(frame) > settings.live_max_frame_bytes:
                await _refuse(websocket, FrameTooLargeError(
                    f"Frames may hold at most {settings.live_max_frame_bytes} bytes"),
                    CLOSE_TOO_BIG)
                return
            if not await _run(websocket, session.feed, frame):
                return
            if session.seconds >= settings.live_max_seconds:
                await _close(websocket, session, saver, "max_duration")
                return
            continue
        try:
            command = json.loads(received.get("text") or "")
        except ValueError:
            command = None
        if not isinstance(command, dict) or command.get("type") != "stop":
            await _refuse(websocket, RequestError(
                'Text messages must be {"type": "stop"}; audio goes in binary frames'),
                CLOSE_BAD_REQUEST)
            return
        await _close(websocket, session, saver, "stopped")
        return


async def _run(websocket: WebSocket, work: Any, *args: Any) -> bool:
    """Run a step of recognition in a thread and send its messages; False if it failed."""
    try:
        messages = await run_in_threadpool(work, *args)
    except HarkError as exc:
        await _refuse(websocket, exc, CLOSE_BAD_REQUEST)
        return False
    except Exception:
        log.exception("live recognition failed")
        await _refuse(websocket, HarkError("Recognition failed"), CLOSE_FAILED)
        return False
    for body in messages:
        await _send(websocket, body)
    return True


async def _close(websocket: WebSocket, session: LiveSession,
                 saver: Callable[[], str | None], reason: str) -> None:
    if not await _run(websocket, session.finish):
        return
    try:
        job_id = await run_in_threadpool(saver)
    except HarkError as exc:
        await _refuse(websocket, exc, CLOSE_FAILED)
        return
    await _send(websocket, {"type": "closed", "reason": reason,
                            "seconds": round(session.seconds, 3), "job_id": job_id})
    await websocket.close(code=1000)


def _save(state: ServiceState, principal: Principal, session: LiveSession,
          options: StreamOptions) -> str | None:
    """Store the stream's recording and queue it as a job; its id (None: not kept)."""
    recording = session.recording
    if recording is None or recording.samples == 0:
        return None
    checked = intake.check_options(options.job_fields(), state)
    job_id = new_id()
    key = media_key(job_id)
    with state.storage.writer(key) as writer:
        recording.write_wav(writer)
        size = writer.size
        writer.commit()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    with state.db.session(write=True) as db:
        job = intake.submit_stored(db, state, principal, job_id=job_id, key=key,
                                   filename=f"live-{stamp}.wav", size=size, checked=checked)
        return job.id


async def _refuse(websocket: WebSocket, error: HarkError, code: int) -> None:
    await _send(websocket, {"type": "error", "error_code": error.code,
                            "message": error.message, "details": error.details})
    await websocket.close(code=code, reason=error.message[:120])


async def _send(websocket: WebSocket, body: dict[str, Any]) -> None:
    await websocket.send_text(json.dumps(body))
