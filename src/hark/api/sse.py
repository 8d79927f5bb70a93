"""Server-Sent Events responses, on sse-starlette: the job streams, the tenant feed and
the OpenAI-compatible transcription stream all go through `event_source`.

sse-starlette frames the events, sends a comment line every KEEPALIVE_SECONDS (so
proxies keep an idle stream open), and ends the stream when the client goes. Here a
stream also ends, with a last `error` event, within seconds of its API key being
revoked (see `hark.api.revocation`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from typing import Any

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent

from hark.events.base import Event

KEEPALIVE_SECONDS = 15.0
REVOKED_MESSAGE = "the API key was revoked or the sign-in ended"
# The last event of a stream whose key was revoked.
REVOKED: Event = {"type": "error", "error": REVOKED_MESSAGE, "error_code": "UNAUTHORIZED"}
# Plain line feeds, as most servers (and OpenAI's) write them; sse-starlette's default
# is CRLF, which clients that split on "\n\n" do not expect.
_SEP = "\n"
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def named(event: Event) -> ServerSentEvent:
    """An event named by its type (`event: completed` / `data: {...}`)."""
    return ServerSentEvent(data=json.dumps(event), event=str(event["type"]), sep=_SEP)


def unnamed(payload: dict[str, Any]) -> ServerSentEvent:
    """A data-only event, as OpenAI's streams send them."""
    return ServerSentEvent(data=json.dumps(payload, ensure_ascii=False), sep=_SEP)


def event_source(events: AsyncIterator[ServerSentEvent | None],
                 watching: AbstractContextManager[asyncio.Event] | None = None,
                 ) -> EventSourceResponse:
    """A Server-Sent Events response of `events` (None items are idle intervals: the
    keep-alive covers them); with `watching` (a key watch), it ends when the key is
    revoked."""
    return EventSourceResponse(_until_revoked(events, watching), ping=KEEPALIVE_SECONDS,
                               ping_message_factory=_keepalive, headers=_HEADERS,
                               sep=_SEP)


def _keepalive() -> ServerSentEvent:
    return ServerSentEvent(comment="keep-alive", sep=_SEP)


async def _until_revoked(events: AsyncIterator[ServerSentEvent | None],
                         watching: AbstractContextManager[asyncio.Event] | None,
                         ) -> AsyncIterator[ServerSentEvent]:
    with contextlib.ExitStack() as stack:
        revoked = stack.enter_context(watching) if watching is not None else asyncio.Event()
        while True:
            following = asyncio.ensure_future(anext(events))
            revocation = asyncio.ensure_future(revoked.wait())
            try:
                await asyncio.wait({following, revocation},
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                revocation.cancel()
                if not following.done():
                    # Shielded: when the client left, this stream is being cancelled,
                    # and the events' own cleanup (canceling an OpenAI request's job,
                    # letting a subscription go) must still run to its end.
                    with anyio.CancelScope(shield=True):
                        following.cancel()
                        await asyncio.wait({following})
            if following.cancelled():  # the key was revoked first
                await _close(events)
                yield named(REVOKED)
                return
            try:
                item = following.result()
            except StopAsyncIteration:
                return
            if item is not None:
                yield item


async def _close(events: AsyncIterator[Any]) -> None:
    closing = getattr(events, "aclose", None)
    if closing is not None:  # its `finally` lets go of its subscription now
        await closing()
