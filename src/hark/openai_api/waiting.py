"""Waiting for the job behind an OpenAI request, and canceling it when its client leaves.

The handler subscribes to the job's events before the job exists (its id is chosen
first), so no event can slip by. While the bus is quiet the wait checks the client
(a closed connection cancels the job, as `DELETE /api/v1/jobs/{id}` would) and, every
few seconds, the job itself in the database, in case its outcome was announced while
the bus could not carry it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session
from starlette.requests import Request

from hark.api.state import Principal, ServiceState
from hark.errors import CanceledError, HarkError, JobPurgedError
from hark.events.base import TERMINAL_EVENTS, Event, Subscription
from hark.jobs import lifecycle, service
from hark.jobs.events import current_state
from hark.jobs.models import FINISHED
from hark.openai_api.errors import rebuild_error
from hark.openai_api.schemas import openai_param
from hark.pipeline.transcript import Transcript
from hark.storage.base import Storage

# How often a quiet wait asks whether the client is still there.
POLL_SECONDS = 0.5
# How often a quiet wait reads the job from the database.
RECHECK_SECONDS = 5.0


class ClientGone(Exception):
    """The client disconnected; its job was canceled."""


@dataclass
class JobWatch:
    state: ServiceState
    principal: Principal
    job_id: str
    request: Request
    subscription: Subscription

    async def events(self) -> AsyncIterator[Event | None]:
        """The job's `segment` events, then its terminal event; None for each quiet
        poll interval. Raises ClientGone (after canceling the job) when the client left."""
        last_client = last_database = time.monotonic()
        bus_open = True
        while True:
            event: Event | None = None
            if bus_open:
                try:
                    event = await self.subscription.get(POLL_SECONDS)
                except StopAsyncIteration:  # dropped by the bus: the database will tell
                    bus_open = False
            else:
                await asyncio.sleep(POLL_SECONDS)
            if event is not None and event.get("type") in TERMINAL_EVENTS:
                yield event
                return
            if event is not None and event.get("type") == "segment":
                yield event
            now = time.monotonic()
            if now - last_client >= POLL_SECONDS:
                last_client = now
                if await self.request.is_disconnected():
                    await self.cancel()
                    raise ClientGone
            if event is None:
                if now - last_database >= RECHECK_SECONDS:
                    last_database = now
                    terminal = await run_in_threadpool(self._terminal_event)
                    if terminal is not None:
                        yield terminal
                        return
                yield None

    async def result(self) -> Transcript:
        """The job's transcript once it completed; its error when it did not."""
        async for event in self.events():
            if event is not None and event["type"] in TERMINAL_EVENTS:
                return await self.outcome(event)
        raise HarkError("the job's events ended before its outcome")  # pragma: no cover

    async def outcome(self, event: Event) -> Transcript:
        if event["type"] == "completed":
            return await run_in_threadpool(self._load_result)
        if event["type"] == "failed":
            error = rebuild_error(event.get("error"))
            field = error.details.get("field")
            if isinstance(field, str):
                error.details["field"] = openai_param(field)
            raise error
        raise CanceledError("the transcription job was canceled", job_id=self.job_id)

    async def cancel(self) -> None:
        # Shielded: this runs while the request's task is being cancelled.
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(self._cancel)

    # Each check below is a unit of work of its own: the request waits far longer than
    # any transaction should stay open.
    def _cancel(self) -> None:
        with self.state.db.session(write=True) as session:
            lifecycle.cancel(session, self.state, self.principal, self.job_id)

    def _terminal_event(self) -> Event | None:
        with self.state.db.session() as session:
            return terminal_event(session, self.principal, self.job_id)

    def _load_result(self) -> Transcript:
        with self.state.db.session() as session:
            return load_result(session, self.state.storage, self.principal, self.job_id)


def terminal_event(session: Session, principal: Principal, job_id: str) -> Event | None:
    """The job's outcome as its stream would have told it, or None while it runs."""
    job = service.get_job(session, principal.tenant_id, job_id)
    return current_state(job)[-1] if job.status in FINISHED else None


def load_result(session: Session, storage: Storage, principal: Principal,
                job_id: str) -> Transcript:
    job = service.get_job(session, principal.tenant_id, job_id)
    if job.result_key is None:
        raise JobPurgedError("the job's results were deleted (purged)", status=job.status)
    data: dict[str, Any] = json.loads(storage.get_bytes(job.result_key))
    return Transcript.from_dict(data)
