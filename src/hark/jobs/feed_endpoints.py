"""The tenant's job feed over Server-Sent Events (`GET /api/v1/events`) and WebSocket
(`WS /api/v1/ws`): every `created` and `purged` event of the caller's tenant (see
`hark.jobs.feed`), wherever the job was submitted.

Each stream opens with `{"type": "ready"}`, sent once the subscription is in place: a
client that reads the job list after it misses nothing created in between. Unlike a
job's stream, the feed does not end by itself; a client that loses it should
reconnect and, after the new `ready`, read the list again for what it missed (the bus
keeps no history). It does end within seconds of its key being revoked: Server-Sent
Events with a last `error` event, the WebSocket with close code 4401.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Request, WebSocket, WebSocketDisconnect
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.websockets import WebSocketDisconnected

from hark.api.auth import CurrentPrincipal
from hark.api.openapi import ERRORS
from hark.api.revocation import key_watch
from hark.api.sse import KEEPALIVE_SECONDS, REVOKED_MESSAGE, event_source, named
from hark.api.state import ServiceState, get_state
from hark.events.base import Event, Subscription
from hark.jobs import feed
from hark.jobs.events_endpoints import CLOSE_UNAUTHORIZED, accept_websocket

router = APIRouter(prefix="/api/v1", tags=["jobs"], responses=ERRORS)
State = Annotated[ServiceState, Depends(get_state)]

READY: Event = {"type": "ready"}
CLOSE_TRY_AGAIN = 1013


@router.get("/events", summary="Live feed of the tenant's jobs (Server-Sent Events)",
            response_class=EventSourceResponse)
async def sse_feed(request: Request, principal: CurrentPrincipal,
                   state: State) -> EventSourceResponse:
    channel = feed.channel(principal.tenant_id)

    async def stream() -> AsyncIterator[ServerSentEvent | None]:
        # Subscribed here rather than in the handler: a response that never starts
        # streaming then leaves no subscription behind.
        subscription = state.bus.subscribe(channel)
        try:
            yield named(READY)
            while True:
                event = await subscription.get(KEEPALIVE_SECONDS)
                yield named(event) if event is not None else None
        except StopAsyncIteration:
            return
        finally:
            subscription.close()

    return event_source(stream(), key_watch(request).watch(principal))


@router.websocket("/ws")
async def websocket_feed(websocket: WebSocket) -> None:
    state: ServiceState = websocket.app.state.hark
    principal = await accept_websocket(websocket)
    if principal is None:
        return
    subscription = state.bus.subscribe(feed.channel(principal.tenant_id))
    ended_by_bus = False
    ended_by_revocation = False
    try:
        # The feed can stay quiet for hours: a second task listens for the client's
        # close, so that a gone client frees its subscription now, not at the next event;
        # a third ends the feed when its key is revoked.
        with key_watch(websocket).watch(principal) as revoked:
            async with anyio.create_task_group() as group:
                async def send_feed() -> None:
                    nonlocal ended_by_bus
                    with contextlib.suppress(WebSocketDisconnect, WebSocketDisconnected):
                        await _forward(websocket, subscription)
                        ended_by_bus = True
                    group.cancel_scope.cancel()

                async def watch_close() -> None:
                    await _until_closed(websocket)
                    group.cancel_scope.cancel()

                async def watch_key() -> None:
                    nonlocal ended_by_revocation
                    await revoked.wait()
                    ended_by_revocation = True
                    group.cancel_scope.cancel()

                group.start_soon(send_feed)
                group.start_soon(watch_close)
                group.start_soon(watch_key)
    finally:
        subscription.close()
    if ended_by_revocation:
        with contextlib.suppress(WebSocketDisconnect, WebSocketDisconnected):
            await websocket.close(code=CLOSE_UNAUTHORIZED, reason=REVOKED_MESSAGE)
    elif ended_by_bus:
        # The server ended the feed (stopping, or the client fell too far behind) while
        # the client is still there: "try again later" makes it reconnect.
        with contextlib.suppress(WebSocketDisconnect, WebSocketDisconnected):
            await websocket.close(code=CLOSE_TRY_AGAIN)


async def _forward(websocket: WebSocket, subscription: Subscription) -> None:
    """Send the feed until the bus ends it (returns) or the client is gone (raises)."""
    await websocket.send_text(json.dumps(READY))
    async for event in subscription:
        await websocket.send_text(json.dumps(event))


async def _until_closed(websocket: WebSocket) -> None:
    """Return when the client closes; anything it sends is ignored."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass
