"""Live job events over Server-Sent Events and WebSocket.

Both subscribe to the bus *before* reading the job, then send the current state
first: no event published in between is missed, and a subscriber arriving after the
job finished gets its status and outcome and the stream ends. A stream ends after
the first terminal event (completed, failed, canceled), and within seconds of its
key being revoked (`hark.api.revocation`): Server-Sent Events with a last `error`
event, a WebSocket with close code 4401.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractContextManager
from typing import Annotated

from fastapi import APIRouter, Depends, Request, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from starlette.types import Message, Send

from hark.api.auth import CurrentPrincipal, websocket_principal
from hark.api.revocation import key_watch, run_until_revoked
from hark.api.state import Principal, ServiceState, get_state
from hark.errors import HarkError
from hark.events.base import TERMINAL_EVENTS, Event, Subscription
from hark.jobs import service
from hark.jobs.events import current_state as current_state_events

router = APIRouter(prefix="/api/v1", tags=["jobs"])
State = Annotated[ServiceState, Depends(get_state)]

# A comment line this often keeps proxies from closing an idle stream.
KEEPALIVE_SECONDS = 15.0
REVOKED_MESSAGE = "the API key was revoked"
# The last event of a stream whose key was revoked.
REVOKED: Event = {"type": "error", "error": REVOKED_MESSAGE, "error_code": "UNAUTHORIZED"}
CLOSE_UNAUTHORIZED = 4401


def _initial_events(state: ServiceState, principal: Principal, job_id: str) -> list[Event]:
    with state.db.session() as session:
        return current_state_events(service.get_job(session, principal.tenant_id, job_id))


async def job_events(state: ServiceState, principal: Principal, job_id: str,
                     subscription: Subscription) -> AsyncIterator[Event | None]:
    """The job's events from now on, current state first; None marks an idle interval.

    Reading the first item raises JobNotFoundError for a job the caller cannot see.
    """
    initial = await run_in_threadpool(_initial_events, state, principal, job_id)
    for current in initial:
        yield current
    if initial[-1]["type"] in TERMINAL_EVENTS:
        return
    while True:
        try:
            event = await subscription.get(KEEPALIVE_SECONDS)
        except StopAsyncIteration:  # the bus ended it: the server is stopping
            return
        if event is None:
            # Quiet for a while: check the job itself, in case its outcome was announced
            # while the bus could not carry it (a broker restart, say).
            latest = await run_in_threadpool(_initial_events, state, principal, job_id)
            if latest[-1]["type"] in TERMINAL_EVENTS:
                yield latest[-1]
                return
        yield event
        if event is not None and event["type"] in TERMINAL_EVENTS:
            return


@router.get("/jobs/{job_id}/events", summary="Live events of a job (Server-Sent Events)",
            response_class=StreamingResponse)
async def sse_events(job_id: str, request: Request, principal: CurrentPrincipal,
                     state: State) -> StreamingResponse:
    subscription = state.bus.subscribe(job_id)
    try:
        events = job_events(state, principal, job_id, subscription)
        first = await anext(events)  # a missing job fails as a normal 404 here
        assert first is not None
    except BaseException:
        subscription.close()
        raise

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield sse_frame(first)
            async for event in events:
                yield sse_frame(event) if event is not None else b": keep-alive\n\n"
        finally:
            subscription.close()

    return event_stream(stream(), key_watch(request).watch(principal))


@router.websocket("/jobs/{job_id}/ws")
async def websocket_events(websocket: WebSocket, job_id: str) -> None:
    state: ServiceState = websocket.app.state.hark
    principal = await accept_websocket(websocket)
    if principal is None:
        return
    subscription = state.bus.subscribe(job_id)
    try:
        events = job_events(state, principal, job_id, subscription)
        try:
            first = await anext(events)
            assert first is not None
        except HarkError as exc:
            await websocket.close(code=4404 if exc.status_code == 404 else 4400,
                                  reason=exc.message[:120])
            return
        await websocket.send_text(json.dumps(first))
        last = first

        async def forward() -> None:
            nonlocal last
            async for event in events:
                if event is not None:
                    await websocket.send_text(json.dumps(event))
                    last = event

        with key_watch(websocket).watch(principal) as revoked:
            if await run_until_revoked(revoked, forward):
                await websocket.close(code=CLOSE_UNAUTHORIZED, reason=REVOKED_MESSAGE)
                return
        # Ended before the job did (the server is stopping): 1012 asks for a reconnect.
        await websocket.close(code=1000 if last["type"] in TERMINAL_EVENTS else 1012)
    except (WebSocketDisconnect, StopAsyncIteration):
        pass
    finally:
        subscription.close()


async def accept_websocket(websocket: WebSocket) -> Principal | None:
    """Accept, then authenticate: None when the key was refused (closed with 4401).

    Accepted first so that a refusal reaches the client as a close code and reason
    (4401 no valid key; 4404 no such job, later) rather than a bare HTTP 403.
    """
    await websocket.accept()
    try:
        return await websocket_principal(websocket)
    except HarkError as exc:
        await websocket.close(code=4401, reason=exc.message[:120])
        return None


class _EventStreamResponse(StreamingResponse):
    """Server-Sent Events that end, with a last `error` event, when the key watched by
    `watching` is revoked. The watch is entered only while the response streams."""

    def __init__(self, frames: AsyncIterator[bytes],
                 watching: AbstractContextManager[asyncio.Event] | None,
                 headers: Mapping[str, str]) -> None:
        super().__init__(frames, media_type="text/event-stream", headers=headers)
        self.watching = watching

    async def stream_response(self, send: Send) -> None:
        if self.watching is None:
            await super().stream_response(send)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            await send(message)
            started = started or message["type"] == "http.response.start"

        with self.watching as revoked:
            cut_short = await run_until_revoked(
                revoked, lambda: super(_EventStreamResponse, self).stream_response(send_tracked))
        if not cut_short:
            return
        closing = getattr(self.body_iterator, "aclose", None)
        if closing is not None:  # its `finally` lets go of the subscription now
            await closing()
        if not started:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": sse_frame(REVOKED),
                    "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def event_stream(frames: AsyncIterator[bytes],
                 watching: AbstractContextManager[asyncio.Event] | None = None,
                 ) -> StreamingResponse:
    """A Server-Sent Events response that proxies pass on as it is written; with
    `watching` (a key watch), it ends when the key is revoked."""
    return _EventStreamResponse(frames, watching,
                                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def sse_frame(event: Event) -> bytes:
    """One Server-Sent Event, named by the event's type."""
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
