"""Live job events over Server-Sent Events and WebSocket.

Both subscribe to the bus *before* reading the job, then send the current state
first: no event published in between is missed, and a subscriber arriving after the
job finished gets its status and outcome and the stream ends. A stream ends after
the first terminal event (completed, failed, canceled), and within seconds of its
key being revoked (`hark.api.revocation`): Server-Sent Events with a last `error`
event, a WebSocket with close code 4401.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from sse_starlette import EventSourceResponse, ServerSentEvent

from hark.api.auth import CurrentPrincipal, websocket_principal
from hark.api.openapi import ERRORS
from hark.api.revocation import key_watch, run_until_revoked
from hark.api.sse import KEEPALIVE_SECONDS, REVOKED_MESSAGE, event_source, named
from hark.api.state import Principal, ServiceState, get_state
from hark.errors import HarkError
from hark.events.base import TERMINAL_EVENTS, Event, Subscription
from hark.jobs import service
from hark.jobs.events import current_state as current_state_events

router = APIRouter(prefix="/api/v1", tags=["jobs"], responses=ERRORS)
State = Annotated[ServiceState, Depends(get_state)]

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
            response_class=EventSourceResponse)
async def sse_events(job_id: str, request: Request, principal: CurrentPrincipal,
                     state: State) -> EventSourceResponse:
    subscription = state.bus.subscribe(job_id)
    try:
        events = job_events(state, principal, job_id, subscription)
        first = await anext(events)  # a missing job fails as a normal 404 here
        assert first is not None
    except BaseException:
        subscription.close()
        raise

    async def stream() -> AsyncIterator[ServerSentEvent | None]:
        try:
            yield named(first)
            async for event in events:
                yield named(event) if event is not None else None
        finally:
            subscription.close()

    return event_source(stream(), key_watch(request).watch(principal))


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
        # 4429: the request rate is used up; 4403: the role does not allow it; 4401: no
        # valid key or token.
        code = {429: 4429, 403: 4403}.get(exc.status_code, CLOSE_UNAUTHORIZED)
        await websocket.close(code=code, reason=exc.message[:120])
        return None
